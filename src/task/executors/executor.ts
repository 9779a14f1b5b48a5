// How a job is started: an executor turns the prepared attempt into the launchers' argv and
// environment. One file per executor (venv, container); the environment step picks one.

import type { AttemptState, JobLaunch } from "../attempt-state.ts";

export interface Executor {
  readonly name: string;
  /** Whether this executor runs the attempt (the first that does, in the environment step's order, is used). */
  handles(state: AttemptState): boolean;
  /** Builds what the job needs (a Python environment, an env file) and says how to start it; what it
   * holds until the attempt ends (a pinned environment) it leaves in state.releaseEnvironment. */
  prepare(state: AttemptState): Promise<JobLaunch>;
}

/** How the run step describes a time limit in the log line that names the command. */
export function limitNote(state: AttemptState, formatDuration: (ms: number) => string): string {
  const limit = state.limit;
  return limit ? ` (time limit ${formatDuration(limit.ms)} from ${limit.because})` : "";
}
