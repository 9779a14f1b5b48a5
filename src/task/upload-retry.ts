// Retrying one artifact upload when storage fails transiently (a connection reset mid-body, a
// 503, a timeout that outlasted the storage client's own per-request retries): the artifact is
// packed and sent again after a growing, jittered pause. Permanent faults (refused credentials,
// a missing bucket, a newer attempt's claim) are never retried; after the last try the fault goes
// up as it was, and the attempt requeues the request.

import { asFault, errorMessage } from "../errors.ts";
import { exponentialBackoff, type Random, type Sleep } from "../retry/backoff.ts";
import { retry } from "../retry/retry.ts";

/** Tries of one artifact upload, the first included. */
export const UPLOAD_TRIES = 4;
/** Pause before the second try; each later pause is 4 times longer, up to 8 s. */
export const UPLOAD_BACKOFF_FIRST_MS = 500;
/** Pauses are spread ±25% so that runners hit by one outage do not retry in step. */
export const UPLOAD_BACKOFF = exponentialBackoff({
  initialMs: UPLOAD_BACKOFF_FIRST_MS,
  factor: 4,
  maxMs: 8_000,
  jitter: { spread: 0.25 },
});

/** The pause before try `next` (2, 3, …). */
export function uploadBackoffMs(next: number, random: Random = Math.random): number {
  return UPLOAD_BACKOFF(next - 1, random);
}

/** For tests: the pause and its random source. */
export type UploadRetryTiming = { sleep?: Sleep; random?: Random };

/**
 * Run `send` until it succeeds, a permanent fault, or UPLOAD_TRIES tries; `onRetry` hears about
 * each retry (what failed, which try comes next, after how long).
 */
export function withUploadRetries<T>(
  what: string,
  send: () => Promise<T>,
  onRetry?: (message: string) => void,
  timing: UploadRetryTiming = {},
): Promise<T> {
  return retry(send, {
    strategy: UPLOAD_BACKOFF,
    tries: UPLOAD_TRIES,
    isRetryable: (err) => asFault(err).retryable,
    onRetry: ({ error, nextTry, tries, delayMs }) =>
      onRetry?.(
        `${what} failed (${errorMessage(error)}); try ${nextTry} of ${tries} in ${(delayMs / 1000).toFixed(1)}s`,
      ),
    sleep: timing.sleep,
    random: timing.random,
  });
}
