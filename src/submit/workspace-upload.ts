// Tars a workspace directory and stores it content-addressed as blobstore/<sha256>.tar.

import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { packDirectory } from "../archive/pack.ts";
import { uploadFromFile } from "../storage/file-transfer.ts";
import type { ObjectStore } from "../storage/object-store.ts";

/** Upload the workspace once; returns the storage key (blobstore/<sha256 of the tar>.tar). */
export async function uploadWorkspace(
  dir: string,
  store: ObjectStore,
  locationOf: (key: string) => string,
): Promise<{ key: string; sizeBytes: number }> {
  const scratch = await mkdtemp(join(tmpdir(), "studio-submit-"));
  try {
    const tarPath = join(scratch, "workspace.tar");
    const hasher = new Bun.CryptoHasher("sha256");
    let sizeBytes = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hasher.update(chunk);
        sizeBytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(packDirectory(dir, { followRootLink: true }), hashing, createWriteStream(tarPath));
    const key = `blobstore/${hasher.digest("hex")}.tar`;
    const location = locationOf(key);
    // From the file: in parallel parts where the store can (the runner's own upload path).
    if (!(await store.head(location))) await uploadFromFile(store, location, tarPath);
    return { key, sizeBytes };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
