// GcsStore.putFile against the wire-level GCS test server: a file of several parts goes up as
// pieces uploaded side by side and composed into the object in one request, the temporary pieces
// are removed, and a piece that fails leaves the old object whole and no piece behind.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { GcsClients } from "../../src/storage/gcs/gcs-clients.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import type { TransferSettings } from "../../src/storage/parallel-ranges.ts";
import { startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { NO_METADATA_ENV } from "../helpers/s3-server.ts";

Object.assign(process.env, NO_METADATA_ENV);

const BUCKET = "studioml-gcs-compose";
const MiB = 1024 * 1024;
const TRANSFER: TransferSettings = { concurrency: 4, partBytes: 1 * MiB };
let server: GcsTestServer;
let store: GcsStore;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gcs-compose-"));
  server = await startGcsServer({ buckets: [BUCKET] });
  store = new GcsStore(process.env, {}, new GcsClients({ apiEndpoint: server.endpoint, maxRetries: 0 }), TRANSFER);
});
afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const pieceNames = () => [...server.objects.keys()].filter((id) => id.includes(".studio-runner-piece-"));

describe("gs: putFile as a parallel composite upload", () => {
  test("pieces go up side by side, one compose makes the object, the pieces are removed", async () => {
    const data = randomBytes(5 * MiB + 77);
    const path = join(dir, "model.tar");
    await Bun.write(path, data);
    const before = server.requests.length;
    let sent = 0;
    const info = await store.putFile(`gs://${BUCKET}/experiments/k/modeldir.tar`, path, {
      onBytes: (n) => (sent += n),
    });
    expect(info.sizeBytes).toBe(data.length);
    expect(sent).toBe(data.length);
    const traffic = server.requests.slice(before);
    const sessions = traffic.filter((r) => r.method === "POST" && r.query.uploadType === "resumable");
    expect(sessions.length).toBe(4); // min(concurrency, size / part size)
    const composes = traffic.filter((r) => r.path.endsWith("/compose"));
    expect(composes.map((r) => [r.path, r.status])).toEqual([
      [`/storage/v1/b/${BUCKET}/o/experiments/k/modeldir.tar/compose`, 200],
    ]);
    expect(pieceNames()).toEqual([]);
    const stored = server.objects.get(`${BUCKET}/experiments/k/modeldir.tar`)!;
    expect(sha256(stored.data)).toBe(sha256(data));
    // The stream get reads it back whole, its CRC32C checked.
    const chunks: Buffer[] = [];
    for await (const c of await store.get(`gs://${BUCKET}/experiments/k/modeldir.tar`)) chunks.push(c as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(data));
  });

  test("a file under two parts is one resumable upload, no compose", async () => {
    const path = join(dir, "small.tar");
    await Bun.write(path, randomBytes(MiB + 1));
    const before = server.requests.length;
    await store.putFile(`gs://${BUCKET}/experiments/k/small.tar`, path);
    const traffic = server.requests.slice(before);
    expect(traffic.filter((r) => r.path.endsWith("/compose"))).toEqual([]);
    expect(traffic.filter((r) => r.method === "POST" && r.query.uploadType === "resumable").length).toBe(1);
  });

  test("a piece that fails leaves the old object whole and no piece behind", async () => {
    const location = `gs://${BUCKET}/experiments/k/output.tar`;
    await store.put(location, Readable.from([Buffer.from("the old one")]));
    const path = join(dir, "new.tar");
    await Bun.write(path, randomBytes(4 * MiB));
    server.inject({ method: "PUT", match: /studio-runner-piece-.*-2/, status: 403, times: 10 });
    await expect(store.putFile(location, path)).rejects.toThrow();
    expect(server.objects.get(`${BUCKET}/experiments/k/output.tar`)!.data.toString()).toBe("the old one");
    expect(pieceNames()).toEqual([]);
  });
});
