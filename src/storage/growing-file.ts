// A local file that is still being written while another task reads it: how many bytes from its
// start are already on disk, whether it is complete, or why it never will be. A download fills
// it (parallel ranges report the contiguous prefix) while an unpacker follows it; a packer
// spools into it while an uploader sends the parts that are already whole.

import { type FileHandle, open } from "node:fs/promises";
import { Readable } from "node:stream";

/**
 * Reads of local copies (followed, cached, spooled). 256 KiB measured best for unpacking a 1 GiB
 * tar from a file (bench/transfer.ts, BENCHMARKS.md): 64 KiB costs CPU, 1 MiB holds more
 * garbage buffers between collections (peak RSS +88 MB against +55 MB) and was no faster.
 */
export const LOCAL_READ_BYTES = 256 * 1024;

export type GrowingState = { availableBytes: number; complete: boolean };

export class GrowingFile {
  private bytes = 0;
  private complete = false;
  private failure: { err: unknown } | undefined;
  private waiters: Array<() => void> = [];

  /** The first `bytes` of the file are written (never moves back). */
  reached(bytes: number): void {
    if (bytes <= this.bytes) return;
    this.bytes = bytes;
    this.wake();
  }

  /** The file is whole: `totalBytes` long. */
  finish(totalBytes: number): void {
    this.bytes = Math.max(this.bytes, totalBytes);
    this.complete = true;
    this.wake();
  }

  /** The file will never be whole; whoever waits gets `err`. */
  fail(err: unknown): void {
    this.failure ??= { err };
    this.wake();
  }

  get availableBytes(): number {
    return this.bytes;
  }

  /** Whether `err` is the writer's own fault (not a transfer's). */
  isWritersFault(err: unknown): boolean {
    return this.failure !== undefined && this.failure.err === err;
  }

  /**
   * Resolves once at least `bytes` are written or the file is complete; throws the writer's
   * fault, or `signal`'s reason once it is aborted.
   */
  async reach(bytes: number, signal?: AbortSignal): Promise<GrowingState> {
    for (;;) {
      if (this.failure) throw this.failure.err;
      signal?.throwIfAborted();
      if (this.complete || this.bytes >= bytes) return { availableBytes: this.bytes, complete: this.complete };
      await new Promise<void>((wake) => {
        const onAbort = () => wake();
        this.waiters.push(() => {
          signal?.removeEventListener("abort", onAbort);
          wake();
        });
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * The bytes of an open file in order as they land, ending when it is complete (or failing with
 * the writer's fault); the handle is closed at the end. Opened by the caller before the writer
 * can finish, a rename or removal of the file meanwhile is harmless.
 */
export function followFile(file: FileHandle, growing: GrowingFile): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      let position = 0;
      for (;;) {
        const state = await growing.reach(position + LOCAL_READ_BYTES);
        if (position >= state.availableBytes) {
          if (state.complete) return;
          continue;
        }
        const want = Math.min(LOCAL_READ_BYTES, state.availableBytes - position);
        const buffer = Buffer.allocUnsafe(want);
        const { bytesRead } = await file.read(buffer, 0, want, position);
        if (bytesRead === 0)
          throw new Error(`the file is shorter than the ${state.availableBytes} bytes written to it`);
        position += bytesRead;
        yield bytesRead === want ? buffer : buffer.subarray(0, bytesRead);
      }
    } finally {
      await file.close();
    }
  }
  return Readable.from(chunks(), { objectMode: false, highWaterMark: 1 });
}

/**
 * Writes a stream into `path` (created or replaced, mode 0600), telling `onBytes` and `growing`
 * as each chunk lands; the caller says when the file is whole. Resolves to the bytes written.
 */
export async function writeStreamToFile(
  source: Readable,
  path: string,
  options: { onBytes?: (bytes: number) => void; growing?: GrowingFile } = {},
): Promise<number> {
  let bytes = 0;
  const file = await open(path, "w", 0o600);
  try {
    for await (const chunk of source) {
      const b = chunk as Buffer;
      await file.write(b, 0, b.length, bytes);
      bytes += b.length;
      options.onBytes?.(b.length);
      options.growing?.reached(bytes);
    }
  } finally {
    await file.close();
  }
  return bytes;
}

/** writeStreamToFile, then `growing` is told the file is whole, or why it never will be. */
export async function spoolInto(source: Readable, path: string, growing: GrowingFile): Promise<number> {
  let bytes: number;
  try {
    bytes = await writeStreamToFile(source, path, { growing });
  } catch (err) {
    growing.fail(err);
    throw err;
  }
  growing.finish(bytes);
  return bytes;
}
