// The store conformance suite on gs:// against a wire-level GCS JSON API test server (no GCS
// emulator exists here), plus the requests on the wire, chunked resumable uploads, error mapping,
// truncated downloads and the credentials directory.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { NotFoundError, PermanentError, RequestError, RetryableError } from "../../src/errors.ts";
import { CRC32C } from "@google-cloud/storage";
import { FastCrc32c } from "../../src/storage/gcs/crc32c.ts";
import { GcsClients } from "../../src/storage/gcs/gcs-clients.ts";
import { parseGcsLocation } from "../../src/storage/gcs/gcs-location.ts";
import { GcsStore, UPLOAD_CHUNK_BYTES } from "../../src/storage/gcs/gcs-store.ts";
import {
  REQUEST_IDENTITY_ONLY,
  storageIdentityFor,
  storageIdentitySetting,
} from "../../src/storage/storage-identity.ts";
import { Stores } from "../../src/storage/stores.ts";
import { crc32cBase64, startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { freePort, NO_METADATA_ENV } from "../helpers/s3-server.ts";
import { storeConformance } from "./store-conformance.ts";

Object.assign(process.env, NO_METADATA_ENV);

const BUCKET = "studioml-gcs";
const MiB = 1024 * 1024;
let server: GcsTestServer;
/** The GCS configuration the tests' stores use (each store is given it: there is no global one). */
let clients = new GcsClients({});
const useClients = (config: ConstructorParameters<typeof GcsClients>[0]) => {
  clients = new GcsClients(config);
};

beforeAll(async () => {
  server = await startGcsServer({ buckets: [BUCKET] });
  useClients({ apiEndpoint: server.endpoint, maxRetries: 0 });
});
afterAll(async () => {
  useClients({});
  await server?.stop();
});

let prefixCount = 0;
const uniquePrefix = () => `t${Date.now()}-${prefixCount++}`;
const loc = (key: string) => `gs://${BUCKET}/${key}`;

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** The requests recorded since `from` whose path mentions `key`. */
const trafficFor = (key: string, from = 0) =>
  server.requests.slice(from).filter((r) => r.path.includes(key) || r.query.name?.includes(key));

storeConformance("gs on the wire-level GCS test server (gs://bucket/key via storeFor)", async () => {
  const prefix = uniquePrefix();
  return {
    store: new Stores(clients).for(loc("x")),
    locationOf: (k) => loc(`${prefix}/${k}`),
    cleanup: async () => undefined,
  };
});

describe("gs: the requests on the wire", () => {
  test("put is a resumable upload (session POST, then PUT chunks); head reads metadata; get is alt=media; delete is DELETE", async () => {
    const key = `${uniquePrefix()}/experiments/k/output.tar`;
    const from = server.requests.length;
    const store = new GcsStore(process.env, {}, clients);
    const info = await store.put(loc(key), Readable.from([Buffer.from("hello gcs")]));
    expect(info.sizeBytes).toBe(9);
    expect(info.version).toBe(server.objects.get(`${BUCKET}/${key}`)!.generation);
    expect((await store.head(loc(key)))!.version).toBe(info.version);
    expect((await readAll(await store.get(loc(key)))).toString()).toBe("hello gcs");
    await store.delete(loc(key));

    const seen = trafficFor(key, from).map((r) => ({
      method: r.method,
      path: r.path,
      alt: r.query.alt ?? "-",
      uploadType: r.query.uploadType ?? "-",
      status: r.status,
    }));
    expect(seen).toEqual([
      { method: "POST", path: `/upload/storage/v1/b/${BUCKET}/o`, alt: "-", uploadType: "resumable", status: 200 },
      { method: "PUT", path: `/upload/storage/v1/b/${BUCKET}/o`, alt: "-", uploadType: "resumable", status: 200 },
      { method: "GET", path: `/storage/v1/b/${BUCKET}/o/${key}`, alt: "-", uploadType: "-", status: 200 },
      { method: "GET", path: `/storage/v1/b/${BUCKET}/o/${key}`, alt: "-", uploadType: "-", status: 200 },
      { method: "GET", path: `/storage/v1/b/${BUCKET}/o/${key}`, alt: "media", uploadType: "-", status: 200 },
      { method: "DELETE", path: `/storage/v1/b/${BUCKET}/o/${key}`, alt: "-", uploadType: "-", status: 204 },
    ]);
    const traffic = trafficFor(key, from);
    expect(traffic[0]!.query.name).toBe(key);
    // The download reads the generation just looked up.
    expect(traffic[4]!.query.generation).toBe(info.version);
    expect(traffic[1]!.headers["content-range"]).toBe("bytes 0-8/9");
    expect(server.objects.get(`${BUCKET}/${key}`)).toBeUndefined();
    // No request was authenticated against the test endpoint.
    expect(traffic.every((r) => r.headers.authorization === undefined)).toBe(true);
  });

  test("a 21 MiB upload goes in 8 MiB chunks, the object appearing only with the last; it reads back byte for byte", async () => {
    const data = randomBytes(21 * MiB + 123);
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += 64 * 1024) pieces.push(data.subarray(i, i + 64 * 1024));
    const key = `${uniquePrefix()}/big.tar`;
    const from = server.requests.length;
    const info = await new GcsStore(process.env, {}, clients).put(loc(key), Readable.from(pieces));
    expect(info.sizeBytes).toBe(data.length);
    const puts = trafficFor(key, from).filter((r) => r.method === "PUT");
    expect(puts.map((r) => r.headers["content-range"])).toEqual([
      `bytes 0-${UPLOAD_CHUNK_BYTES - 1}/*`,
      `bytes ${UPLOAD_CHUNK_BYTES}-${2 * UPLOAD_CHUNK_BYTES - 1}/*`,
      `bytes ${2 * UPLOAD_CHUNK_BYTES}-${data.length - 1}/${data.length}`,
    ]);
    expect(puts.map((r) => r.status)).toEqual([308, 308, 200]);
    expect(puts.map((r) => r.bodyBytes)).toEqual([
      UPLOAD_CHUNK_BYTES,
      UPLOAD_CHUNK_BYTES,
      data.length - 2 * UPLOAD_CHUNK_BYTES,
    ]);
    const back = await readAll(await new GcsStore(process.env, {}, clients).get(loc(key)));
    expect(back.length).toBe(data.length);
    expect(sha256(back)).toBe(sha256(data));
  }, 60_000);

  test("an upload whose body fails after a chunk was sent never finalizes: the old object stays whole", async () => {
    const key = `${uniquePrefix()}/modeldir.tar`;
    const store = new GcsStore(process.env, {}, clients);
    const old = await store.put(loc(key), Readable.from([Buffer.from("old and whole")]));
    let sent = 0;
    const failing = new Readable({
      read() {
        if (sent >= 12 * MiB) return void this.destroy(new Error("disk read error"));
        sent += MiB;
        this.push(randomBytes(MiB));
      },
    });
    const from = server.requests.length;
    await expect(store.put(loc(key), failing)).rejects.toThrow(/disk read error/);
    // The put fails as soon as its source does; the chunk already on its way may still be landing.
    const puts = () => trafficFor(key, from).filter((r) => r.method === "PUT");
    for (let i = 0; i < 100 && !(puts().length > 0 && puts().every((r) => r.status !== 0 || r.bodyBytes === -1)); i++)
      await Bun.sleep(20);
    expect(puts()[0]!.status).toBe(308); // the first 8 MiB chunk was accepted, and not as an object
    expect(puts().every((r) => r.status !== 200)).toBe(true);
    const session = [...server.sessions.values()].find((s) => s.name === key && !s.finalized);
    expect(session?.receivedBytes).toBe(UPLOAD_CHUNK_BYTES);
    expect((await store.head(loc(key)))!.version).toBe(old.version);
    expect((await readAll(await store.get(loc(key)))).toString()).toBe("old and whole");
  }, 60_000);

  test("the library checks the CRC32C the server reports for an upload: a mismatch fails retryably", async () => {
    const key = `${uniquePrefix()}/garbled.tar`;
    const from = server.requests.length;
    server.inject({ method: "PUT", reportWrongHash: true, times: 1 });
    const err = await new GcsStore(process.env, {}, clients)
      .put(loc(key), Readable.from([Buffer.from("bytes that arrived damaged")]))
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(RetryableError);
    // The object had been finalized; the library deletes it again, so no damaged object stays.
    expect(trafficFor(key, from).map((r) => r.method)).toEqual(["POST", "PUT", "DELETE"]);
    expect(server.objects.has(`${BUCKET}/${key}`)).toBe(false);
  });

  test("an empty object can be stored and read", async () => {
    const key = `${uniquePrefix()}/empty.tar`;
    const info = await new GcsStore(process.env, {}, clients).put(loc(key), Readable.from([]));
    expect(info.sizeBytes).toBe(0);
    expect((await readAll(await new GcsStore(process.env, {}, clients).get(loc(key)))).length).toBe(0);
  });
});

