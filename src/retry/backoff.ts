// Back-off: how long to pause before the next try of something that failed. One place for every
// waiting retry in the runner (artifact uploads, broker and Kubernetes reconnects, record updates,
// S3 reads and checks). A strategy is a plain function from the retry number to a pause in
// milliseconds; its random source is a parameter and sleeping is a separate injectable function,
// so tests check exact pauses and never wait in real time. Imports nothing from the rest of src/.

/** A number in [0, 1), as Math.random gives; tests pass a seeded or constant one. */
export type Random = () => number;

/** Waits `ms` milliseconds; tests pass one that records the pause and returns at once. */
export type Sleep = (ms: number) => Promise<void>;

/**
 * The pause in whole milliseconds before retry `retry` (1 = the first retry, i.e. before the second
 * try). `random` is used only by jittered strategies.
 */
export type BackoffStrategy = (retry: number, random?: Random) => number;

/**
 * How a pause is spread so that runners hit by one outage do not retry in step:
 * "none": exactly the computed pause; "full": anywhere in [0, pause]; "equal": in its upper half,
 * [pause/2, pause]; { spread: f }: within ±f of it, [pause·(1−f), pause·(1+f)].
 */
export type Jitter = "none" | "full" | "equal" | { spread: number };

/** Longest pause a timer can wait for (setTimeout fires at once beyond 2^31−1 ms). */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/** The real sleep. */
export const realSleep: Sleep = (ms) => Bun.sleep(ms);

/** `ms` spread by `jitter`, rounded to whole milliseconds, never negative nor beyond MAX_DELAY_MS. */
export function jittered(ms: number, jitter: Jitter, random: Random = Math.random): number {
  let out: number;
  if (jitter === "none") out = ms;
  else if (jitter === "full") out = ms * random();
  else if (jitter === "equal") out = ms / 2 + (ms / 2) * random();
  else out = ms * (1 - jitter.spread + 2 * jitter.spread * random());
  return Math.min(MAX_DELAY_MS, Math.max(0, Math.round(out)));
}

export type ExponentialOptions = {
  /** Pause before the first retry (before jitter). */
  initialMs: number;
  /** Each later pause is this many times the one before (default 2). */
  factor?: number;
  /** Cap on the pause before jitter (default: none but MAX_DELAY_MS). */
  maxMs?: number;
  /** Default "none". */
  jitter?: Jitter;
};

/** initialMs·factor^(retry−1), capped at maxMs, then jittered. Retry numbers below 1 count as 1. */
export function exponentialBackoff(options: ExponentialOptions): BackoffStrategy {
  const factor = options.factor ?? 2;
  const capMs = Math.min(options.maxMs ?? MAX_DELAY_MS, MAX_DELAY_MS);
  const jitter = options.jitter ?? "none";
  return (retry, random = Math.random) => {
    const exponent = Math.max(retry - 1, 0);
    // A long outage overflows the power to Infinity, which the cap takes; 0·Infinity (NaN) is 0.
    const poweredMs = options.initialMs * factor ** exponent;
    return jittered(Math.min(capMs, Number.isNaN(poweredMs) ? 0 : poweredMs), jitter, random);
  };
}

/** The same pause before every retry, jittered. */
export function fixedBackoff(delayMs: number, jitter: Jitter = "none"): BackoffStrategy {
  return (_retry, random = Math.random) => jittered(delayMs, jitter, random);
}
