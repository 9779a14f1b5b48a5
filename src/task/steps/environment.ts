// Step "environment": the executor that runs this request (its container image, else a Python
// environment) prepares the job and says how to start it; cleanup gives back what it held.

import type { AttemptStep } from "../attempt-step.ts";
import { containerExecutor } from "../executors/container.ts";
import type { Executor } from "../executors/executor.ts";
import { venvExecutor } from "../executors/venv.ts";

/** In order of preference: the first that handles the attempt runs it. */
export const EXECUTORS: readonly Executor[] = [containerExecutor, venvExecutor];

export function environmentStep(executors: readonly Executor[] = EXECUTORS): AttemptStep {
  return {
    name: "environment",
    async prepare(s) {
      const executor = executors.find((e) => e.handles(s));
      if (!executor) throw new Error("no executor handles this attempt");
      s.launch = await executor.prepare(s);
    },
    async cleanup(s) {
      const release = s.releaseEnvironment;
      s.releaseEnvironment = undefined;
      release?.();
    },
  };
}
