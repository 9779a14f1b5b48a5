// S3Store.getFile on real servers (s3rver; moto with verified signatures): a large object lands in
// the file byte for byte through parallel ranged GETs pinned by If-Match on its ETag, a small one
// over one plain GET, and an object replaced while it is read (or between head() and the read)
// fails with a clear ObjectChangedError instead of mixing two versions.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { GrowingFile } from "../../src/storage/growing-file.ts";
import { ObjectChangedError, type TransferSettings } from "../../src/storage/parallel-ranges.ts";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import { startForwardingProxy } from "../helpers/forwarding-proxy.ts";
import { expectReplacedMidReadFails } from "../helpers/replaced-mid-read.ts";
import { motoAvailable, startMoto, startS3rver, type KeyPair, type S3Server } from "../helpers/s3-server.ts";

const BUCKET = "studioml-artifacts";
const KEYS: KeyPair = { accessKey: "AKIAEXAMPLEKEY", secretAccessKey: "exampleSecretKey123" };
const MiB = 1024 * 1024;
const TRANSFER: TransferSettings = { concurrency: 4, partBytes: 5 * MiB };
const servers: S3Server[] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "s3-parallel-"));
  servers.push(await startS3rver({ keys: [KEYS], buckets: [BUCKET] }));
  if (motoAvailable()) servers.push(await startMoto({ verifySignatures: true, buckets: [BUCKET] }));
  else console.warn("\n*** moto_server is missing: parallel reads are checked on s3rver only ***\n");
}, 60_000);
afterAll(async () => {
  for (const s of servers) await s.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** A store talking to `endpoint` (the server, or a proxy in front of it) as the server's user. */
const storeOn = (s: S3Server, endpoint = s.endpoint) =>
  new S3Store({ credentials: { aws: { ...(s.user ?? KEYS), region: "us-east-1" } }, endpoint }, process.env, TRANSFER);
/** The AWS form: the configured endpoint (server or proxy) serves it. */
const newLocation = () => `s3://${BUCKET}/parallel/${crypto.randomUUID()}.bin`;
const newPath = () => join(dir, `${crypto.randomUUID()}.bin`);

describe("S3Store.getFile on S3 servers", () => {
  test("a 42 MiB object lands byte for byte, as parallel ranged GETs pinned to its ETag", async () => {
    for (const server of servers) {
      const proxy = startForwardingProxy(server.endpoint);
      try {
        const data = randomBytes(42 * MiB + 17);
        const location = newLocation();
        const etag = (await storeOn(server).put(location, Readable.from([data]))).version;
        const path = newPath();
        const growing = new GrowingFile();
        let counted = 0;
        await storeOn(server, proxy.endpoint).getFile(location, path, { growing, onBytes: (n) => (counted += n) });
        const back = await readFile(path);
        expect({ server: server.kind, bytes: back.length, sha: sha256(back) }).toEqual({
          server: server.kind,
          bytes: data.length,
          sha: sha256(data),
        });
        expect(counted).toBe(data.length);
        expect(growing.availableBytes).toBe(data.length);
        // Nine 5 MiB ranges (the last one 2 MiB + 17), each asked once, each If-Match the ETag.
        const ranged = proxy.seen.filter((r) => r.method === "GET");
        expect(ranged.map((r) => r.headers.get("range")).sort()).toEqual(
          Array.from(
            { length: 9 },
            (_, i) => `bytes=${i * 5 * MiB}-${Math.min(data.length, (i + 1) * 5 * MiB) - 1}`,
          ).sort(),
        );
        expect(ranged.every((r) => r.headers.get("if-match") === etag)).toBe(true);
        expect(ranged.every((r) => r.status === 206)).toBe(true);
        await rm(path);
      } finally {
        await proxy.stop();
      }
    }
  }, 120_000);

  test("an object under two parts comes over one plain GET", async () => {
    for (const server of servers) {
      const proxy = startForwardingProxy(server.endpoint);
      try {
        const data = randomBytes(3 * MiB + 1);
        const location = newLocation();
        await storeOn(server).put(location, Readable.from([data]));
        const path = newPath();
        await storeOn(server, proxy.endpoint).getFile(location, path);
        expect(sha256(await readFile(path))).toBe(sha256(data));
        const gets = proxy.seen.filter((r) => r.method === "GET");
        expect(gets.length).toBe(1);
        expect(gets[0]!.headers.has("range")).toBe(false);
        await rm(path);
      } finally {
        await proxy.stop();
      }
    }
  }, 60_000);

  test("an object replaced while it is read fails clearly", async () => {
    for (const server of servers) {
      const gate = startForwardingProxy(server.endpoint);
      try {
        await expectReplacedMidReadFails({
          reader: storeOn(server, gate.endpoint),
          writer: storeOn(server),
          location: newLocation(),
          bytes: 40 * MiB,
          gate,
        });
      } finally {
        await gate.stop();
      }
    }
  }, 120_000);

  test("a getFile given what head() said reads that version: replaced in between, it fails instead of mixing", async () => {
    for (const server of servers) {
      const store = storeOn(server);
      const location = newLocation();
      await store.put(location, Readable.from([Buffer.alloc(20 * MiB, 1)]));
      const known = (await store.head(location))!;
      await store.put(location, Readable.from([Buffer.alloc(20 * MiB, 2)]));
      const path = newPath();
      const err = await store.getFile(location, path, { known }).catch((e) => e);
      expect(err).toBeInstanceOf(ObjectChangedError);
      expect((err as Error).message).toContain("replaced while it was being read");
      await rm(path, { force: true });
    }
  }, 120_000);
});
