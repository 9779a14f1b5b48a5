// Parallel ranged reads of gs:// objects against the wire-level GCS test server (ranged media GETs
// of one generation): a large object comes back byte for byte with its CRC32C checked, and an
// object replaced while it is read fails clearly instead of mixing two generations.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { GcsClients } from "../../src/storage/gcs/gcs-clients.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import { expectReplacedMidReadFails } from "../helpers/replaced-mid-read.ts";
import { startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { NO_METADATA_ENV } from "../helpers/s3-server.ts";

Object.assign(process.env, NO_METADATA_ENV);

const BUCKET = "studioml-gcs-parallel";
const MiB = 1024 * 1024;
let server: GcsTestServer;
let store: GcsStore;

beforeAll(async () => {
  server = await startGcsServer({ buckets: [BUCKET] });
  const clients = new GcsClients({ apiEndpoint: server.endpoint, maxRetries: 0 });
  store = new GcsStore(process.env, {}, clients, { concurrency: 4, partBytes: 1 * MiB });
});
afterAll(async () => {
  await server?.stop();
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const loc = (name: string) => `gs://${BUCKET}/parallel/${name}`;

describe("gs: parallel ranged reads", () => {
  test("a 9 MiB object comes back byte for byte, read as ranges of its generation", async () => {
    const data = randomBytes(9 * MiB + 5);
    const location = loc(`${crypto.randomUUID()}.bin`);
    await store.put(location, Readable.from([data]));
    const from = server.requests.length;
    const chunks: Buffer[] = [];
    for await (const c of await store.get(location)) chunks.push(c as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(data));
    const media = server.requests.slice(from).filter((r) => r.query.alt === "media");
    expect(media.length).toBe(10);
    expect(media.every((r) => r.query.generation !== undefined)).toBe(true);
  });

  test("an object replaced while it is read fails clearly", async () => {
    await expectReplacedMidReadFails(store, loc(`${crypto.randomUUID()}.bin`), 12 * MiB);
  });
});
