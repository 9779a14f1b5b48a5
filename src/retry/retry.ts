// Running an operation again after it fails: up to a number of tries, with a back-off strategy's
// pause between them, stopping at once on an error the caller says is not worth retrying. After
// the last try (or a non-retryable error) the error goes up exactly as it was thrown.

import { realSleep, type BackoffStrategy, type Random, type Sleep } from "./backoff.ts";

/** What onRetry hears before each pause. */
export type RetryNotice = {
  /** What the try that just failed threw. */
  error: unknown;
  /** The try that comes after the pause (2, 3, …). */
  nextTry: number;
  /** Tries in all, the first included. */
  tries: number;
  /** The pause before it. */
  delayMs: number;
};

export type RetryOptions = {
  strategy: BackoffStrategy;
  /** Tries in all, the first included (1: no retry). */
  tries: number;
  /** Whether an error is worth another try (default: every error is). */
  isRetryable?: (error: unknown) => boolean;
  /** Told before each pause, e.g. to log what failed and when the next try comes. */
  onRetry?: (notice: RetryNotice) => void;
  /** Default: the real sleep. */
  sleep?: Sleep;
  /** Handed to the strategy (default Math.random). */
  random?: Random;
};

/** Run `fn` (given its try number, 1-based) until it returns, throws a non-retryable error, or has had `tries`
 * tries. */
export async function retry<T>(fn: (tryNumber: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const sleep = options.sleep ?? realSleep;
  for (let tryNumber = 1; ; tryNumber++) {
    try {
      return await fn(tryNumber);
    } catch (error) {
      if (tryNumber >= options.tries || !(options.isRetryable?.(error) ?? true)) throw error;
      const delayMs = options.strategy(tryNumber, options.random);
      options.onRetry?.({ error, nextTry: tryNumber + 1, tries: options.tries, delayMs });
      await sleep(delayMs);
    }
  }
}
