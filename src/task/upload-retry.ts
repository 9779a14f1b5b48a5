// Retrying one artifact upload when storage fails transiently (a connection reset mid-body, a
// 503, a timeout that outlasted the storage client's own per-request retries): the artifact is
// packed and sent again after a growing, jittered pause. Permanent faults (refused credentials,
// a missing bucket, a newer attempt's claim) are never retried; after the last try the fault goes
// up as it was, and the attempt requeues the request.

import { asFault, errorMessage } from "../errors.ts";

/** Tries of one artifact upload, the first included. */
export const UPLOAD_TRIES = 4;
/** Pause before the second try; each later pause is UPLOAD_BACKOFF_FACTOR times longer. */
export const UPLOAD_BACKOFF_FIRST_MS = 500;
const UPLOAD_BACKOFF_FACTOR = 4;
const UPLOAD_BACKOFF_MAX_MS = 8_000;
/** Pauses are spread ±this fraction so that runners hit by one outage do not retry in step. */
const UPLOAD_BACKOFF_JITTER = 0.25;

/** The pause before try `next` (2, 3, …). */
export function uploadBackoffMs(next: number, random: () => number = Math.random): number {
  const base = Math.min(UPLOAD_BACKOFF_MAX_MS, UPLOAD_BACKOFF_FIRST_MS * UPLOAD_BACKOFF_FACTOR ** (next - 2));
  return Math.round(base * (1 - UPLOAD_BACKOFF_JITTER + 2 * UPLOAD_BACKOFF_JITTER * random()));
}

/**
 * Run `send` until it succeeds, a permanent fault, or UPLOAD_TRIES tries; `onRetry` hears about
 * each retry (what failed, which try comes next, after how long).
 */
export async function withUploadRetries<T>(what: string, send: () => Promise<T>, onRetry?: (message: string) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (!asFault(err).retryable || attempt >= UPLOAD_TRIES) throw err;
      const waitMs = uploadBackoffMs(attempt + 1);
      onRetry?.(`${what} failed (${errorMessage(err)}); try ${attempt + 1} of ${UPLOAD_TRIES} in ${(waitMs / 1000).toFixed(1)}s`);
      await Bun.sleep(waitMs);
    }
  }
}
