// The store conformance suite on real S3 servers (s3rver; moto with verified signatures), plus what
// is S3's own: location forms, credentials refused, anonymous buckets, multipart uploads,
// truncated downloads, missing buckets, servers that are down, and one shared cached download.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ListMultipartUploadsCommand, S3Client } from "@aws-sdk/client-s3";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { NotFoundError, PermanentError, RetryableError } from "../../src/errors.ts";
import type { Credentials, Request } from "../../src/request/model.ts";
import { parseRequest } from "../../src/request/parse.ts";
import { ArtifactCache } from "../../src/storage/artifact-cache.ts";
import type { ObjectStore } from "../../src/storage/object-store.ts";
import { isHostLike, parseS3Location } from "../../src/request/s3-location.ts";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import { regionFromHost, resolveRegion, resolveTarget } from "../../src/storage/s3/s3-target.ts";
import {
  REQUEST_IDENTITY_ONLY,
  storageIdentityFor,
  storageIdentitySetting,
} from "../../src/storage/storage-identity.ts";
import { storeFor } from "../../src/storage/stores.ts";
import { ArtifactUploader, credentialsFor, fetchArtifact } from "../../src/task/artifacts.ts";
import { FIXTURE } from "../helpers/e2e.ts";
import { freePort, motoAvailable, startMoto, startS3rver, type KeyPair, type S3Server } from "../helpers/s3-server.ts";
import { storeConformance } from "./store-conformance.ts";

const BUCKET = "studioml-artifacts";
const KEYS: KeyPair = { accessKey: "AKIAEXAMPLEKEY", secretAccessKey: "exampleSecretKey123" };
const creds = (k: KeyPair, region?: string): Credentials => ({
  aws: { accessKey: k.accessKey, secretAccessKey: k.secretAccessKey, region },
});
const MiB = 1024 * 1024;

let s3rver: S3Server;
let moto: S3Server | undefined;
const HAVE_MOTO = motoAvailable();
if (!HAVE_MOTO)
  console.warn("\n*** moto_server or boto3 is missing: the signature-verifying S3 tests are SKIPPED ***\n");

beforeAll(async () => {
  s3rver = await startS3rver({ keys: [KEYS], buckets: [BUCKET, "public-data"] });
  if (HAVE_MOTO) moto = await startMoto({ verifySignatures: true, buckets: [BUCKET] });
}, 60_000);
afterAll(async () => {
  await s3rver?.stop();
  await moto?.stop();
});

let prefixCount = 0;
const uniquePrefix = () => `t${Date.now()}-${prefixCount++}`;

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

storeConformance("s3 on s3rver (s3://host:port/bucket/key, request credentials)", async () => {
  const prefix = uniquePrefix();
  const store = storeFor(`s3://${s3rver.host}/${BUCKET}/x`, {
    credentials: creds(KEYS, "us-west-2"),
    endpoint: s3rver.endpoint,
  });
  return { store, locationOf: (k) => `s3://${s3rver.host}/${BUCKET}/${prefix}/${k}`, cleanup: async () => undefined };
});

storeConformance("s3 on s3rver (AWS form s3://bucket/key with config.storage.endpoint)", async () => {
  const prefix = uniquePrefix();
  const store = storeFor(`s3://${BUCKET}/x`, { credentials: creds(KEYS), endpoint: s3rver.endpoint });
  return { store, locationOf: (k) => `s3://${BUCKET}/${prefix}/${k}`, cleanup: async () => undefined };
});

