// A download as one stream that checks its length against ContentLength and, when the connection
// breaks, continues from the last byte received (a ranged GET of the same ETag) instead of failing.

import { Readable } from "node:stream";
import { RetryableError } from "../../errors.ts";
import { exponentialBackoff, realSleep, type BackoffStrategy, type Sleep } from "../../retry/backoff.ts";
import { type ByteBody, dropBody } from "../byte-body.ts";

export type ReadStreamOptions = {
  /** The body of the first GET: a Node stream, or a web stream (read directly, without a conversion layer). */
  first: Body;
  /** ContentLength of the object; without it nothing can be checked or resumed. */
  totalBytes?: number;
  /** A body from `offsetBytes` to the end, of the same object version. */
  reopen(offsetBytes: number): Promise<Body>;
  /** For messages: the location. */
  describe: string;
  /** How many times a broken transfer is continued before giving up. */
  maxResumes?: number;
  /** Pause before the n-th resume (1-based); default 250 ms doubling up to 8 s. */
  backoff?: BackoffStrategy;
  /** Default: the real sleep. */
  sleep?: Sleep;
  /**
   * A body that brings nothing for this long is dropped and the transfer resumed (fetch bodies have no socket timeout).
   */
  idleTimeoutMs?: number;
};

export type Body = ByteBody;

const READ_BUFFER_BYTES = 1 << 20;
const DEFAULT_MAX_RESUMES = 5;
const DEFAULT_BACKOFF = exponentialBackoff({ initialMs: 250, maxMs: 8_000 });
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const IDLE_CHECK_MS = 5_000;

async function* bodyChunks(opts: ReadStreamOptions): AsyncGenerator<Buffer> {
  const total = opts.totalBytes;
  const maxResumes = opts.maxResumes ?? DEFAULT_MAX_RESUMES;
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const sleep = opts.sleep ?? realSleep;
  let body = opts.first;
  let received = 0;
  let resumes = 0;
  for (;;) {
    let failure: unknown;
    const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | Uint8Array>;
    let finished = false;
    let lastChunkMs = Date.now();
    const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const current = body;
    const watchdog = setInterval(
      () => {
        if (Date.now() - lastChunkMs > idleMs)
          dropBody(current, new Error(`no data for ${Math.round(idleMs / 1000)} s`));
      },
      Math.min(IDLE_CHECK_MS, idleMs),
    );
    try {
      for (;;) {
        let next: IteratorResult<Buffer | Uint8Array>;
        try {
          next = await it.next();
        } catch (err) {
          failure = err;
          break;
        }
        if (next.done) {
          finished = true;
          break;
        }
        const v = next.value;
        const chunk = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
        lastChunkMs = Date.now();
        received += chunk.length;
        if (total !== undefined && received > total) {
          throw new RetryableError(`${opts.describe}: received more bytes than the object's ${total}`);
        }
        yield chunk;
      }
    } finally {
      clearInterval(watchdog);
      // Early exit (the reader stopped, or an error): release the connection.
      if (!finished) dropBody(body);
    }
    if (total === undefined) {
      if (failure)
        throw new RetryableError(
          `${opts.describe}: transfer broke after ${received} bytes: ${(failure as Error).message}`,
          {},
          { cause: failure },
        );
      return;
    }
    if (received === total) return;
    resumes += 1;
    const why = failure ? (failure as Error).message : "connection closed early";
    if (resumes > maxResumes) {
      throw new RetryableError(
        `${opts.describe}: transfer truncated at ${received} of ${total} bytes (${why}), gave up after ` +
          `${maxResumes} resumes`,
        {},
        { cause: failure },
      );
    }
    await sleep(backoff(resumes));
    body = await opts.reopen(received);
  }
}

export function resumableReadStream(opts: ReadStreamOptions): Readable {
  return Readable.from(bodyChunks(opts), { objectMode: false, highWaterMark: READ_BUFFER_BYTES });
}
