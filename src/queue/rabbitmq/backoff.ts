// Capped exponential back-off with jitter, for reconnecting to the broker.

export type BackoffOptions = { initialMs: number; maxMs: number };

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

/**
 * Delay before retry number `failures` (1 = first retry): initialMs·2^(failures-1), capped at
 * maxMs, then drawn uniformly from its upper half so that runners cut off together do not all
 * come back in the same instant.
 */
export function backoffDelayMs(failures: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const ceilingMs = Math.min(options.maxMs, options.initialMs * 2 ** exponent);
  return Math.round(ceilingMs / 2 + random() * (ceilingMs / 2));
}
