// Step "time-limit": the job is stopped when its time limit (max_duration, what is left of
// experimentLifetime, the runner's --max-duration; the smallest) is reached. Timers hold at most
// about 24.8 days: a longer limit is reached in several steps.

import { formatDuration } from "../../config/units.ts";
import { MAX_TIMER_MS } from "../attempt-clock.ts";
import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

export const timeLimitStep: AttemptStep = {
  name: "time-limit",
  async prepare(s) {
    const limit = s.limit;
    if (!limit) return;
    const log = need(s, "log");
    const deadlineMs = s.clock.nowMs() + limit.ms;
    let cancel = () => {};
    const arm = () => {
      cancel = s.clock.after(Math.min(MAX_TIMER_MS, Math.max(0, deadlineMs - s.clock.nowMs())), () => {
        if (s.clock.nowMs() < deadlineMs) return arm();
        log.note(`time limit of ${formatDuration(limit.ms)} (${limit.because}) reached: stopping the experiment`);
        s.job.stop(`time limit reached (${limit.because})`);
      });
    };
    arm();
    s.disarm.set("time-limit", () => cancel());
  },
  async cleanup(s) {
    s.disarm.get("time-limit")?.();
  },
};
