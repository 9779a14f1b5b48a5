// GcsStore.getFile against the wire-level GCS test server: a large object lands in the file byte
// for byte through ranged media GETs of one generation with its CRC32C checked, and an object
// replaced while it is read fails clearly instead of mixing two generations.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { GcsClients } from "../../src/storage/gcs/gcs-clients.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import { GrowingFile } from "../../src/storage/growing-file.ts";
import type { TransferSettings } from "../../src/storage/parallel-ranges.ts";
import { startForwardingProxy } from "../helpers/forwarding-proxy.ts";
import { expectReplacedMidReadFails } from "../helpers/replaced-mid-read.ts";
import { startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { NO_METADATA_ENV } from "../helpers/s3-server.ts";

Object.assign(process.env, NO_METADATA_ENV);

const BUCKET = "studioml-gcs-parallel";
const MiB = 1024 * 1024;
const TRANSFER: TransferSettings = { concurrency: 4, partBytes: 1 * MiB };
let server: GcsTestServer;
let store: GcsStore;
let dir: string;

const storeAt = (apiEndpoint: string) =>
  new GcsStore(process.env, {}, new GcsClients({ apiEndpoint, maxRetries: 0 }), TRANSFER);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gcs-parallel-"));
  server = await startGcsServer({ buckets: [BUCKET] });
  store = storeAt(server.endpoint);
});
afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const loc = (name: string) => `gs://${BUCKET}/parallel/${name}`;

describe("gs: getFile as parallel ranged reads", () => {
  test("a 9 MiB object lands byte for byte, read as ranges of its generation", async () => {
    const data = randomBytes(9 * MiB + 5);
    const location = loc(`${crypto.randomUUID()}.bin`);
    await store.put(location, Readable.from([data]));
    const from = server.requests.length;
    const path = join(dir, `${crypto.randomUUID()}.bin`);
    const growing = new GrowingFile();
    let counted = 0;
    await store.getFile(location, path, { growing, onBytes: (n) => (counted += n) });
    expect(sha256(await readFile(path))).toBe(sha256(data));
    expect(counted).toBe(data.length);
    expect(growing.availableBytes).toBe(data.length);
    const media = server.requests.slice(from).filter((r) => r.query.alt === "media");
    expect(media.length).toBe(10);
    expect(media.every((r) => r.query.generation !== undefined)).toBe(true);
    expect(new Set(media.map((r) => r.query.generation)).size).toBe(1);
    expect(media.map((r) => r.headers.range).sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `bytes=${i * MiB}-${Math.min(data.length, (i + 1) * MiB) - 1}`).sort(),
    );
  });

  test("a CRC32C that does not match the bytes read fails the read", async () => {
    const data = randomBytes(3 * MiB);
    const location = loc(`${crypto.randomUUID()}.bin`);
    await store.put(location, Readable.from([data]));
    const stored = server.objects.get(`${BUCKET}/parallel/${location.split("/").pop()}`)!;
    const good = stored.crc32c;
    stored.crc32c = "AAAAAA==";
    try {
      const err = await store.getFile(location, join(dir, `${crypto.randomUUID()}.bin`)).catch((e) => e);
      expect((err as Error).message).toContain("CRC32C");
      expect((err as { retryable?: boolean }).retryable).toBe(true);
    } finally {
      stored.crc32c = good;
    }
  });

  test("an object replaced while it is read fails clearly", async () => {
    const gate = startForwardingProxy(server.endpoint);
    try {
      await expectReplacedMidReadFails({
        reader: storeAt(gate.endpoint),
        writer: store,
        location: loc(`${crypto.randomUUID()}.bin`),
        bytes: 12 * MiB,
        gate,
      });
    } finally {
      await gate.stop();
    }
  });
});
