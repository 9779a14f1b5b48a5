// Detects compression from magic bytes (never from names) and wraps a stream in a decompressor.

import { spawn } from "node:child_process";
import { Duplex, PassThrough, Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import unbzip2 from "unbzip2-stream";
import { ArchiveError } from "../errors.ts";

export type Compression = "gzip" | "bzip2" | "xz" | "none";

export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  if (
    head[0] === 0xfd &&
    head[1] === 0x37 &&
    head[2] === 0x7a &&
    head[3] === 0x58 &&
    head[4] === 0x5a &&
    head[5] === 0x00
  )
    return "xz";
  return "none";
}

/** True when the 512-byte header block carries the ustar/gnu magic. */
export function looksLikeTar(head: Uint8Array): boolean {
  if (head.length < 263) return false;
  const magic = new TextDecoder().decode(head.subarray(257, 262));
  return magic === "ustar";
}

/**
 * Read up to n bytes from the front of a stream. Returns them and a stream that yields the same
 * bytes again followed by the rest, so short and empty streams are handled like any other.
 */
export async function peekBytes(source: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    chunks.push(chunk);
    length += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay() {
    let finished = done;
    try {
      if (head.length) yield head;
      while (!finished) {
        const r = await it.next();
        if (r.done) {
          finished = true;
          return;
        }
        yield r.value;
      }
    } finally {
      // Destroyed before the end (a refused archive, a bomb): release the source too, which stops
      // its decompressor (an xz child process) instead of leaving it blocked on a full pipe.
      if (!finished) await it.return?.();
    }
  }
  return { head, stream: Readable.from(replay(), { objectMode: false }) };
}

function xzDecompressor(): Duplex {
  const child = spawn("xz", ["-dc"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout } as unknown as Iterable<unknown>);
  child.on("error", (err) => duplex.destroy(new ArchiveError(`xz archives need the xz program: ${err.message}`)));
  child.on("close", (code) => {
    if (code) duplex.destroy(new ArchiveError(`xz failed (${code}): ${stderr.trim()}`));
  });
  // A reader that gives up (a refused member, a bomb over budget) must not leave xz running.
  duplex.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  return duplex;
}

/** Returns the decompressed stream for whatever compression the bytes show. */
export async function decompress(source: Readable): Promise<{ stream: Readable; compression: Compression }> {
  const { head, stream: replayed } = await peekBytes(source, 6);
  const compression = detectCompression(head);
  if (compression === "none") return { stream: replayed, compression };
  const decoder =
    compression === "gzip" ? createGunzip() : compression === "bzip2" ? (unbzip2() as Duplex) : xzDecompressor();
  // unbzip2-stream is an old-style stream without read(): normalise through a PassThrough.
  const out = new PassThrough();
  replayed.on("error", (err) => out.destroy(err));
  decoder.on("error", (err) => out.destroy(err));
  replayed.pipe(decoder).pipe(out);
  // When the reader gives up early, stop decompressing and reading the source as well.
  out.on("close", () => {
    if (!out.readableEnded) {
      decoder.destroy();
      replayed.destroy();
    }
  });
  return { stream: out, compression };
}