describe("gs: errors", () => {
  afterEach(() => useClients({ apiEndpoint: server.endpoint, maxRetries: 0 }));

  test("403 from the server is a PermanentError naming the bucket, for head, get, put and delete", async () => {
    const store = new GcsStore(process.env, {}, clients);
    const l = loc(`${uniquePrefix()}/secret.tar`);
    for (const op of [
      () => store.head(l),
      () => store.get(l),
      () => store.put(l, Readable.from([Buffer.from("x")])),
      () => store.delete(l),
    ]) {
      server.inject({ status: 403, times: 1 });
      const err = await op().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(PermanentError);
      expect(err).not.toBeInstanceOf(NotFoundError);
      expect(err!.message).toContain(`bucket "${BUCKET}"`);
      expect(err!.message).toContain(`${server.endpoint} refused no credentials`);
    }
  });

  test("401 is a PermanentError too", async () => {
    server.inject({ status: 401, times: 1 });
    const err = await new GcsStore(process.env, {}, clients).head(loc("any.tar")).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
  });

  test("503 and 429 are RetryableErrors (head, get, upload session, upload chunk)", async () => {
    const store = new GcsStore(process.env, {}, clients);
    const key = `${uniquePrefix()}/busy.tar`;
    await store.put(loc(key), Readable.from([Buffer.from("content")]));
    const cases: Array<[number, RegExp | undefined, () => Promise<unknown>]> = [
      [503, undefined, () => store.head(loc(key))],
      [429, undefined, () => store.get(loc(key))],
      [503, /alt=media/, () => store.get(loc(key)).then(readAll)],
      [503, /^POST /, () => store.put(loc(key), Readable.from([Buffer.from("new")]))],
      [503, /^PUT /, () => store.put(loc(key), Readable.from([Buffer.from("new")]))],
    ];
    for (const [status, match, op] of cases) {
      server.inject({ status, match, times: 1 });
      const err = await op().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RetryableError);
    }
    expect((await readAll(await store.get(loc(key)))).toString()).toBe("content");
  }, 60_000);

  test("with retries on, a single 503 is retried by the library and the call succeeds", async () => {
    useClients({ apiEndpoint: server.endpoint, maxRetries: 2 });
    const key = `${uniquePrefix()}/flaky.tar`;
    const store = new GcsStore(process.env, {}, clients);
    await store.put(loc(key), Readable.from([Buffer.from("flaky")]));
    const from = server.requests.length;
    server.inject({ status: 503, method: "GET", times: 1 });
    expect((await store.head(loc(key)))!.sizeBytes).toBe(5);
    expect(trafficFor(key, from).map((r) => r.status)).toEqual([503, 200]);
  }, 30_000);

  test("with retries on, a 503 on an upload chunk is resumed from the offset the session reports", async () => {
    useClients({ apiEndpoint: server.endpoint, maxRetries: 2 });
    const key = `${uniquePrefix()}/resumed.tar`;
    const data = randomBytes(10 * MiB);
    const from = server.requests.length;
    server.inject({ method: "PUT", match: /upload_id=/, status: 503, times: 1 });
    const info = await new GcsStore(process.env, {}, clients).put(
      loc(key),
      Readable.from([data.subarray(0, 5 * MiB), data.subarray(5 * MiB)]),
    );
    expect(info.sizeBytes).toBe(data.length);
    const puts = trafficFor(key, from)
      .filter((r) => r.method === "PUT")
      .map((r) => [r.headers["content-range"], r.status]);
    expect(puts).toEqual([
      [`bytes 0-${UPLOAD_CHUNK_BYTES - 1}/*`, 503],
      ["bytes */*", 308],
      [`bytes 0-${UPLOAD_CHUNK_BYTES - 1}/*`, 308],
      [`bytes ${UPLOAD_CHUNK_BYTES}-${data.length - 1}/${data.length}`, 200],
    ]);
    expect(sha256(await readAll(await new GcsStore(process.env, {}, clients).get(loc(key))))).toBe(sha256(data));
  }, 30_000);

  test("404: head is undefined, get is NotFoundError, delete is quiet; a missing bucket is permanent", async () => {
    const store = new GcsStore(process.env, {}, clients);
    const l = loc(`${uniquePrefix()}/none.tar`);
    expect(await store.head(l)).toBeUndefined();
    await expect(store.get(l)).rejects.toBeInstanceOf(NotFoundError);
    await store.delete(l);
    const err = await store.get("gs://no-such-bucket/k.tar").catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(err).not.toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toContain('bucket "no-such-bucket" does not exist');
  });

  test("a download whose bytes do not match the server's x-goog-hash is a RetryableError", async () => {
    const store = new GcsStore(process.env, {}, clients);
    const key = `${uniquePrefix()}/bad-hash.tar`;
    await store.put(loc(key), Readable.from([randomBytes(50_000)]));
    server.inject({ match: /alt=media/, reportWrongHash: true, times: 1 });
    const err = await store
      .get(loc(key))
      .then(readAll)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(RetryableError);
  });

  test("the store's fast CRC32C agrees with the library's and the test server's, split anywhere", () => {
    for (const size of [0, 1, 7, 8, 9, 63, 1000, 65_537]) {
      const data = randomBytes(size);
      const ours = new FastCrc32c();
      const split = Math.floor(size / 3);
      ours.update(data.subarray(0, split));
      ours.update(data.subarray(split));
      const theirs = new CRC32C();
      theirs.update(data);
      expect(ours.toString()).toBe(theirs.toString());
      expect(ours.toString()).toBe(crc32cBase64(data));
      expect(ours.validate(theirs.toString())).toBe(true);
    }
  });

  test('the test server\'s CRC32C is the standard one (check value of "123456789")', () => {
    expect(crc32cBase64(Buffer.from("123456789"))).toBe(Buffer.from("e3069283", "hex").toString("base64"));
  });

  test("a download cut short is a RetryableError, never a short success", async () => {
    const store = new GcsStore(process.env, {}, clients);
    const key = `${uniquePrefix()}/cut.tar`;
    await store.put(loc(key), Readable.from([randomBytes(300_000)]));
    server.inject({ match: /alt=media/, truncateAfterBytes: 100_000, times: 1 });
    const err = await store
      .get(loc(key))
      .then(readAll)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(RetryableError);
  });

  test("a server that is down is a RetryableError", async () => {
    useClients({ apiEndpoint: `http://127.0.0.1:${await freePort()}`, maxRetries: 0 });
    const store = new GcsStore(process.env, {}, clients);
    await expect(store.head(loc("k.tar"))).rejects.toBeInstanceOf(RetryableError);
    await expect(store.get(loc("k.tar"))).rejects.toBeInstanceOf(RetryableError);
    await expect(store.put(loc("k.tar"), Readable.from([Buffer.from("x")]))).rejects.toBeInstanceOf(RetryableError);
  }, 60_000);
});

