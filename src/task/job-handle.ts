// The running job as the steps see it: any step may ask it to stop (time limit, user's "stopped",
// shutdown, a newer attempt), also before it was started; the run step attaches the process.

import type { ExitInfo } from "../exec/process-tree.ts";

/** What the handle needs of a process (JobProcess). */
export type Stoppable = { stop(reason: string, graceMs?: number): Promise<ExitInfo> };

export class JobHandle {
  private job?: Stoppable;
  private pending?: { reason: string; graceMs?: number };

  /** Why the job was first asked to stop, if it was. */
  get stopReason(): string | undefined {
    return this.pending?.reason;
  }

  /** Stops the job (SIGTERM, then SIGKILL after graceMs); before it starts, it is stopped as it starts. */
  stop(reason: string, graceMs?: number): void {
    this.pending ??= { reason, graceMs };
    if (this.job) void this.job.stop(reason, graceMs);
  }

  /** The job has started: a stop asked for earlier reaches it now. */
  attach(job: Stoppable): void {
    this.job = job;
    if (this.pending) void job.stop(this.pending.reason, this.pending.graceMs);
  }
}
