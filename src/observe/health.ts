// Liveness and readiness for /healthz and /readyz: healthy while the poll loop keeps completing
// passes (a hung queue discovery turns it red), ready once serving and not drained.

import type { RunnerEvents, RunnerState } from "./events.ts";

/** The longest the runner's loop waits between passes when there is nothing to do (runner.ts). */
export const POLL_WAIT_MS = 5_000;
/** Room for the pass itself: discovery and one look at each queue (broker round trips, timeouts). */
export const POLL_SLACK_MS = 5_000;
/** One poll period: the wait plus the pass. */
export const POLL_PERIOD_MS = POLL_WAIT_MS + POLL_SLACK_MS;
/** No completed pass for two poll periods: the loop is stuck. */
export const UNHEALTHY_AFTER_MS = 2 * POLL_PERIOD_MS;

export type HealthReport = {
  healthy: boolean;
  state: RunnerState;
  /** Milliseconds since the loop last completed a pass (or since start, before the first). */
  sinceLastPassMs: number;
  unhealthyAfterMs: number;
  passes: number;
  reason: string;
};

export type ReadyReport = { ready: boolean; state: RunnerState; reason: string };

export type HealthOptions = {
  events: RunnerEvents;
  /** The runner's state now (SIGTERM's drain is not an event). */
  state: () => RunnerState;
  unhealthyAfterMs?: number;
  /** Clock, in milliseconds; Date.now by default. */
  nowMs?: () => number;
};

export class LoopHealth {
  private lastPassMs: number;
  private passes = 0;
  private loopEnded = false;
  private readonly nowMs: () => number;
  private readonly unhealthyAfterMs: number;
  private readonly off: () => void;

  constructor(private readonly options: HealthOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    this.unhealthyAfterMs = options.unhealthyAfterMs ?? UNHEALTHY_AFTER_MS;
    this.lastPassMs = this.nowMs();
    const offs = [
      options.events.on("poll", () => {
        this.lastPassMs = this.nowMs();
        this.passes++;
      }),
      options.events.on("loop.ended", () => (this.loopEnded = true)),
    ];
    this.off = () => {
      for (const off of offs) off();
    };
  }

  /**
   * Healthy while a pass completed within unhealthyAfterMs. A runner that is terminating, or whose
   * loop ended (--limit-tasks), has left its loop on purpose and exits once its experiments end, so
   * it stays healthy meanwhile.
   */
  health(): HealthReport {
    const state = this.options.state();
    const sinceLastPassMs = Math.max(0, this.nowMs() - this.lastPassMs);
    const base = { state, sinceLastPassMs, unhealthyAfterMs: this.unhealthyAfterMs, passes: this.passes };
    if (state === "terminating")
      return { ...base, healthy: true, reason: "draining to exit: the poll loop has ended on purpose" };
    if (this.loopEnded)
      return {
        ...base,
        healthy: true,
        reason: "finishing: the poll loop has ended on purpose; the runner exits once its experiments end",
      };
    if (sinceLastPassMs > this.unhealthyAfterMs) {
      const what =
        this.passes === 0 ? "the poll loop has not completed its first pass" : "the poll loop has not completed a pass";
      return {
        ...base,
        healthy: false,
        reason:
          `${what} for ${Math.round(sinceLastPassMs / 1000)} s ` +
          `(limit ${Math.round(this.unhealthyAfterMs / 1000)} s)`,
      };
    }
    return { ...base, healthy: true, reason: "the poll loop is making progress" };
  }

  /** Ready once the first pass completed and while the runner takes work. */
  ready(): ReadyReport {
    const state = this.options.state();
    if (state !== "running")
      return {
        ready: false,
        state,
        reason: state === "suspended" ? "suspended: taking no new work" : "draining to exit",
      };
    if (this.loopEnded) return { ready: false, state, reason: "finishing: taking no more work" };
    if (this.passes === 0)
      return { ready: false, state, reason: "starting: the poll loop has not completed its first pass" };
    return { ready: true, state, reason: "taking work" };
  }

  close(): void {
    this.off();
  }
}
