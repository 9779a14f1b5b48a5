// The tar of an opened directory laid out instead of written: tar-stream encodes every header,
// the padding, the end blocks and the small files' bytes exactly as packOpenDirectory does, but a
// large file's content is never read here: it stands in the layout as (descriptor, offset,
// length), so an upload sends those bytes straight from the file (the runtime reads them) and no
// copy of the tar is made anywhere: no spool file, no window of parts in memory.
//
// How the content stays unread: a large file's entry is given views of one zero-filled "stand-in"
// buffer as its content; tar-stream passes chunks through unchanged, so every chunk of the packed
// stream that is a view of that buffer is the next stretch of the file being laid out, and
// everything else is bytes to keep. Should a packer ever copy chunks instead, no referenced file
// would be seen whole, and the layout fails rather than send anything (and never the runner's
// own memory: the stand-in holds zeros).
//
// The layout is a snapshot of sizes: a file that shrinks before its bytes are sent would leave
// the tar misaligned, so check() (called before the upload is completed) refuses it then.

import { fstatSync, read } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import * as tar from "tar-stream";
import { addFile } from "./pack.ts";
import { closeFile, type SkippedEntry, walkDirectory } from "./walk.ts";

export type LayoutLimits = {
  /** Files at least this large are referenced, not read. */
  referenceFromBytes: number;
  /** Bytes kept in memory (headers, padding, smaller files) before the layout is not worth it. */
  maxInlineBytes: number;
  /** Descriptors kept open for referenced files before the layout is not worth it. */
  maxReferencedFiles: number;
};

const MiB = 1024 * 1024;
export const DEFAULT_LAYOUT_LIMITS: LayoutLimits = {
  referenceFromBytes: 4 * MiB,
  maxInlineBytes: 32 * MiB,
  maxReferencedFiles: 256,
};

/** The stand-in content handed to tar-stream per write: views of one zero-filled buffer. */
const STAND_IN_BYTES = 1 * MiB;
/** A stream body reads a referenced file in pieces this large. */
const READ_PIECE_BYTES = 256 * 1024;

type Segment =
  | { start: number; kind: "bytes"; bytes: Uint8Array }
  | { start: number; kind: "file"; fd: number; rel: string; offset: number; length: number };

const lengthOf = (s: Segment) => (s.kind === "bytes" ? s.bytes.byteLength : s.length);

/** A file whose bytes were laid out shrank (or could not be checked) before they were sent. */
export class LaidOutFileChanged extends Error {}

/** The tar's bytes (the shape of storage's UploadSource): any range, read again on every call. */
export type LaidOutBytes = {
  sizeBytes: number;
  body(start: number, end: number): Blob | ReadableStream<Uint8Array>;
  /** Throws LaidOutFileChanged when a referenced file is now shorter than its bytes laid out. */
  check(): void;
};

export type TarLayout = {
  source: LaidOutBytes;
  /** Names left out or changed while the tar was laid out (as packOpenDirectory's onSkipped). */
  skipped: SkippedEntry[];
  /** Closes the referenced files' descriptors. */
  close(): Promise<void>;
};

