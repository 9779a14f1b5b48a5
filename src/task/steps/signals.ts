// Step "signals": the runner's drain (the job gets its grace, then is stopped, checkpointed and
// requeued), a forced shutdown (stopped at once) and a withdrawn request (stopped) reach the job.

import { formatDuration } from "../../config/units.ts";
import { errorMessage } from "../../errors.ts";
import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

/** How long a forced shutdown lets the job's processes go before SIGKILL. */
const FORCED_STOP_GRACE_MS = 2000;

export const signalsStep: AttemptStep = {
  name: "signals",
  async prepare(s) {
    const { control, delivery } = s;
    const log = need(s, "log");
    const revoked = delivery.revoked;
    let cancelGrace = () => {};
    const onShutdown = () => {
      const grace = formatDuration(control.shutdownGraceMs);
      log.note(`runner is shutting down: the experiment has ${grace} to finish before it is checkpointed and requeued`);
      cancelGrace = s.clock.after(control.shutdownGraceMs, () => s.job.stop("shutdown"));
    };
    const onForce = () => s.job.stop("shutdown", FORCED_STOP_GRACE_MS);
    const onRevoked = () => {
      const why = errorMessage(revoked?.reason ?? "request withdrawn");
      log.note(`${why}: stopping the experiment`);
      s.job.stop(`request withdrawn (${why})`);
    };
    const listen = (signal: AbortSignal | undefined, fn: () => void) => {
      if (signal?.aborted) fn();
      else signal?.addEventListener("abort", fn, { once: true });
    };
    listen(revoked, onRevoked);
    listen(control.shutdown, onShutdown);
    listen(control.force, onForce);
    s.disarm.set("signals", () => {
      cancelGrace();
      control.shutdown.removeEventListener("abort", onShutdown);
      control.force.removeEventListener("abort", onForce);
      revoked?.removeEventListener("abort", onRevoked);
    });
  },
  async cleanup(s) {
    s.disarm.get("signals")?.();
  },
};
