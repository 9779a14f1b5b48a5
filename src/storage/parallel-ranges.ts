// A large object read as parallel ranged requests written straight into a file at their offsets:
// several parts in flight over connections of their own, and no reorder window of buffers in
// memory. Where it can, a part's body is written by the runtime itself (Bun.write to a descriptor
// of its own, placed at the part's first byte), so its bytes never enter the JS heap; otherwise
// each chunk is written at its offset as it arrives. A part that breaks is resumed alone from its
// last written byte; the caller pins the object's version (ETag, generation), so a change in the
// middle fails the whole read instead of mixing two versions.

import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { asFault, RetryableError } from "../errors.ts";
import { type BackoffStrategy, exponentialBackoff, realSleep, type Sleep } from "../retry/backoff.ts";
import { type ByteBody, dropBody } from "./byte-body.ts";
import { offsetControl, type OffsetControl } from "./descriptor-offset.ts";
import type { GrowingFile } from "./growing-file.ts";
import { runWorkers } from "./worker-pool.ts";

/** A range's body: a Node stream or a web stream. */
export type RangeBody = ByteBody;

/** A ranged request's answer: its body, and the length its headers announce when they do. */
export type RangeReply = { body: RangeBody; lengthBytes?: number };

export type TransferSettings = {
  /** Parts of one object in flight at once (--transfer-concurrency). */
  concurrency: number;
  /** Bytes per ranged GET and per uploaded part (--transfer-part-size). */
  partBytes: number;
};

const MiB = 1024 * 1024;
/** Measured with bench/transfer.ts on loopback and on a shaped link; see BENCHMARKS.md. */
export const DEFAULT_TRANSFER: TransferSettings = { concurrency: 16, partBytes: 16 * MiB };

export type RangesIntoFileOptions = TransferSettings & {
  totalBytes: number;
  /** An open file, written with positional writes only. */
  fd: number;
  /**
   * The same file's path. With it, a part whose answer announces exactly the asked length is
   * written natively through a descriptor of its own (opened here, checked to be `fd`'s file).
   */
  path?: string;
  /** The bytes [startByte, endByte] (inclusive) of the pinned version; `signal` aborts the request. */
  fetchRange(startByte: number, endByte: number, signal: AbortSignal): Promise<RangeReply>;
  describe: string;
  /** Tries of one part, the first included. */
  partTries?: number;
  backoff?: BackoffStrategy;
  sleep?: Sleep;
  /** Hears about every chunk written (progress, metrics). */
  onBytes?: (bytes: number) => void;
  /** Told how long the written prefix of the file is (a reader may follow it); the caller finishes it. */
  growing?: GrowingFile;
  /** A part that brings no byte for this long (headers included) is broken off and resumed. */
  idleTimeoutMs?: number;
};

/** The object is no longer the version the read began with: no part is tried again. */
export class ObjectChangedError extends RetryableError {}

/** Writing the file failed (disk full, I/O error): no network retry helps. */
class LocalWriteFailure extends Error {}

/** A part's writer went past the part's end (into the next part's bytes): the file is not to be trusted. */
export class RangeOverrunError extends RetryableError {}

/** How often a natively written part's progress (its descriptor's offset) is read. */
const NATIVE_PROGRESS_POLL_MS = 100;

const DEFAULT_PART_TRIES = 5;
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const DEFAULT_BACKOFF = exponentialBackoff({ initialMs: 250, maxMs: 8_000 });

/** Whether an object this large is worth reading in parts (at least two of them). */
export function worthParallel(totalBytes: number | undefined, transfer: TransferSettings): totalBytes is number {
  return totalBytes !== undefined && transfer.concurrency > 1 && totalBytes >= 2 * transfer.partBytes;
}

function writeAt(fd: number, chunk: Uint8Array, position: number): void {
  let done = 0;
  try {
    while (done < chunk.byteLength) {
      done += writeSync(fd, chunk, done, chunk.byteLength - done, position + done);
    }
  } catch (err) {
    throw new LocalWriteFailure((err as Error).message, { cause: err });
  }
}

/** Chunk by chunk through JS: each one written at its offset as it arrives. */
async function writeChunks(
  o: RangesIntoFileOptions,
  body: RangeBody,
  from: number,
  end: number,
  advance: (position: number) => void,
): Promise<void> {
  let position = from;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    if (position + chunk.byteLength > end + 1) {
      throw new RetryableError(`bytes ${from}-${end}: the server sent more than was asked for`);
    }
    writeAt(o.fd, chunk, position);
    position += chunk.byteLength;
    advance(position);
  }
}

/** The file at `path` opened once more for writing, only if it is still `fd`'s file. */
function openSameFile(path: string, fd: number): number {
  const own = fstatSync(fd);
  const part = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  const seen = fstatSync(part);
  if (seen.ino !== own.ino || seen.dev !== own.dev) {
    closeSync(part);
    throw new LocalWriteFailure(`${path} is no longer the file being written`);
  }
  return part;
}

/**
 * The runtime writes the body through a descriptor of its own placed at `from` (no chunk enters
 * the JS heap); its offset, read every NATIVE_PROGRESS_POLL_MS, is the progress.
 */