function readAt(fd: number, buf: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, buf, 0, buf.byteLength, position, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

/**
 * Lays out the tar of `dir` (which stays the caller's to close). Undefined when it is not worth
 * it (too many small bytes to keep in memory, too many large files to keep open): the caller
 * then packs the directory the ordinary way.
 */
export async function layOutOpenDirectory(
  dir: FileHandle,
  limits: LayoutLimits = DEFAULT_LAYOUT_LIMITS,
): Promise<TarLayout | undefined> {
  const pack = tar.pack();
  const standIn = Buffer.alloc(STAND_IN_BYTES);
  const segments: Segment[] = [];
  const kept: number[] = [];
  const skipped: SkippedEntry[] = [];
  // Referenced files in the order their stand-in bytes come out of the packer.
  const pending: Array<{ fd: number; rel: string; offset: number; left: number }> = [];
  let sizeBytes = 0;
  let inlineBytes = 0;
  let notWorthIt = false;

  const collect = (async () => {
    try {
      await collectChunks();
    } catch (err) {
      if (!notWorthIt) throw err;
    }
  })();
  async function collectChunks() {
    for await (const chunk of pack as unknown as Readable) {
      const c = chunk as Uint8Array;
      if (c.byteLength === 0) continue;
      if (c.buffer === standIn.buffer) {
        const ref = pending[0]!;
        const last = segments.at(-1);
        // One segment per file, however many stand-in chunks it came in.
        if (last?.kind === "file" && last.fd === ref.fd && last.offset + last.length === ref.offset) {
          last.length += c.byteLength;
        } else {
          segments.push({
            start: sizeBytes,
            kind: "file",
            fd: ref.fd,
            rel: ref.rel,
            offset: ref.offset,
            length: c.byteLength,
          });
        }
        ref.offset += c.byteLength;
        ref.left -= c.byteLength;
        if (ref.left === 0) pending.shift();
      } else {
        inlineBytes += c.byteLength;
        if (inlineBytes > limits.maxInlineBytes) {
          notWorthIt = true;
          pack.destroy();
          return;
        }
        segments.push({ start: sizeBytes, kind: "bytes", bytes: c });
      }
      sizeBytes += c.byteLength;
    }
  }

  const closeKept = async () => {
    await Promise.all(kept.splice(0).map((fd) => closeFile(fd).catch(() => undefined)));
  };

  const produce = async () => {
    try {
      await produceEntries();
    } catch (err) {
      if (notWorthIt) return;
      pack.destroy(err as Error);
      throw err;
    } finally {
      if (notWorthIt) pack.destroy();
    }
  };
  const produceEntries = async () => {
    for await (const e of walkDirectory(dir, { openFiles: true, onSkipped: (s) => skipped.push(s) })) {
      if (notWorthIt) return;
      if (e.kind === "dir") {
        pack.entry({ name: `${e.rel}/`, type: "directory", mode: e.mode, mtime: e.mtime });
      } else if (e.kind === "symlink") {
        pack.entry({ name: e.rel, type: "symlink", linkname: e.target, mtime: e.mtime });
      } else if (e.sizeBytes >= limits.referenceFromBytes) {
        kept.push(e.fd!);
        if (kept.length > limits.maxReferencedFiles) {
          notWorthIt = true;
          return;
        }
        pending.push({ fd: e.fd!, rel: e.rel, offset: 0, left: e.sizeBytes });
        await standInContent(pack, e, standIn);
      } else {
        try {
          await addFile(pack, e, () =>
            skipped.push({ rel: e.rel, why: "shrank while it was read (padded with zeros)" }),
          );
        } finally {
          await closeFile(e.fd!);
        }
      }
    }
    pack.finalize();
  };

  try {
    await Promise.all([produce(), collect]);
  } catch (err) {
    await closeKept();
    throw err;
  }
  if (notWorthIt) {
    await closeKept();
    return undefined;
  }
  if (pending.length) {
    await closeKept();
    throw new Error(`the packer did not pass ${pending[0]!.rel}'s stand-in content through: not laid out`);
  }

  const find = (at: number): number => {
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segments[mid]!.start <= at) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };

  const body = (start: number, end: number): Blob | ReadableStream<Uint8Array> => {
    const first = find(start);
    const only = segments[first]!;
    if (only.kind === "file" && end <= only.start + only.length) {
      // Wholly inside one file: the runtime reads and sends the slice itself. It is named by the
      // descriptor's /proc link, which is the very file opened (never a path in the job's tree);
      // a Blob of the bare descriptor would be read whole into memory by the SDK's request.
      const from = only.offset + (start - only.start);
      return Bun.file(`/proc/self/fd/${only.fd}`).slice(from, from + (end - start));
    }
    let index = first;
    let at = start;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (at >= end) return controller.close();
        const s = segments[index]!;
        const within = at - s.start;
        const take = Math.min(lengthOf(s) - within, end - at);
        if (s.kind === "bytes") {
          controller.enqueue(s.bytes.slice(within, within + take));
          at += take;
        } else {
          const piece = new Uint8Array(Math.min(take, READ_PIECE_BYTES));
          const n = await readAt(s.fd, piece, s.offset + within);
          if (n === 0) throw new LaidOutFileChanged(`${s.rel} shrank while it was being sent`);
          controller.enqueue(n === piece.byteLength ? piece : piece.subarray(0, n));
          at += n;
        }
        if (at >= s.start + lengthOf(s)) index++;
      },
    });
  };

  const check = () => {
    const needed = new Map<number, { rel: string; bytes: number }>();
    for (const s of segments) if (s.kind === "file") needed.set(s.fd, { rel: s.rel, bytes: s.offset + s.length });
    for (const [fd, { rel, bytes }] of needed) {
      let size: number;
      try {
        size = fstatSync(fd).size;
      } catch (err) {
        throw new LaidOutFileChanged(`${rel} could not be checked: ${(err as Error).message}`);
      }
      if (size < bytes) throw new LaidOutFileChanged(`${rel} shrank from ${bytes} to ${size} bytes while it was sent`);
    }
  };

  return { source: { sizeBytes, body, check }, skipped, close: closeKept };
}

/** A referenced file's entry: stand-in views as its content, as many bytes as its header says. */
function standInContent(
  pack: tar.Pack,
  e: { rel: string; sizeBytes: number; mode: number; mtime: Date },
  standIn: Buffer,
) {
  const header = { name: e.rel, type: "file" as const, size: e.sizeBytes, mode: e.mode, mtime: e.mtime };
  return new Promise<void>((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as NodeJS.WritableStream;
    let left = e.sizeBytes;
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, standIn.byteLength);
        left -= n;
        if (!sink.write(standIn.subarray(0, n))) return void sink.once("drain", more);
      }
      sink.end();
    };
    more();
  });
}
