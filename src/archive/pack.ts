// Tars an artifact directory's contents (members relative to its root) as a stream, and
// fingerprints a directory so unchanged artifacts are not uploaded again.
//
// The directory is the job's: everything in it may be a link, a FIFO, or swapped while it is read.
// The walk therefore never leaves it (src/archive/walk.ts): a link is stored as a link, a root
// that is a link is not packed at all, special files are left out with a note.

import { createReadStream, read } from "node:fs";
import { PassThrough, type Readable } from "node:stream";
import { realpath, type FileHandle } from "node:fs/promises";
import { createGzip } from "node:zlib";
import * as tar from "tar-stream";
import { tryOpenDirectory, type NotADirectory } from "../fs/safe-open.ts";
import { closeFile, walkDirectory, type SkippedEntry, type WalkEntry } from "./walk.ts";

/**
 * Large files are read in chunks this large: the default 64 KiB costs CPU, 1 MiB holds more
 * garbage buffers between collections (BENCHMARKS.md, "Transfer through files").
 */
const READ_CHUNK_BYTES = 256 * 1024;
/** Files up to this size are read with one read into one buffer. */
const SMALL_FILE_BYTES = 1024 * 1024;

const readAt = (fd: number, buf: Buffer, offset: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) =>
    read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
  );

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

/** A small file's content from its descriptor, exactly `sizeBytes` (padded with zeros if it shrank). */
async function readSmall(fd: number, sizeBytes: number, onShrunk: () => void): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(sizeBytes);
  let filled = 0;
  while (filled < sizeBytes) {
    const n = await readAt(fd, buf, filled, sizeBytes - filled, filled);
    if (n === 0) {
      onShrunk();
      buf.fill(0, filled);
      break;
    }
    filled += n;
  }
  return buf;
}

/** A regular file as the next tar entry, its content read from the descriptor the walk opened. */
export async function addFile(
  pack: tar.Pack,
  e: Extract<WalkEntry, { kind: "file" }>,
  onShrunk: () => void,
): Promise<void> {
  const header = { name: e.rel, type: "file" as const, size: e.sizeBytes, mode: e.mode, mtime: e.mtime };
  if (e.sizeBytes <= SMALL_FILE_BYTES) {
    // One read into one buffer: a stream per small file costs more than the read.
    const content = await readSmall(e.fd!, e.sizeBytes, onShrunk);
    return new Promise((resolve, reject) => pack.entry(header, content, (err) => (err ? reject(err) : resolve())));
  }
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as NodeJS.WritableStream & {
      destroy(err?: Error): void;
    };
    // Read from the descriptor the walk opened (never the path again), exactly the size in the
    // header, a chunk at a time; a file that shrank meanwhile is padded with zeros.
    const source = createReadStream("", {
      fd: e.fd!,
      start: 0,
      end: e.sizeBytes - 1,
      highWaterMark: READ_CHUNK_BYTES,
      autoClose: false,
    });
    let readBytes = 0;
    source.on("data", (chunk) => (readBytes += chunk.length));
    source.on("end", () => {
      if (readBytes < e.sizeBytes) {
        onShrunk();
        sink.write(Buffer.alloc(e.sizeBytes - readBytes));
      }
      sink.end();
    });
    source.on("error", (err) => {
      sink.destroy(err);
      reject(err);
    });
    source.pipe(sink, { end: false });
  });
}

export type PackOptions = {
  gzip?: boolean;
  /** The root is the caller's own path (submit's --workspace), not a job's: a link there is followed. */
  followRootLink?: boolean;
  /** Hears, once the tar is complete, what was left out or changed while it was read (names only). */
  onSkipped?: (skipped: SkippedEntry[]) => void;
};

/** A tar stream of an already opened directory's contents (the handle is closed at the end). */
export function packOpenDirectory(dir: FileHandle, options: PackOptions = {}): Readable {
  const pack = tar.pack();
  const out = new PassThrough();
  const skipped: SkippedEntry[] = [];
  // The tar stream closed before it was finalized (its reader went away): the walk stops there,
  // closing what it opened, instead of waiting forever on an entry nobody reads.
  let finalized = false;
  const abandoned = new Promise<never>((_, reject) =>
    (pack as unknown as Readable).once("close", () => {
      if (!finalized) reject(new Error("the tar stream was closed before it was complete"));
    }),
  );
  abandoned.catch(() => undefined);
  (async () => {
    try {
      for await (const e of walkDirectory(dir, { openFiles: true, onSkipped: (s) => skipped.push(s) })) {
        if ((pack as unknown as Readable).destroyed) await abandoned;
        if (e.kind === "dir") {
          pack.entry({ name: `${e.rel}/`, type: "directory", mode: e.mode, mtime: e.mtime });
        } else if (e.kind === "symlink") {
          pack.entry({ name: e.rel, type: "symlink", linkname: e.target, mtime: e.mtime });
        } else {
          try {
            await Promise.race([
              addFile(pack, e, () => skipped.push({ rel: e.rel, why: "shrank while it was read (padded with zeros)" })),
              abandoned,
            ]);
          } finally {
            await closeFile(e.fd!);
          }
        }
      }
    } finally {
      await dir.close();
    }
    finalized = true;
    pack.finalize();
    if (skipped.length) options.onSkipped?.(skipped);
  })().catch((err) => {
    pack.destroy(err);
    out.destroy(err);
  });
  const tarStream = pack as unknown as Readable;
  // A reader that goes away early (an upload refused or failed) stops the packing quietly: the
  // tar stream's own "closed" error has nobody else to hear it.
  tarStream.on("error", (err) => out.destroy(err));
  out.on("close", () => {
    if (!out.readableEnded) pack.destroy();
  });
  if (options.gzip) {
    const gzip = createGzip();
    gzip.on("error", (err) => out.destroy(err));
    tarStream.pipe(gzip).pipe(out);
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

/**
 * A plain tar stream of the directory's contents; gzip-compressed when asked. A root that is a
 * link is refused unless `followRootLink`; links below it are stored as links either way.
 */
export function packDirectory(root: string, options: PackOptions = {}): Readable {
  const out = new PassThrough();
  (options.followRootLink ? realpath(root).then(tryOpenDirectory) : tryOpenDirectory(root)).then(
    (opened) => {
      if ("not" in opened) return out.destroy(new NotADirectoryToPack(root, opened.not));
      if (out.destroyed) return void opened.dir.close().catch(() => undefined); // nobody reads any more
      const inner = packOpenDirectory(opened.dir, options);
      inner.on("error", (err) => out.destroy(err));
      out.on("close", () => inner.destroy()); // a reader that went away stops the packing
      inner.pipe(out);
    },
    (err) => out.destroy(err),
  );
  return out;
}
