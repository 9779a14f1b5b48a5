// Maintenance by signal: SIGUSR1 drains and suspends (no new work; running experiments finish,
// the runner stays up), SIGUSR2 resumes. SIGTERM's graceful shutdown is separate (run.ts).

import type { RunnerState } from "../observe/events.ts";

export type SuspendTarget = { setState(state: RunnerState, reason: string): void };

/** Installs the handlers; returns what removes them. */
export function installMaintenanceSignals(target: SuspendTarget): () => void {
  const suspend = () => target.setState("suspended", "SIGUSR1");
  const resume = () => target.setState("running", "SIGUSR2");
  process.on("SIGUSR1", suspend);
  process.on("SIGUSR2", resume);
  return () => {
    process.off("SIGUSR1", suspend);
    process.off("SIGUSR2", resume);
  };
}