describe.skipIf(!HAVE_MOTO)("s3 on moto_server with verified signatures", () => {
  storeConformance("s3 on moto (signed with an IAM user's key)", async () => {
    const prefix = uniquePrefix();
    const store = new S3Store({ credentials: creds(moto!.user!), endpoint: moto!.endpoint });
    return { store, locationOf: (k) => `s3://${moto!.host}/${BUCKET}/${prefix}/${k}`, cleanup: async () => undefined };
  });

  test("a wrong secret is refused: PermanentError naming bucket and server, no secret in it", async () => {
    const wrong = { accessKey: moto!.user!.accessKey, secretAccessKey: "not-the-secret-0123456789" };
    const store = new S3Store({ credentials: creds(wrong), endpoint: moto!.endpoint });
    const loc = `s3://${moto!.host}/${BUCKET}/any/object.tar`;
    for (const op of [
      () => store.get(loc),
      () => store.head(loc),
      () => store.put(loc, Readable.from([Buffer.from("x")])),
    ]) {
      const err = await op().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(PermanentError);
      expect(err).not.toBeInstanceOf(NotFoundError);
      expect(err!.message).toContain(`refused the request's credentials`);
      expect(err!.message).toContain(`bucket "${BUCKET}"`);
      expect(err!.message).toContain(moto!.endpoint);
      expect(err!.message).not.toContain(wrong.secretAccessKey);
      expect(err!.message).not.toContain(moto!.user!.secretAccessKey);
    }
    const getErr = await store.get(loc).catch((e: Error) => e);
    expect((getErr as Error).message).toMatch(/SignatureDoesNotMatch/);
  });

  describe(
    "whose identity serves a request without credentials (the runner holds valid " + "keys in its environment)",
    () => {
      const saved: Record<string, string | undefined> = {};
      beforeAll(() => {
        for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) saved[k] = process.env[k];
        process.env.AWS_ACCESS_KEY_ID = moto!.user!.accessKey;
        process.env.AWS_SECRET_ACCESS_KEY = moto!.user!.secretAccessKey;
      });
      afterAll(() => {
        for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
      });
      const field = "experiment.artifacts.workspace.qualified";
      const grantFor = (allow: string, queue = "team_a_1") =>
        storageIdentityFor(storageIdentitySetting("runner", allow), queue, "rabbitmq");

      test(
        "by default (--storage-identity request) it is refused before anything is " +
          "sent, naming field, location and flag",
        async () => {
          const key = `${uniquePrefix()}/w.tar`;
          const loc = `s3://${moto!.host}/${BUCKET}/${key}`;
          const store = storeFor(loc, { endpoint: moto!.endpoint, identity: REQUEST_IDENTITY_ONLY }, field);
          for (const op of [
            () => store.head(loc),
            () => store.get(loc),
            () => store.put(loc, Readable.from([Buffer.from("x")])),
            () => store.delete(loc),
          ]) {
            const err = await op().then(
              () => undefined,
              (e: unknown) => e as Error,
            );
            expect(err).toBeInstanceOf(PermanentError);
            expect(err!.message).toContain(`${field}: ${loc} brings no credentials`);
            expect(err!.message).toContain("--storage-identity");
          }
          // Nothing was written with the runner's keys.
          const runner = new S3Store({ credentials: creds(moto!.user!), endpoint: moto!.endpoint });
          expect(await runner.head(loc)).toBeUndefined();
        },
      );

      test(
        "with --storage-identity runner: served inside the queue's allowed prefix, " +
          "refused outside it and for other queues",
        async () => {
          const prefix = uniquePrefix();
          const allowed = `s3://${moto!.host}/${BUCKET}/${prefix}/allowed/w.tar`;
          const other = `s3://${moto!.host}/${BUCKET}/${prefix}/other/w.tar`;
          const allow = `team_a=s3://${moto!.host}/${BUCKET}/${prefix}/allowed/`;
          const store = storeFor(allowed, { endpoint: moto!.endpoint, identity: grantFor(allow) }, field);
          await store.put(allowed, Readable.from([Buffer.from("as the runner")]));
          expect((await readAll(await store.get(allowed))).toString()).toBe("as the runner");
          const outside = await store.put(other, Readable.from([Buffer.from("x")])).catch((e: Error) => e);
          expect(outside).toBeInstanceOf(PermanentError);
          expect((outside as Error).message).toContain(`${field}: ${other}`);
          expect((outside as Error).message).toContain('outside --storage-identity-allow for queue "team_a_1"');
          const otherQueue = storeFor(
            allowed,
            { endpoint: moto!.endpoint, identity: grantFor(allow, "team_b_1") },
            field,
          );
          expect(await otherQueue.head(allowed).catch((e: Error) => e)).toBeInstanceOf(PermanentError);
          // "." segments cannot walk out of the prefix; another server with the same bucket name is
          // not the allowed one.
          const dotted = `s3://${moto!.host}/${BUCKET}/${prefix}/allowed/../other/w.tar`;
          expect(await store.head(dotted).catch((e: Error) => e)).toBeInstanceOf(PermanentError);
          const elsewhere = storeFor(
            `s3://${BUCKET}/${prefix}/allowed/w.tar`,
            { endpoint: "http://127.0.0.1:9", identity: grantFor(allow) },
            field,
          );
          expect(await elsewhere.head(`s3://${BUCKET}/${prefix}/allowed/w.tar`).catch((e: Error) => e)).toBeInstanceOf(
            PermanentError,
          );
          const runner = new S3Store({ credentials: creds(moto!.user!), endpoint: moto!.endpoint });
          expect(await runner.head(other)).toBeUndefined();
        },
      );

      test(
        "a request's own (wrong) keys are the only ones used: refused by the server, " + "never retried as the runner",
        async () => {
          const prefix = uniquePrefix();
          const loc = `s3://${moto!.host}/${BUCKET}/${prefix}/allowed/w.tar`;
          const identity = grantFor(`team_a=s3://${moto!.host}/${BUCKET}/`);
          const store = storeFor(
            loc,
            {
              credentials: creds({ accessKey: "AKIANOSUCHUSER00", secretAccessKey: "whatever-secret" }),
              endpoint: moto!.endpoint,
              identity,
            },
            field,
          );
          const err = await store.put(loc, Readable.from([Buffer.from("x")])).catch((e: Error) => e);
          expect(err).toBeInstanceOf(PermanentError);
          expect((err as Error).message).toMatch(/InvalidAccessKeyId/);
          const runner = new S3Store({ credentials: creds(moto!.user!), endpoint: moto!.endpoint });
          expect(await runner.head(loc)).toBeUndefined();
        },
      );
    },
  );

  test("an unknown access key is refused the same way", async () => {
    const store = new S3Store({
      credentials: creds({ accessKey: "AKIANOSUCHUSER00", secretAccessKey: "whatever-secret" }),
      endpoint: moto!.endpoint,
    });
    const err = await store.get(`s3://${moto!.host}/${BUCKET}/k.tar`).catch((e: Error) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/InvalidAccessKeyId/);
    expect((err as Error).message).not.toContain("whatever-secret");
  });

  test("a multipart upload whose body fails is aborted: no parts left, old object whole", async () => {
    const store = new S3Store({ credentials: creds(moto!.user!), endpoint: moto!.endpoint });
    const key = `${uniquePrefix()}/modeldir.tar`;
    const loc = `s3://${moto!.host}/${BUCKET}/${key}`;
    await store.put(loc, Readable.from([Buffer.from("old and whole")]));
    let sent = 0;
    const failing = new Readable({
      read() {
        if (sent >= 20 * MiB) return void this.destroy(new Error("disk read error"));
        sent += MiB;
        this.push(randomBytes(MiB));
      },
    });
    await expect(store.put(loc, failing)).rejects.toBeInstanceOf(RetryableError);
    expect((await readAll(await store.get(loc))).toString()).toBe("old and whole");
    const client = new S3Client({
      endpoint: moto!.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: moto!.user!.accessKey, secretAccessKey: moto!.user!.secretAccessKey },
    });
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect((uploads.Uploads ?? []).filter((u) => u.Key === key)).toEqual([]);
  }, 60_000);
});

