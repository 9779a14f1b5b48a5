// Moving a whole object between storage and a local file: through the store's own file transfer
// where it has one (parallel ranges, parts sent from file slices), else through its streams.

import { createReadStream } from "node:fs";
import { Transform } from "node:stream";
import { LOCAL_READ_BYTES, writeStreamToFile } from "./growing-file.ts";
import type { FileTransferOptions, ObjectInfo, ObjectStore } from "./object-store.ts";

/** Passes chunks on, telling `onBytes` the size of each. */
export function counting(onBytes?: (bytes: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
}

/** The object's bytes into `path` (created or replaced); NotFoundError when it does not exist. */
export async function downloadToFile(
  store: ObjectStore,
  location: string,
  path: string,
  options: FileTransferOptions = {},
): Promise<void> {
  if (store.getFile) return store.getFile(location, path, options);
  await writeStreamToFile(await store.get(location), path, options);
}

/** The file's bytes as the object (readers see the old object or the whole new one). */
export async function uploadFromFile(
  store: ObjectStore,
  location: string,
  path: string,
  options: FileTransferOptions = {},
): Promise<ObjectInfo> {
  if (store.putFile) return store.putFile(location, path, options);
  await options.growing?.reach(Infinity); // a stream put needs the whole file
  const file = createReadStream(path, { highWaterMark: LOCAL_READ_BYTES });
  const body = counting(options.onBytes);
  file.on("error", (err) => body.destroy(err));
  return store.put(location, file.pipe(body));
}
