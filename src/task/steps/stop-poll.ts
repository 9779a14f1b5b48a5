// Step "stop-poll": a user's "stopped" in the experiment database stops the job (the python worker
// polled the same record). One read at a time; a read that fails is tried at the next tick.

import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

/** How often the record is read when the runner does not say (--status-poll). */
export const DEFAULT_STATUS_POLL_MS = 5000;

export const stopPollStep: AttemptStep = {
  name: "stop-poll",
  async prepare(s) {
    const record = s.record;
    if (!record) return;
    const log = need(s, "log");
    let polling = false;
    const cancel = s.clock.every(s.ctx.statusPollMs ?? DEFAULT_STATUS_POLL_MS, async () => {
      if (polling) return;
      polling = true;
      try {
        if (await record.stopRequested()) {
          log.note(`the experiment record says "stopped": stopping the experiment`);
          s.job.stop("stopped by the user (experiment database)");
        }
      } catch {
        // the record's own reads warn; the next tick asks again
      } finally {
        polling = false;
      }
    });
    s.disarm.set("stop-poll", cancel);
  },
  async cleanup(s) {
    s.disarm.get("stop-poll")?.();
  },
};