describe("gs: whose identity serves a request (requests cannot bring Google credentials)", () => {
  const field = "experiment.artifacts.workspace.qualified";
  test("by default (--storage-identity request) every call is refused before anything is sent, naming field, location and flag", async () => {
    const key = `${uniquePrefix()}/w.tar`;
    const from = server.requests.length;
    const store = new Stores(clients).for(loc(key), { identity: REQUEST_IDENTITY_ONLY }, field);
    for (const op of [
      () => store.head(loc(key)),
      () => store.get(loc(key)),
      () => store.put(loc(key), Readable.from([Buffer.from("x")])),
      () => store.delete(loc(key)),
    ]) {
      const err = await op().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(PermanentError);
      expect(err!.message).toContain(`${field}: ${loc(key)} brings no credentials`);
      expect(err!.message).toContain("--storage-identity");
    }
    expect(trafficFor(key, from)).toEqual([]);
  });

  test("with --storage-identity runner: only the queue's allowed prefix is served", async () => {
    const prefix = uniquePrefix();
    const identity = storageIdentityFor(
      storageIdentitySetting("runner", `pubsub:team_a=gs://${BUCKET}/${prefix}/allowed/`),
      "team_a_q",
      "pubsub",
    );
    const store = new Stores(clients).for(loc(`${prefix}/allowed/w.tar`), { identity }, field);
    await store.put(loc(`${prefix}/allowed/w.tar`), Readable.from([Buffer.from("as the runner")]));
    expect((await readAll(await store.get(loc(`${prefix}/allowed/w.tar`)))).toString()).toBe("as the runner");
    const from = server.requests.length;
    const err = await store.put(loc(`${prefix}/other/w.tar`), Readable.from([Buffer.from("x")])).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toContain('outside --storage-identity-allow for queue "team_a_q"');
    // The same queue name from another kind of queue is not granted.
    const rabbit = storageIdentityFor(
      storageIdentitySetting("runner", `pubsub:team_a=gs://${BUCKET}/${prefix}/allowed/`),
      "team_a_q",
      "rabbitmq",
    );
    expect(
      await new Stores(clients)
        .for(loc(`${prefix}/allowed/w.tar`), { identity: rabbit }, field)
        .head(loc(`${prefix}/allowed/w.tar`))
        .catch((e: Error) => e),
    ).toBeInstanceOf(PermanentError);
    expect(trafficFor(`${prefix}/other`, from)).toEqual([]);
  });
});

