// Keeps a pulled message ours: pushes its ack deadline out on a timer at half the deadline.

import { MAX_ACK_DEADLINE_S, MIN_ACK_DEADLINE_S } from "./conventions.ts";

export type DeadlineSetter = (deadlineS: number) => Promise<void>;

export class Lease {
  private timer?: ReturnType<typeof setInterval>;
  readonly deadlineS: number;

  constructor(
    deadlineS: number,
    private readonly setDeadline: DeadlineSetter,
    private readonly onFault: (err: unknown) => void,
  ) {
    this.deadlineS = Math.min(MAX_ACK_DEADLINE_S, Math.max(MIN_ACK_DEADLINE_S, Math.round(deadlineS)));
  }

  /** Set the deadline now, then again every half deadline until stop(). */
  async start(): Promise<void> {
    this.timer = setInterval(() => void this.renewQuietly(), (this.deadlineS * 1000) / 2);
    this.timer.unref?.();
    await this.renewQuietly();
  }

  renew(): Promise<void> {
    return this.setDeadline(this.deadlineS);
  }

  private renewQuietly(): Promise<void> {
    return this.renew().catch((err) => this.onFault(err));
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
