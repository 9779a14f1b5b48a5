// Parallel ranged reads of S3 objects on real servers (s3rver; moto with verified signatures):
// a large object comes back byte for byte through many ranged GETs, and an object replaced while
// it is read fails with a clear error (If-Match on its ETag) instead of mixing two versions.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { ObjectChangedError } from "../../src/storage/parallel-ranges.ts";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import { expectReplacedMidReadFails } from "../helpers/replaced-mid-read.ts";
import { motoAvailable, startMoto, startS3rver, type KeyPair, type S3Server } from "../helpers/s3-server.ts";

const BUCKET = "studioml-artifacts";
const KEYS: KeyPair = { accessKey: "AKIAEXAMPLEKEY", secretAccessKey: "exampleSecretKey123" };
const MiB = 1024 * 1024;
const TRANSFER = { concurrency: 4, partBytes: 5 * MiB };
const servers: S3Server[] = [];

beforeAll(async () => {
  servers.push(await startS3rver({ keys: [KEYS], buckets: [BUCKET] }));
  if (motoAvailable()) servers.push(await startMoto({ verifySignatures: true, buckets: [BUCKET] }));
  else console.warn("\n*** moto_server is missing: parallel reads are checked on s3rver only ***\n");
}, 60_000);
afterAll(async () => {
  for (const s of servers) await s.stop();
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const storeOn = (s: S3Server) =>
  new S3Store(
    { credentials: { aws: { ...(s.user ?? KEYS), region: "us-east-1" } }, endpoint: s.endpoint },
    process.env,
    TRANSFER,
  );

describe("parallel ranged reads on S3 servers", () => {
  test("a 42 MiB object comes back byte for byte", async () => {
    for (const server of servers) {
      const store = storeOn(server);
      const data = randomBytes(42 * MiB + 17);
      const location = `s3://${server.host}/${BUCKET}/parallel/${crypto.randomUUID()}.bin`;
      await store.put(location, Readable.from([data]));
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const chunk of await store.get(location)) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      expect({ server: server.kind, bytes, sha: hash.digest("hex") }).toEqual({
        server: server.kind,
        bytes: data.length,
        sha: sha256(data),
      });
    }
  }, 120_000);

  test("an object replaced while it is read fails clearly; nothing of the new version is mixed in", async () => {
    for (const server of servers) {
      const location = `s3://${server.host}/${BUCKET}/parallel/${crypto.randomUUID()}.bin`;
      await expectReplacedMidReadFails(storeOn(server), location, 40 * MiB);
    }
  }, 120_000);

  test("a get given what head() said reads that version: replaced in between, it fails instead of mixing", async () => {
    for (const server of servers) {
      const store = storeOn(server);
      const location = `s3://${server.host}/${BUCKET}/parallel/${crypto.randomUUID()}.bin`;
      await store.put(location, Readable.from([Buffer.alloc(20 * MiB, 1)]));
      const known = (await store.head(location))!;
      await store.put(location, Readable.from([Buffer.alloc(20 * MiB, 2)]));
      const err = await (async () => {
        for await (const _ of await store.get(location, known));
      })().catch((e) => e);
      expect(err).toBeInstanceOf(ObjectChangedError);
    }
  }, 120_000);
});