describe("gs: locations and configuration", () => {
  test("gs://bucket/key splits into bucket and object name; a bucket alone is refused", () => {
    expect(parseGcsLocation("gs://b/experiments/k/output.tar")).toEqual({
      bucket: "b",
      key: "experiments/k/output.tar",
    });
    expect(() => parseGcsLocation("gs://b")).toThrow(RequestError);
    expect(() => parseGcsLocation("gs://b/")).toThrow(/no object key/);
    expect(new Stores(clients).for("gs://b/k")).toBeInstanceOf(GcsStore);
  });

  test("a --google-certs directory: the first service account by name is used and named (never its key)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gcerts-"));
    const account = (email: string) =>
      JSON.stringify({
        type: "service_account",
        project_id: "proj",
        private_key_id: "k1",
        private_key: "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n",
        client_email: email,
      });
    try {
      await writeFile(join(dir, "b-second.json"), account("second@proj.iam.gserviceaccount.com"));
      await writeFile(join(dir, "a-first.json"), account("first@proj.iam.gserviceaccount.com"));
      await writeFile(join(dir, "README.txt"), "not an account");
      // Only the choice is checked: a request would go to Google, which tests never contact.
      useClients({ certsDir: dir });
      const handle = clients.client({});
      expect(handle.identity).toBe(`service account first@proj.iam.gserviceaccount.com (${join(dir, "a-first.json")})`);
      expect(handle.identity).not.toContain("PRIVATE KEY");
      useClients({});
      expect(clients.client({ GOOGLE_APPLICATION_CREDENTIALS: "/etc/sa.json" }).identity).toContain(
        "GOOGLE_APPLICATION_CREDENTIALS (/etc/sa.json)",
      );
      useClients({ certsDir: join(dir, "missing") });
      expect(() => clients.client({})).toThrow(PermanentError);
    } finally {
      useClients({ apiEndpoint: server.endpoint, maxRetries: 0 });
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("gs: several service accounts", () => {
  /** Two accounts of two projects, each allowed on its own bucket only; a third bucket allows neither. */
  async function twoAccounts() {
    const dir = await mkdtemp(join(tmpdir(), "gcerts-multi-"));
    const accounts: Record<string, KeyObject> = {};
    for (const [file, email] of [
      ["a-alpha.json", "runner@alpha.iam.gserviceaccount.com"],
      ["b-beta.json", "runner@beta.iam.gserviceaccount.com"],
    ] as const) {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      accounts[email] = publicKey;
      const project = email.split("@")[1]!.split(".")[0]!;
      await writeFile(
        join(dir, file),
        JSON.stringify({
          type: "service_account",
          project_id: project,
          private_key_id: `${project}-key`,
          private_key: privateKey.export({ type: "pkcs8", format: "pem" }),
          client_email: email,
        }),
      );
    }
    const access = {
      accounts,
      buckets: {
        "alpha-bucket": ["runner@alpha.iam.gserviceaccount.com"],
        "beta-bucket": ["runner@beta.iam.gserviceaccount.com"],
        "nobody-bucket": ["someone@else.iam.gserviceaccount.com"],
      },
    };
    const multi = await startGcsServer({ buckets: ["alpha-bucket", "beta-bucket", "nobody-bucket"], access });
    useClients({ certsDir: dir, apiEndpoint: multi.endpoint, maxRetries: 0 });
    return {
      multi,
      async cleanup() {
        useClients({ apiEndpoint: server.endpoint, maxRetries: 0 });
        await multi.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  test("each bucket is used as the account it accepts, found by trying them in order and then remembered", async () => {
    const { multi, cleanup } = await twoAccounts();
    try {
      const store = new GcsStore({}, {}, clients);
      // beta-bucket: the first account (alpha) is refused, the second is accepted.
      await store.put("gs://beta-bucket/experiments/k/output.tar", Readable.from([Buffer.from("beta data")]));
      const firstCallers = multi.requests.map((r) => `${r.status} ${r.caller ?? "-"}`);
      expect(firstCallers[0]).toBe("403 runner@alpha.iam.gserviceaccount.com");
      expect(firstCallers.slice(1).every((c) => c.endsWith("runner@beta.iam.gserviceaccount.com"))).toBe(true);
      // Remembered: later calls on that bucket go straight to beta, with no refusal.
      const before = multi.requests.length;
      expect((await readAll(await store.get("gs://beta-bucket/experiments/k/output.tar"))).toString()).toBe(
        "beta data",
      );
      expect((await store.head("gs://beta-bucket/experiments/k/output.tar"))!.sizeBytes).toBe(9);
      const later = multi.requests.slice(before);
      expect(later.length).toBeGreaterThan(0);
      expect(later.every((r) => r.caller === "runner@beta.iam.gserviceaccount.com" && r.status < 400)).toBe(true);
      // alpha-bucket is the first account's: no refusal at all.
      const mark = multi.requests.length;
      await store.put("gs://alpha-bucket/x", Readable.from([Buffer.from("alpha")]));
      expect(
        multi.requests
          .slice(mark)
          .every((r) => r.caller === "runner@alpha.iam.gserviceaccount.com" && r.status !== 401 && r.status !== 403),
      ).toBe(true);
      expect(multi.objects.has("alpha-bucket/x") && multi.objects.has("beta-bucket/experiments/k/output.tar")).toBe(
        true,
      );
    } finally {
      await cleanup();
    }
  }, 60_000);

  test("a bucket no account may use fails permanently, naming every account tried (never a key)", async () => {
    const { multi, cleanup } = await twoAccounts();
    try {
      const store = new GcsStore({}, {}, clients);
      const err = (await store.get("gs://nobody-bucket/k").catch((e) => e)) as Error;
      expect(err).toBeInstanceOf(PermanentError);
      expect(err.message).toContain("runner@alpha.iam.gserviceaccount.com");
      expect(err.message).toContain("runner@beta.iam.gserviceaccount.com");
      expect(err.message).toContain('bucket "nobody-bucket"');
      expect(err.message).not.toContain("PRIVATE KEY");
      expect(multi.requests.map((r) => r.status)).toEqual([403, 403]);
      // Missing objects are not refusals: no other account is tried for them.
      const mark = multi.requests.length;
      expect(await store.head("gs://alpha-bucket/none")).toBeUndefined();
      expect(multi.requests.slice(mark).map((r) => r.status)).toEqual([404]);
    } finally {
      await cleanup();
    }
  }, 60_000);
});
