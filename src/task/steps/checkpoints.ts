// Step "checkpoints": while the job runs, its mutable artifacts go to storage every
// config.saveWorkspaceFrequency (all) and every artifact's own save frequency (that one). A failed
// checkpoint is retried at the next tick; a newer attempt's claim stops the job.

import { errorMessage } from "../../errors.ts";
import { SupersededError } from "../attempt-fence.ts";
import { MAX_TIMER_MS } from "../attempt-clock.ts";
import { type AttemptState, need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

/** A checkpoint interval as a timer can hold it: at least 1 s, at most MAX_TIMER_MS. */
export const timerMs = (ms: number) => Math.min(MAX_TIMER_MS, Math.max(1000, ms));

/** Uploads what changed (all mutable artifacts, or those labelled); never throws. */
export async function checkpoint(s: AttemptState, labels?: string[]): Promise<void> {
  const log = need(s, "log");
  await log.flush();
  try {
    const done = await need(s, "uploader").upload(labels);
    if (done.length) s.ctx.log.debug(`checkpointed ${done.join(", ")}`, { experiment: s.key });
    if (done.length) await s.record?.checkpoint();
  } catch (err) {
    if (err instanceof SupersededError) {
      log.note(err.message);
      s.job.stop(err.message);
      return;
    }
    s.ctx.log.warn(`checkpoint of ${s.key} failed (will retry): ${errorMessage(err)}`);
  }
}

export const checkpointsStep: AttemptStep = {
  name: "checkpoints",
  async prepare(s) {
    const cancels: Array<() => void> = [];
    const every = s.request.config.saveWorkspaceFrequencyMs;
    if (every && every > 0) cancels.push(s.clock.every(timerMs(every), () => void checkpoint(s)));
    for (const a of Object.values(s.request.experiment.artifacts)) {
      if (a.mutable && a.saveFrequencyMs)
        cancels.push(s.clock.every(timerMs(a.saveFrequencyMs), () => void checkpoint(s, [a.label])));
    }
    s.disarm.set("checkpoints", () => {
      for (const c of cancels) c();
    });
  },
  async cleanup(s) {
    s.disarm.get("checkpoints")?.();
  },
};
