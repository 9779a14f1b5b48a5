// Step "claim": this attempt becomes the experiment's current one in storage, so an older attempt
// still running elsewhere (its runner lost its lease) stops at its next upload instead of
// overwriting this one's results. The claim is an upload: transient faults are retried like one.

import { asFault } from "../../errors.ts";
import type { AttemptStep } from "../attempt-step.ts";
import { withUploadRetries } from "../upload-retry.ts";

export const claimStep: AttemptStep = {
  name: "claim",
  async prepare(s) {
    const fence = s.fence;
    if (!fence) return;
    await withUploadRetries(
      "claiming the experiment in storage",
      () => fence.claim(),
      (m) => s.ctx.log.warn(m, { experiment: s.key }),
    ).catch((err) => {
      throw asFault(err).with({ phase: "claim the experiment in storage" });
    });
  },
};
