// Tars an artifact directory's contents (members relative to its root) as a stream, and
// fingerprints a directory so unchanged artifacts are not uploaded again.
//
// The directory is the job's: everything in it may be a link, a FIFO, or swapped while it is read.
// The walk therefore never leaves it (src/archive/walk.ts): a link is stored as a link, a root
// that is a link is not packed at all, special files are left out with a note.

import { Readable, PassThrough } from "node:stream";
import type { FileHandle } from "node:fs/promises";
import { createGzip } from "node:zlib";
import * as tar from "tar-stream";
import { tryOpenDirectory, type NotADirectory } from "../fs/safe-open.ts";
import { walkDirectory, type SkippedEntry, type WalkEntry } from "./walk.ts";

/** Files are read in chunks this large (the default 64 KiB costs CPU on large artifacts). */
const READ_CHUNK_BYTES = 1024 * 1024;

/** A cheap identity of a directory's content: names, sizes and modification times. */
export async function fingerprintDirectory(root: string): Promise<string> {
  try {
    const opened = await tryOpenDirectory(root);
    if ("not" in opened) return opened.not === "missing" ? "missing" : `not a directory: ${opened.not}`;
    const hasher = new Bun.CryptoHasher("sha256");
    try {
      for await (const e of walkDirectory(opened.dir, { openFiles: false })) {
        hasher.update(`${e.kind}\0${e.rel}\0${e.kind === "file" ? e.sizeBytes : 0}\0${e.mtime.getTime()}\n`);
      }
    } finally {
      await opened.dir.close();
    }
    return hasher.digest("hex");
  } catch {
    return "missing";
  }
}

/** Bytes of the regular files under a directory (an upload's expected size, before tar overhead). */
export async function directoryBytes(root: string): Promise<number> {
  const opened = await tryOpenDirectory(root).catch(() => undefined);
  if (!opened || "not" in opened) return 0;
  let total = 0;
  try {
    for await (const e of walkDirectory(opened.dir, { openFiles: false })) if (e.kind === "file") total += e.sizeBytes;
  } catch {
    // an estimate only
  } finally {
    await opened.dir.close();
  }
  return total;
}

/** The file's content, exactly `sizeBytes` of it: a file that shrank meanwhile is padded with zeros. */
function fileContent(file: FileHandle, sizeBytes: number, onShrunk: () => void): Readable {
  async function* chunks() {
    let position = 0;
    while (position < sizeBytes) {
      const want = Math.min(READ_CHUNK_BYTES, sizeBytes - position);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await file.read(buf, 0, want, position);
      if (bytesRead === 0) {
        onShrunk();
        yield Buffer.alloc(sizeBytes - position);
        return;
      }
      position += bytesRead;
      yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
    }
  }
  return Readable.from(chunks(), { objectMode: false, highWaterMark: 2 * READ_CHUNK_BYTES });
}

function addFile(pack: tar.Pack, e: Extract<WalkEntry, { kind: "file" }>, onShrunk: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const header = { name: e.rel, type: "file" as const, size: e.sizeBytes, mode: e.mode, mtime: e.mtime };
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    if (e.sizeBytes === 0) {
      (sink as unknown as { end(): void }).end();
      return;
    }
    const source = fileContent(e.file!, e.sizeBytes, onShrunk);
    source.on("error", (err) => {
      sink.destroy(err);
      reject(err);
    });
    source.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

export type PackOptions = {
  gzip?: boolean;
  /** Hears, once the tar is complete, what was left out or changed while it was read (names only). */
  onSkipped?: (skipped: SkippedEntry[]) => void;
};

/** A tar stream of an already opened directory's contents (the handle is closed at the end). */
export function packOpenDirectory(dir: FileHandle, options: PackOptions = {}): Readable {
  const pack = tar.pack();
  const out = new PassThrough();
  const skipped: SkippedEntry[] = [];
  (async () => {
    try {
      for await (const e of walkDirectory(dir, { openFiles: true, onSkipped: (s) => skipped.push(s) })) {
        if (e.kind === "dir") {
          pack.entry({ name: `${e.rel}/`, type: "directory", mode: e.mode, mtime: e.mtime });
        } else if (e.kind === "symlink") {
          pack.entry({ name: e.rel, type: "symlink", linkname: e.target, mtime: e.mtime });
        } else {
          try {
            await addFile(pack, e, () => skipped.push({ rel: e.rel, why: "shrank while it was read (padded with zeros)" }));
          } finally {
            await e.file!.close();
          }
        }
      }
    } finally {
      await dir.close();
    }
    pack.finalize();
    if (skipped.length) options.onSkipped?.(skipped);
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

/** Raised (in the stream) when the artifact's directory is a link or not a directory at all. */
export class NotADirectoryToPack extends Error {
  constructor(
    readonly root: string,
    readonly not: NotADirectory,
  ) {
    super(`${root} is ${not === "missing" ? "missing" : not}: not packed (links are never followed)`);
  }
}

/** A plain tar stream of the directory's contents; gzip-compressed when asked. A root that is a link is refused. */
export function packDirectory(root: string, options: PackOptions = {}): Readable {
  const out = new PassThrough();
  tryOpenDirectory(root).then(
    (opened) => {
      if ("not" in opened) return out.destroy(new NotADirectoryToPack(root, opened.not));
      const inner = packOpenDirectory(opened.dir, options);
      inner.on("error", (err) => out.destroy(err));
      inner.pipe(out);
    },
    (err) => out.destroy(err),
  );
  return out;
}
