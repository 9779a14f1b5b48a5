// Step "record": the experiment's status in the studioml database (running → finished). Marking it
// running is not awaited: a slow or unreachable database must not hold up the experiment; cleanup
// waits for it, so the record still goes running → finished in that order.

import type { AttemptStep } from "../attempt-step.ts";
import { experimentRecordFor } from "../../status/experiment-record.ts";

export const recordStep: AttemptStep = {
  name: "record",
  async prepare(s) {
    const { ctx, key } = s;
    s.record = experimentRecordFor(s.request, {
      warn: (m) => ctx.log.warn(m, { experiment: key }),
      env: ctx.runnerEnv,
      googleCertsDir: ctx.googleCertsDir,
      identity: s.access?.identity,
    });
    s.recordStarted = s.record?.running();
  },
  async cleanup(s, ending) {
    const record = s.record;
    if (!record) return;
    s.record = undefined; // idempotent: finished and closed once
    await s.recordStarted;
    // A finished experiment, or one the request made fail for good, is over; a retried one is not.
    if (ending.kind === "finished" || (ending.kind === "fault" && !ending.fault.retryable)) await record.finished();
    await record.close();
  },
};
