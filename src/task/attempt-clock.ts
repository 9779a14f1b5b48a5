// The attempt's clock: the current time and timers, injectable so that in-process tests can move
// time by hand instead of waiting for it.

/** Cancels a timer; calling it twice is harmless. */
export type Cancel = () => void;

export interface AttemptClock {
  nowMs(): number;
  /** Calls `fn` once after `ms`. */
  after(ms: number, fn: () => void): Cancel;
  /** Calls `fn` every `ms`. */
  every(ms: number, fn: () => void): Cancel;
}

/** The longest delay a JavaScript timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The process's own clock and timers. */
export const realClock: AttemptClock = {
  nowMs: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
    return () => clearTimeout(t);
  },
  every(ms, fn) {
    const t = setInterval(fn, Math.min(MAX_TIMER_MS, Math.max(1, ms)));
    return () => clearInterval(t);
  },
};
