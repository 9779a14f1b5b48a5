// The broker reconnect back-off: initialMs doubling up to maxMs, each pause drawn from the upper
// half of its value ("equal" jitter) so that runners cut off together do not all come back in the
// same instant. The computation is the shared one in src/retry/backoff.ts.

import { exponentialBackoff, type Random } from "../../retry/backoff.ts";

export type BackoffOptions = { initialMs: number; maxMs: number };

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

/** Delay before retry number `failures` (1 = first retry): initialMs·2^(failures-1), capped at maxMs, equal jitter. */
export function backoffDelayMs(
  failures: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: Random = Math.random,
): number {
  return exponentialBackoff({ ...options, jitter: "equal" })(failures, random);
}
