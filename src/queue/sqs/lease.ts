// Keeps one received SQS message invisible while it is held: renews its visibility every half lease,
// sooner after a failed renewal, and stops before SQS's 12-hour ceiling (then warns).

import { errorMessage } from "../../errors.ts";
import { CEILING_MARGIN_MS, SQS_VISIBILITY_CEILING_MS } from "./conventions.ts";

export type LeaseOptions = {
  leaseMs: number;
  /** When the message was received (the 12 h ceiling counts from here). */
  receivedAtMs: number;
  /** Set the message's visibility to this many seconds from now. */
  renew(seconds: number): Promise<void>;
  /** Told once: renewals stopped and the message will become visible again. */
  onCeiling(visibleAgainAtMs: number): void;
  onRenewFailed(message: string): void;
  /** When renewals stop, counted from receivedAtMs (default: 12 h minus a 5 min margin). */
  ceilingMs?: number;
  now?: () => number;
};

/** Retry a failed renewal after this share of the lease. */
const RETRY_FRACTION = 1 / 6;
const MIN_RETRY_MS = 200;

export class VisibilityLease {
  private timer?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private renewing?: Promise<void>;
  private readonly now: () => number;
  private readonly ceilingMs: number;

  constructor(private readonly options: LeaseOptions) {
    this.now = options.now ?? Date.now;
    this.ceilingMs = options.ceilingMs ?? SQS_VISIBILITY_CEILING_MS - CEILING_MARGIN_MS;
    this.schedule(options.leaseMs / 2);
  }

  /** Renew now (Delivery.extendLease). */
  async renewNow(): Promise<void> {
    if (this.stopped) return;
    await this.renewOnce();
  }

  /** Stop renewing (settled, or the runner is closing). Waits for a renewal in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.renewing?.catch(() => undefined);
  }

  private schedule(delayMs: number) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), Math.max(0, delayMs));
    this.timer.unref?.();
  }

  private async tick() {
    if (this.stopped) return;
    try {
      await this.renewOnce();
      this.schedule(this.options.leaseMs / 2);
    } catch (err) {
      this.options.onRenewFailed(errorMessage(err));
      this.schedule(Math.max(MIN_RETRY_MS, this.options.leaseMs * RETRY_FRACTION));
    }
  }

  private async renewOnce(): Promise<void> {
    const heldMs = this.now() - this.options.receivedAtMs;
    const leftMs = this.ceilingMs - heldMs;
    const seconds = Math.floor(Math.min(this.options.leaseMs, leftMs) / 1000);
    if (seconds < 1) {
      this.stopped = true;
      clearTimeout(this.timer);
      this.options.onCeiling(this.options.receivedAtMs + this.ceilingMs);
      return;
    }
    const p = this.options.renew(seconds);
    this.renewing = p;
    try {
      await p;
    } finally {
      if (this.renewing === p) this.renewing = undefined;
    }
    if (seconds * 1000 < this.options.leaseMs) {
      // This was the last renewal SQS allows.
      this.stopped = true;
      clearTimeout(this.timer);
      this.options.onCeiling(this.now() + seconds * 1000);
    }
  }
}
