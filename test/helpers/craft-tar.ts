// Test archives built member by member with tar-stream, so names and headers reach the file
// exactly as written (GNU tar would clean up the hostile ones).

import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";

export type TarEntry = { header: Partial<tar.Header> & { name: string }; content?: string | Buffer };

export async function craftTar(file: string, entries: TarEntry[]): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(file));
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.content !== undefined) pack.entry(e.header as tar.Header, e.content, cb);
      else pack.entry(e.header as tar.Header, cb);
    });
  }
  pack.finalize();
  await done;
}
