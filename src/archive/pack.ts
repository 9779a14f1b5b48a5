// Tars an artifact directory's contents (members relative to its root) as a stream, and
// fingerprints a directory so unchanged artifacts are not uploaded again.

import { createReadStream } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { createGzip } from "node:zlib";
import * as tar from "tar-stream";

/** Files are read in chunks this large (the default 64 KiB costs CPU on large artifacts). */
const READ_CHUNK_BYTES = 1024 * 1024;

type Member = { rel: string; path: string; kind: "dir" | "file" | "symlink"; size: number; mode: number; mtime: Date };

async function walk(root: string, rel = "", out: Member[] = []): Promise<Member[]> {
  const names = (await readdir(join(root, rel))).sort();
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const path = join(root, r);
    const s = await lstat(path);
    if (s.isDirectory()) {
      out.push({ rel: r, path, kind: "dir", size: 0, mode: s.mode & 0o777, mtime: s.mtime });
      await walk(root, r, out);
    } else if (s.isFile()) {
      out.push({ rel: r, path, kind: "file", size: s.size, mode: s.mode & 0o777, mtime: s.mtime });
    } else if (s.isSymbolicLink()) {
      out.push({ rel: r, path, kind: "symlink", size: 0, mode: 0o777, mtime: s.mtime });
    }
  }
  return out;
}

/** A cheap identity of a directory's content: names, sizes and modification times. */
export async function fingerprintDirectory(root: string): Promise<string> {
  try {
    const members = await walk(root);
    const hasher = new Bun.CryptoHasher("sha256");
    for (const m of members) hasher.update(`${m.kind}\0${m.rel}\0${m.size}\0${m.mtime.getTime()}\n`);
    return hasher.digest("hex");
  } catch {
    return "missing";
  }
}

function addFile(pack: tar.Pack, m: Member): Promise<void> {
  return new Promise((resolve, reject) => {
    const header = { name: m.rel, type: "file" as const, size: m.size, mode: m.mode, mtime: m.mtime };
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    if (m.size === 0) {
      (sink as unknown as { end(): void }).end();
      return;
    }
    // Read exactly the size recorded in the header; a file that shrinks meanwhile fails the entry.
    const source = createReadStream(m.path, { start: 0, end: m.size - 1, highWaterMark: READ_CHUNK_BYTES });
    source.on("error", (err) => {
      sink.destroy(err);
      reject(err);
    });
    source.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

/** A plain tar stream of the directory's contents; gzip-compressed when asked. */
export function packDirectory(root: string, options: { gzip?: boolean } = {}): Readable {
  const pack = tar.pack();
  const out = new PassThrough();
  (async () => {
    for (const m of await walk(root)) {
      if (m.kind === "dir") {
        pack.entry({ name: `${m.rel}/`, type: "directory", mode: m.mode, mtime: m.mtime });
      } else if (m.kind === "symlink") {
        pack.entry({ name: m.rel, type: "symlink", linkname: await readlink(m.path), mtime: m.mtime });
      } else {
        await addFile(pack, m);
      }
    }
    pack.finalize();
  })().catch((err) => {
    pack.destroy(err);
    out.destroy(err);
  });
  const tarStream = pack as unknown as Readable;
  if (options.gzip) {
    tarStream.pipe(createGzip()).pipe(out);
  } else {
    tarStream.pipe(out);
  }
  return out;
}