describe("s3 on s3rver: beyond the shared suite", () => {
  const store = () => new S3Store({ credentials: creds(KEYS), endpoint: s3rver.endpoint });
  const loc = (key: string) => `s3://${s3rver.host}/${BUCKET}/${key}`;

  test("a multipart upload (several 8 MiB parts) reads back byte for byte; version is the ETag", async () => {
    const data = randomBytes(21 * MiB + 123);
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += 64 * 1024) chunks.push(data.subarray(i, i + 64 * 1024));
    const l = loc(`${uniquePrefix()}/big.tar`);
    const info = await store().put(l, Readable.from(chunks));
    expect(info.sizeBytes).toBe(data.length);
    expect(info.version).toMatch(/^"?[0-9a-f]{32}(-\d+)?"?$/);
    expect((await store().head(l))!.version).toBe(info.version);
    const back = await readAll(await store().get(l));
    expect(back.length).toBe(data.length);
    expect(sha256(back)).toBe(sha256(data));
  });

  test(
    "an unknown access key is refused with a clear PermanentError (s3rver checks " + "keys, not signatures)",
    async () => {
      const bad = new S3Store({
        credentials: creds({ accessKey: "AKIAWRONGKEY0000", secretAccessKey: "topsecret-value-42" }),
        endpoint: s3rver.endpoint,
      });
      for (const op of [
        () => bad.get(loc("a.tar")),
        () => bad.head(loc("a.tar")),
        () => bad.put(loc("a.tar"), Readable.from([Buffer.from("x")])),
      ]) {
        const err = await op().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(err).toBeInstanceOf(PermanentError);
        expect(err).not.toBeInstanceOf(NotFoundError);
        expect(err!.message).toMatch(/refused the request's credentials .*bucket "studioml-artifacts"/);
        expect(err!.message).toContain(s3rver.endpoint);
        expect(err!.message).not.toContain("topsecret-value-42");
      }
    },
  );

  test("no credentials at all: unsigned requests work on a server that allows them", async () => {
    const saved = { ...process.env };
    for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"])
      delete process.env[k];
    process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/credentials";
    process.env.AWS_CONFIG_FILE = "/nonexistent/config";
    try {
      const anon = storeFor(`s3://${s3rver.host}/public-data/x`, { endpoint: s3rver.endpoint });
      const l = `s3://${s3rver.host}/public-data/${uniquePrefix()}/open.tar`;
      await anon.put(l, Readable.from([Buffer.from("open data")]));
      expect((await readAll(await anon.get(l))).toString()).toBe("open data");
      expect((await anon.head(l))!.sizeBytes).toBe(9);
    } finally {
      process.env = saved;
    }
  });

  test("a missing bucket is a permanent fault saying so (head, get, put)", async () => {
    const l = `s3://${s3rver.host}/no-such-bucket-here/k.tar`;
    for (const op of [
      () => store().head(l),
      () => store().get(l),
      () => store().put(l, Readable.from([Buffer.from("x")])),
    ]) {
      const err = await op().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(PermanentError);
      expect(err).not.toBeInstanceOf(NotFoundError);
      expect(err!.message).toContain('bucket "no-such-bucket-here" does not exist');
    }
  });

  test("a server that is down is a RetryableError", async () => {
    const port = await freePort();
    const down = new S3Store({ credentials: creds(KEYS), endpoint: `http://127.0.0.1:${port}` });
    const l = `s3://127.0.0.1:${port}/${BUCKET}/k.tar`;
    await expect(down.head(l)).rejects.toBeInstanceOf(RetryableError);
    await expect(down.get(l)).rejects.toBeInstanceOf(RetryableError);
    await expect(down.put(l, Readable.from([Buffer.from("x")]))).rejects.toBeInstanceOf(RetryableError);
  }, 60_000);

  test("an s3:// location without a key is refused", async () => {
    await expect(store().head(`s3://${s3rver.host}/${BUCKET}`)).rejects.toThrow(/no object key|not an s3/);
  });
});

