// Detects compression from magic bytes (never from names) and wraps a stream in a decompressor.

import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { Duplex, PassThrough } from "node:stream";
import { createGunzip } from "node:zlib";
import unbzip2 from "unbzip2-stream";
import { ArchiveError } from "../errors.ts";

export type Compression = "gzip" | "bzip2" | "xz" | "none";

export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a && head[5] === 0x00) return "xz";
  return "none";
}

/** True when the 512-byte header block carries the ustar/gnu magic. */
export function looksLikeTar(head: Uint8Array): boolean {
  if (head.length < 263) return false;
  const magic = new TextDecoder().decode(head.subarray(257, 262));
  return magic === "ustar";
}

/** Read at least n bytes from the front of a stream and put them back; fewer at end of stream. */
export async function peekBytes(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  const onEnd = () => {
    ended = true;
  };
  stream.once("end", onEnd);
  try {
    while (length < n && !ended) {
      const chunk: Buffer | null = stream.read();
      if (chunk !== null) {
        chunks.push(chunk);
        length += chunk.length;
        continue;
      }
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          stream.off("readable", done);
          stream.off("end", done);
          stream.off("error", fail);
          resolve();
        };
        const fail = (err: Error) => {
          stream.off("readable", done);
          stream.off("end", done);
          reject(err);
        };
        stream.once("readable", done);
        stream.once("end", done);
        stream.once("error", fail);
      });
    }
  } finally {
    stream.off("end", onEnd);
  }
  const head = Buffer.concat(chunks);
  if (head.length > 0) stream.unshift(head);
  return head;
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
  return duplex;
}

/** Returns the decompressed stream for whatever compression the bytes show. */
export async function decompress(source: Readable): Promise<{ stream: Readable; compression: Compression }> {
  const head = await peekBytes(source, 6);
  const compression = detectCompression(head);
  if (compression === "none") return { stream: source, compression };
  const decoder = compression === "gzip" ? createGunzip() : compression === "bzip2" ? (unbzip2() as Duplex) : xzDecompressor();
  // unbzip2-stream is an old-style stream without read(): normalise through a PassThrough.
  const out = new PassThrough();
  source.on("error", (err) => out.destroy(err));
  decoder.on("error", (err) => out.destroy(err));
  source.pipe(decoder).pipe(out);
  return { stream: out, compression };
}
