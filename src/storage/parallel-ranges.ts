// A large object read as parallel ranged GETs: several parts in flight over connections of their
// own, handed on in order from a bounded window (parts × part size of memory at most). A part that
// fails is fetched again alone; the caller pins the object's version (ETag, generation), so a
// change in the middle fails the read instead of mixing two versions.

import { Readable } from "node:stream";
import { asFault, RetryableError } from "../errors.ts";
import { type ByteBody, dropBody } from "./byte-body.ts";
import { type BackoffStrategy, exponentialBackoff, realSleep, type Sleep } from "../retry/backoff.ts";

/** A range's body: a Node stream or a web stream. */
export type RangeBody = ByteBody;

export type TransferSettings = {
  /** Parts of one object in flight at once (--transfer-concurrency). */
  concurrency: number;
  /** Bytes per ranged GET (--transfer-part-size). */
  partBytes: number;
};

/** Measured with bench/transfer.ts; see BENCHMARKS.md. */
export const DEFAULT_TRANSFER: TransferSettings = { concurrency: 8, partBytes: 5 * 1024 * 1024 };

export type ParallelRangeOptions = TransferSettings & {
  totalBytes: number;
  /** The bytes [startByte, endByte] (inclusive) of the pinned version; `signal` aborts the request. */
  fetchRange(startByte: number, endByte: number, signal: AbortSignal): Promise<RangeBody>;
  describe: string;
  /** Tries of one part, the first included. */
  partTries?: number;
  backoff?: BackoffStrategy;
  sleep?: Sleep;
  /** Hears about every chunk received (metrics, memory accounting). */
  onBytes?: (bytes: number) => void;
};

/** The object is no longer the version the read began with: no part is tried again. */
export class ObjectChangedError extends RetryableError {}

const DEFAULT_PART_TRIES = 5;
const DEFAULT_BACKOFF = exponentialBackoff({ initialMs: 250, maxMs: 8_000 });

/** Whether an object this large is worth reading in parts (at least two of them). */
export function worthParallel(totalBytes: number | undefined, transfer: TransferSettings): totalBytes is number {
  return totalBytes !== undefined && transfer.concurrency > 1 && totalBytes >= 2 * transfer.partBytes;
}

async function readPart(body: RangeBody, expectBytes: number, onBytes?: (n: number) => void): Promise<Buffer> {
  const part = Buffer.allocUnsafe(expectBytes);
  let filled = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    if (filled + chunk.byteLength > expectBytes) {
      throw new RetryableError(`a part brought more than the ${expectBytes} bytes asked for`);
    }
    part.set(chunk, filled);
    filled += chunk.byteLength;
    onBytes?.(chunk.byteLength);
  }
  if (filled !== expectBytes) throw new RetryableError(`a part ended after ${filled} of ${expectBytes} bytes`);
  return part;
}

async function fetchPart(o: ParallelRangeOptions, start: number, end: number, stop: AbortSignal): Promise<Buffer> {
  const tries = o.partTries ?? DEFAULT_PART_TRIES;
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  const sleep = o.sleep ?? realSleep;
  for (let attempt = 1; ; attempt++) {
    if (stop.aborted) throw new RetryableError(`${o.describe}: read abandoned`);
    let body: RangeBody | undefined;
    try {
      body = await o.fetchRange(start, end, stop);
      return await readPart(body, end - start + 1, o.onBytes);
    } catch (err) {
      if (body) dropBody(body);
      const fault = asFault(err);
      if (fault instanceof ObjectChangedError) throw fault;
      if (!fault.retryable || attempt >= tries) {
        if (!fault.retryable) throw fault;
        throw new RetryableError(
          `${o.describe}: bytes ${start}-${end} failed ${tries} times: ${fault.message}`,
          {},
          { cause: err },
        );
      }
      await sleep(backoff(attempt));
    }
  }
}

async function* parts(o: ParallelRangeOptions): AsyncGenerator<Buffer> {
  const stop = new AbortController();
  const window: Array<Promise<Buffer>> = [];
  let next = 0;
  const launch = () => {
    const start = next;
    const end = Math.min(o.totalBytes, start + o.partBytes) - 1;
    next = end + 1;
    const part = fetchPart(o, start, end, stop.signal);
    part.catch(() => undefined); // awaited in order below; an early failure is not unhandled
    window.push(part);
  };
  try {
    while (next < o.totalBytes && window.length < Math.max(1, o.concurrency)) launch();
    while (window.length) {
      const part = await window.shift()!;
      if (next < o.totalBytes) launch();
      yield part;
    }
  } finally {
    stop.abort(); // the reader stopped or a part failed: no new tries of the parts still in flight
  }
}

/** The object's bytes in order, read as parallel ranges. */
export function parallelRangeStream(o: ParallelRangeOptions): Readable {
  return Readable.from(parts(o), { objectMode: false, highWaterMark: 1 });
}