async function writeNatively(
  seeker: OffsetControl,
  o: RangesIntoFileOptions & { path: string },
  body: ReadableStream<Uint8Array>,
  from: number,
  end: number,
  advance: (position: number) => void,
): Promise<void> {
  let part: number;
  try {
    part = openSameFile(o.path, o.fd);
  } catch (err) {
    throw err instanceof LocalWriteFailure ? err : new LocalWriteFailure((err as Error).message, { cause: err });
  }
  let position = from;
  const poll = () => {
    const at = seeker.tell(part);
    if (at > end + 1) {
      throw new RangeOverrunError(`bytes ${from}-${end}: ${at - end - 1} byte(s) were written past the range`);
    }
    if (at > position) advance((position = at));
  };
  const timer = setInterval(() => {
    try {
      poll();
    } catch {
      // The final poll below reports it.
    }
  }, NATIVE_PROGRESS_POLL_MS);
  try {
    seeker.seek(part, from);
    await Bun.write(Bun.file(part), new Response(body)).catch((err: NodeJS.ErrnoException) => {
      throw err?.syscall === "write" ? new LocalWriteFailure(err.message, { cause: err }) : err;
    });
  } finally {
    clearInterval(timer);
    try {
      poll();
    } finally {
      closeSync(part);
    }
  }
}

/** One part, resumed from its last written byte after a break, until it is whole or out of tries. */
async function fetchPart(
  o: RangesIntoFileOptions,
  start: number,
  end: number,
  stop: AbortSignal,
  written: (position: number) => void,
): Promise<void> {
  const tries = o.partTries ?? DEFAULT_PART_TRIES;
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  const sleep = o.sleep ?? realSleep;
  const idleMs = o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const seeker = o.path === undefined ? undefined : offsetControl();
  let position = start;
  for (let attempt = 1; ; attempt++) {
    if (stop.aborted) throw new RetryableError(`${o.describe}: read abandoned`);
    // This try's own stop: the whole read's, or no byte for idleMs.
    const attemptStop = new AbortController();
    const onStop = () => attemptStop.abort();
    stop.addEventListener("abort", onStop, { once: true });
    let idle = false;
    const fire = () => {
      idle = true;
      attemptStop.abort();
    };
    let timer = setTimeout(fire, idleMs);
    const advance = (at: number) => {
      clearTimeout(timer);
      timer = setTimeout(fire, idleMs);
      o.onBytes?.(at - position);
      position = at;
      written(position);
    };
    let body: RangeBody | undefined;
    try {
      const reply = await o.fetchRange(position, end, attemptStop.signal);
      body = reply.body;
      const whole = reply.lengthBytes === end + 1 - position;
      if (seeker && whole && !(body instanceof Readable)) {
        await writeNatively(seeker, { ...o, path: o.path! }, body, position, end, advance);
      } else {
        await writeChunks(o, body, position, end, advance);
      }
      if (position !== end + 1) {
        throw new RetryableError(`bytes ${start}-${end}: the body ended after ${position - start} bytes`);
      }
      return;
    } catch (err) {
      if (body) dropBody(body);
      if (err instanceof LocalWriteFailure) throw err.cause ?? err;
      const fault = idle
        ? new RetryableError(`bytes ${start}-${end}: no data for ${idleMs / 1000} s`, {}, { cause: err })
        : asFault(err);
      if (fault instanceof ObjectChangedError || fault instanceof RangeOverrunError || !fault.retryable) throw fault;
      if (attempt >= tries) {
        throw new RetryableError(
          `${o.describe}: bytes ${start}-${end} failed ${tries} times: ${fault.message}`,
          {},
          { cause: err },
        );
      }
    } finally {
      clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
    }
    await sleep(backoff(attempt));
  }
}

/**
 * Reads [0, totalBytes) into `fd`: `concurrency` workers take the next part in turn, so a slow
 * connection holds up only its own part. The first part that fails for good stops the others
 * (their requests are aborted) and is what this throws; the file is then partial and the caller
 * must not use it.
 */
export async function readRangesIntoFile(o: RangesIntoFileOptions): Promise<void> {
  const partBytes = Math.max(1, o.partBytes);
  const count = Math.ceil(o.totalBytes / partBytes);
  const endOf = (index: number) => Math.min(o.totalBytes, (index + 1) * partBytes);
  // The next byte to write of each part taken, and the lowest part not yet whole: together they
  // give the written prefix a follower may read.
  const positions: number[] = [];
  let lowest = 0;
  const written = (index: number, position: number) => {
    positions[index] = position;
    if (!o.growing || index !== lowest) return;
    while (lowest < count && positions[lowest] === endOf(lowest)) lowest++;
    o.growing.reached(lowest < count ? (positions[lowest] ?? lowest * partBytes) : o.totalBytes);
  };
  let next = 0;
  await runWorkers(Math.min(o.concurrency, count), async (signal) => {
    if (next >= count) return false;
    const index = next++;
    const start = index * partBytes;
    positions[index] = start;
    await fetchPart(o, start, endOf(index) - 1, signal, (position) => written(index, position));
    return true;
  });
}

/** readRangesIntoFile into `path`, created (or replaced) private to the runner and closed at the end. */
export async function readRangesIntoPath(path: string, o: Omit<RangesIntoFileOptions, "fd">): Promise<void> {
  const file = await open(path, "w", 0o600);
  try {
    await readRangesIntoFile({ ...o, fd: file.fd, path });
  } finally {
    await file.close();
  }
}