/** A proxy in front of s3rver that cuts GET responses short after `cutAfterBytes`, as asked. */
async function truncatingProxy(
  target: S3Server,
  shouldCut: (req: { range?: string; n: number }) => boolean,
  cutAfterBytes: number,
) {
  let n = 0;
  const seen: Array<{ range?: string }> = [];
  const server: Server = createServer((req, res) => {
    const range = req.headers.range as string | undefined;
    const cut = req.method === "GET" && shouldCut({ range, n: n++ });
    if (req.method === "GET") seen.push({ range });
    const upstream = httpRequest(
      { host: "127.0.0.1", port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!cut) return void up.pipe(res);
        let sent = 0;
        if (cutAfterBytes === 0) {
          up.destroy();
          res.flushHeaders();
          // The fault itself: the headers reach the client, then the connection drops.
          return void setTimeout(() => res.socket?.destroy(), 20);
        }
        up.on("data", (chunk: Buffer) => {
          if (sent >= cutAfterBytes) return;
          const part = chunk.subarray(0, cutAfterBytes - sent);
          sent += part.length;
          res.write(part);
          if (sent >= cutAfterBytes) {
            up.destroy();
            setTimeout(() => res.socket?.destroy(), 20); // the fault: what was written arrives, then the cut
          }
        });
      },
    );
    req.pipe(upstream);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
  const port = (server.address() as { port: number }).port;
  return { port, seen, close: () => new Promise<void>((ok) => server.close(() => ok())) };
}

describe("s3 downloads that break", () => {
  test("a GET cut short is continued from the byte where it broke (ranged GET of the same ETag)", async () => {
    const key = `${uniquePrefix()}/ws.tar`;
    const data = randomBytes(3 * MiB + 17);
    await new S3Store({ credentials: creds(KEYS), endpoint: s3rver.endpoint }).put(
      `s3://${s3rver.host}/${BUCKET}/${key}`,
      Readable.from([data]),
    );
    const proxy = await truncatingProxy(s3rver, ({ range }) => range === undefined, MiB);
    try {
      const store = new S3Store({ credentials: creds(KEYS), endpoint: `http://127.0.0.1:${proxy.port}` });
      const back = await readAll(await store.get(`s3://127.0.0.1:${proxy.port}/${BUCKET}/${key}`));
      expect(back.length).toBe(data.length);
      expect(sha256(back)).toBe(sha256(data));
      expect(proxy.seen.length).toBeGreaterThanOrEqual(2);
      expect(proxy.seen[1]!.range).toMatch(/^bytes=\d+-$/);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  test("a GET that keeps breaking ends in a RetryableError naming the short count, never a short success", async () => {
    const key = `${uniquePrefix()}/ws.tar`;
    const data = randomBytes(2 * MiB);
    await new S3Store({ credentials: creds(KEYS), endpoint: s3rver.endpoint }).put(
      `s3://${s3rver.host}/${BUCKET}/${key}`,
      Readable.from([data]),
    );
    const proxy = await truncatingProxy(s3rver, () => true, 0);
    try {
      const store = new S3Store({ credentials: creds(KEYS), endpoint: `http://127.0.0.1:${proxy.port}` });
      const err = await readAll(await store.get(`s3://127.0.0.1:${proxy.port}/${BUCKET}/${key}`)).catch(
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(RetryableError);
      expect((err as Error).message).toMatch(/truncated at 0 of 2097152 bytes/);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe("artifact cache on s3", () => {
  test("concurrent fetches of one object version share one download", async () => {
    const key = `${uniquePrefix()}/blobstore/abc.tar`;
    const l = `s3://${s3rver.host}/${BUCKET}/${key}`;
    const inner = new S3Store({ credentials: creds(KEYS), endpoint: s3rver.endpoint });
    const data = randomBytes(5 * MiB);
    const info = await inner.put(l, Readable.from([data]));
    let gets = 0;
    const counting: ObjectStore = {
      head: (x) => inner.head(x),
      get: (x) => (gets++, inner.get(x)),
      put: (x, b) => inner.put(x, b),
      delete: (x) => inner.delete(x),
    };
    const root = await mkdtemp(join(tmpdir(), "s3cache-"));
    try {
      const cache = new ArtifactCache(root, 1024 * MiB);
      const results = await Promise.all([1, 2, 3, 4].map(() => cache.fetch(counting, l, info.version)));
      expect(gets).toBe(1);
      expect(new Set(results.map((r) => r.path)).size).toBe(1);
      expect(sha256(await readFile(results[0]!.path))).toBe(sha256(data));
      expect((await cache.fetch(counting, l, info.version)).hit).toBe(true);
      expect(gets).toBe(1);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("s3 locations", () => {
  test("the first component is a server when it has a port, is an IP or localhost, or an S3-looking host", () => {
    for (const h of [
      "127.0.0.1:33504",
      "10.0.0.5",
      "localhost",
      "localhost:9000",
      "minio:9000",
      "s3.us-west-2.amazonaws.com",
      "s3.amazonaws.com",
      "storage.s3.example.org",
      "[::1]:9000",
    ]) {
      expect(isHostLike(h)).toBe(true);
    }
    for (const b of ["studioml-artifacts", "my.data.bucket", "s3bucket", "results.2024"])
      expect(isHostLike(b)).toBe(false);
    expect(isHostLike("my.data.bucket", "my.data.bucket")).toBe(true);
  });

  test("studioml's form and AWS's form split into host, bucket and key", () => {
    expect(parseS3Location("s3://127.0.0.1:33504/studioml-artifacts/blobstore/x.tar")).toEqual({
      host: "127.0.0.1:33504",
      bucket: "studioml-artifacts",
      key: "blobstore/x.tar",
    });
    expect(parseS3Location("s3://studioml-artifacts/experiments/k/output.tar")).toEqual({
      bucket: "studioml-artifacts",
      key: "experiments/k/output.tar",
    });
    expect(parseS3Location("s3://s3.us-west-2.amazonaws.com/b/k")).toEqual({
      host: "s3.us-west-2.amazonaws.com",
      bucket: "b",
      key: "k",
    });
  });

  test("endpoint scheme from config.storage.endpoint (default https); path style for self-hosted servers", () => {
    const loc = parseS3Location("s3://127.0.0.1:9000/b/k");
    expect(resolveTarget(loc, { endpoint: "http://127.0.0.1:9000" }, {}).endpoint).toBe("http://127.0.0.1:9000");
    expect(resolveTarget(loc, {}, {}).endpoint).toBe("https://127.0.0.1:9000");
    expect(resolveTarget(loc, {}, {}).forcePathStyle).toBe(true);
    const aws = resolveTarget(parseS3Location("s3://s3.eu-west-1.amazonaws.com/b/k"), {}, {});
    expect(aws).toMatchObject({
      endpoint: "https://s3.eu-west-1.amazonaws.com",
      forcePathStyle: false,
      region: "eu-west-1",
    });
    expect(resolveTarget(parseS3Location("s3://b/k"), {}, {})).toMatchObject({
      endpoint: undefined,
      forcePathStyle: false,
      region: "us-east-1",
    });
    expect(resolveTarget(parseS3Location("s3://b/k"), { endpoint: "http://minio.local:9000" }, {}).endpoint).toBe(
      "http://minio.local:9000",
    );
  });

  test("region: credentials, then AWS_REGION / AWS_DEFAULT_REGION, then the host, then us-east-1", () => {
    const host = "s3.ap-south-1.amazonaws.com";
    expect(resolveRegion("us-west-2", host, { AWS_REGION: "eu-central-1" })).toBe("us-west-2");
    expect(resolveRegion(undefined, host, { AWS_REGION: "eu-central-1" })).toBe("eu-central-1");
    expect(resolveRegion(undefined, host, { AWS_DEFAULT_REGION: "ca-central-1" })).toBe("ca-central-1");
    expect(resolveRegion(undefined, host, {})).toBe("ap-south-1");
    expect(resolveRegion(undefined, "127.0.0.1:9000", {})).toBe("us-east-1");
    expect(regionFromHost("bucket.s3.dualstack.us-gov-west-1.amazonaws.com")).toBe("us-gov-west-1");
    expect(regionFromHost("s3-eu-west-1.amazonaws.com")).toBe("eu-west-1");
  });

  test("s3:// is served by the S3 store", () => {
    expect(storeFor("s3://127.0.0.1:9000/b/k")).toBeInstanceOf(S3Store);
  });
});

/** A request from the captured client message with one workspace artifact and one modeldir at `host`. */
function requestFor(host: string, edit: (m: Record<string, any>) => void): Request {
  const m = JSON.parse(readFileSync(FIXTURE, "utf8"));
  const key = `${uniquePrefix()}`;
  m.experiment.key = key;
  m.experiment.artifacts = {
    workspace: {
      unpack: false,
      mutable: false,
      key: `${key}/blob.bin`,
      qualified: `s3://${host}/${BUCKET}/${key}/blob.bin`,
    },
    modeldir: {
      unpack: true,
      mutable: true,
      key: `experiments/${key}/modeldir.tar`,
      qualified: `s3://${host}/${BUCKET}/experiments/${key}/modeldir.tar`,
    },
  };
  m.config.env = {};
  delete m.config.storage.credentials;
  edit(m);
  return parseRequest(JSON.stringify(m));
}

describe("artifacts on s3: which credentials sign, and progress of large transfers", () => {
  test("credentials: the artifact's, else config.storage's, else config.env's only with --allow-env-secrets", () => {
    const r = requestFor("127.0.0.1:1", (m) => {
      m.experiment.artifacts.workspace.credentials = { aws: { access_key: "AKIAARTIFACT", secret_access_key: "a" } };
      m.config.storage.credentials = { aws: { access_key: "AKIASTORAGE", secret_access_key: "s" } };
      m.config.env = { AWS_ACCESS_KEY_ID: "AKIAENV", AWS_SECRET_ACCESS_KEY: "%RUNNER_SECRET%" };
    });
    const ws = r.experiment.artifacts.workspace!;
    const md = r.experiment.artifacts.modeldir!;
    expect(credentialsFor(ws, r)?.aws?.accessKey).toBe("AKIAARTIFACT");
    expect(credentialsFor(md, r)?.aws?.accessKey).toBe("AKIASTORAGE");
    const noStorage = { ...r, config: { ...r.config, storageCredentials: undefined } };
    expect(credentialsFor(md, noStorage)).toBeUndefined();
    expect(
      credentialsFor(md, noStorage, { allowEnvSecrets: false, runnerEnv: { RUNNER_SECRET: "x" } }),
    ).toBeUndefined();
    expect(
      credentialsFor(md, noStorage, { allowEnvSecrets: true, runnerEnv: { RUNNER_SECRET: "from-runner" } })?.aws,
    ).toEqual({
      accessKey: "AKIAENV",
      secretAccessKey: "from-runner",
      sessionToken: undefined,
      region: undefined,
    });
  });

  test.skipIf(!HAVE_MOTO)(
    "on a server that checks signatures, config.env credentials work only with --allow-env-secrets",
    async () => {
      const user = moto!.user!;
      const r = requestFor(moto!.host, (m) => {
        m.config.storage.endpoint = moto!.endpoint;
        m.config.env = { AWS_ACCESS_KEY_ID: user.accessKey, AWS_SECRET_ACCESS_KEY: "%MY_S3_SECRET%" };
      });
      const ws = r.experiment.artifacts.workspace!;
      await new S3Store({ credentials: creds(user), endpoint: moto!.endpoint }).put(
        ws.qualified,
        Readable.from([Buffer.from("payload")]),
      );
      const root = await mkdtemp(join(tmpdir(), "s3art-"));
      const saved = { ...process.env };
      for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"])
        delete process.env[k];
      process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/credentials";
      process.env.AWS_CONFIG_FILE = "/nonexistent/config";
      try {
        const cache = new ArtifactCache(join(root, "cache"), 100 * MiB);
        const runnerEnv = { MY_S3_SECRET: user.secretAccessKey };
        const refused = await fetchArtifact(ws, join(root, "a"), r, { cache, runnerEnv, allowEnvSecrets: false }).catch(
          (e: Error) => e,
        );
        expect(refused).toBeInstanceOf(PermanentError);
        // Without --allow-env-secrets the request brings no credentials: refused before anything is sent.
        expect((refused as Error).message).toContain("experiment.artifacts.workspace.qualified");
        expect((refused as Error).message).toContain("brings no credentials");
        const ok = await fetchArtifact(ws, join(root, "b"), r, { cache, runnerEnv, allowEnvSecrets: true });
        expect(ok.existed).toBe(true);
        expect(await readFile(join(root, "b", "blob.bin"), "utf8")).toBe("payload");
      } finally {
        process.env = saved;
        await rm(root, { recursive: true, force: true });
      }
    },
  );

  test("objects over 64 MiB report progress every ~10% and once done, both ways", async () => {
    const r = requestFor(s3rver.host, (m) => {
      m.config.storage.endpoint = s3rver.endpoint;
      m.config.storage.credentials = { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } };
    });
    const ws = r.experiment.artifacts.workspace!;
    const size = 80 * MiB;
    const blob = randomBytes(size);
    await new S3Store({ credentials: creds(KEYS), endpoint: s3rver.endpoint }).put(ws.qualified, Readable.from([blob]));
    const root = await mkdtemp(join(tmpdir(), "s3prog-"));
    try {
      const down: string[] = [];
      const fetched = await fetchArtifact(ws, join(root, "workspace"), r, {
        cache: new ArtifactCache(join(root, "cache"), 1024 * MiB),
        progress: (m) => down.push(m),
      });
      expect(fetched.bytes).toBe(size);
      expect(down.length).toBeGreaterThanOrEqual(2);
      expect(down.length).toBeLessThanOrEqual(5); // 64 MiB is 80%: then 90%, 100%, done
      expect(down[0]).toMatch(
        // Parts are written natively and their progress read every 100 ms: the first line comes
        // once 64 MiB (80 %) are in, at whatever the parts had reached by then.
        /^downloading workspace \(s3:\/\/.*blob\.bin\): [67]\d\.\dMiB of 80\.0MiB \(\d+%\), [\d.]+[KMG]iB\/s$/,
      );
      expect(down.at(-1)).toMatch(/^downloading workspace .*: done, 80\.0MiB in [\d.]+m?s/);

      const up: string[] = [];
      const dirs = { modeldir: join(root, "modeldir") };
      await mkdir(dirs.modeldir);
      const uploader = new ArtifactUploader(r, dirs, { progress: (m) => up.push(m) });
      await uploader.baseline("modeldir", false);
      await Bun.write(join(dirs.modeldir, "model.bin"), blob);
      expect(await uploader.upload()).toEqual(["modeldir"]);
      expect(up.length).toBeGreaterThanOrEqual(2);
      expect(up[0]).toMatch(/^uploading modeldir \(s3:\/\/.*modeldir\.tar\): [67]\d\.\dMiB of 80\.0MiB/);
      expect(up.at(-1)).toMatch(/^uploading modeldir .*: done, 80\.0MiB in/);
      // The final upload (the job gone) sends the tar laid out over the file: the same lines.
      up.length = 0;
      await Bun.write(join(dirs.modeldir, "model.bin"), randomBytes(size));
      expect(await uploader.upload(undefined, { jobGone: true })).toEqual(["modeldir"]);
      expect(up[0]).toMatch(/^uploading modeldir \(s3:\/\/.*modeldir\.tar\): [67]\d\.\dMiB of 80\.0MiB/);
      expect(up.at(-1)).toMatch(/^uploading modeldir .*: done, 80\.0MiB in/);

      const small: string[] = [];
      await fetchArtifact(r.experiment.artifacts.modeldir!, join(root, "m2"), r, {
        cache: new ArtifactCache(join(root, "cache2"), MiB),
        progress: (m) => small.push(m),
      });
      expect(small.length).toBeGreaterThanOrEqual(1); // the 80 MiB modeldir.tar
      const tiny: string[] = [];
      const tinyDirs = { modeldir: join(root, "tiny") };
      await mkdir(tinyDirs.modeldir);
      const tinyUploader = new ArtifactUploader(r, tinyDirs, { progress: (m) => tiny.push(m) });
      await tinyUploader.baseline("modeldir", false);
      await Bun.write(join(tinyDirs.modeldir, "x.txt"), "small");
      await tinyUploader.upload();
      expect(tiny).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 120_000);
});
