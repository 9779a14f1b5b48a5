// What the Kubernetes drain ConfigMap means (the Go runner's convention, protocol §8): key STATE
// is Running, DrainAndSuspend or DrainAndTerminate; QUEUE_MATCH / QUEUE_MISMATCH replace the
// --queue-match / --queue-mismatch regexes while they are present.

import type { RunnerState } from "../observe/events.ts";
import type { QueueFilterOverride } from "../queue/live-filter.ts";

export const STATE_KEY = "STATE";
export const QUEUE_MATCH_KEY = "QUEUE_MATCH";
export const QUEUE_MISMATCH_KEY = "QUEUE_MISMATCH";

/** The map's STATE values and the runner state each asks for. */
export const MAP_STATES: Readonly<Record<string, RunnerState>> = {
  Running: "running",
  DrainAndSuspend: "suspended",
  DrainAndTerminate: "terminating",
};

/** A STATE value that names no state; the runner keeps the state it is in. */
export class DrainStateError extends Error {
  constructor(readonly value: string) {
    super(
      `${STATE_KEY} ${JSON.stringify(value)} is not one of ${Object.keys(MAP_STATES).join(", ")}: ` +
        "the runner state is left as it is",
    );
    this.name = "DrainStateError";
  }
}

/**
 * The runner state a STATE value asks for. Surrounding blanks and letter case are forgiven
 * ("drainandsuspend"); undefined (no STATE, or no map) asks for running: withdrawing the
 * instruction ends the drain.
 */
export function runnerStateOf(value: string | undefined): RunnerState {
  if (value === undefined || value.trim() === "") return "running";
  const wanted = value.trim().toLowerCase();
  for (const [name, state] of Object.entries(MAP_STATES)) if (name.toLowerCase() === wanted) return state;
  throw new DrainStateError(value);
}

/** The queue filter override a map's data carries (absent keys: the configured flags). */
export function filterOverrideOf(data: Readonly<Record<string, string>> | undefined): QueueFilterOverride {
  return {
    match: data?.[QUEUE_MATCH_KEY]?.trim() || undefined,
    mismatch: data?.[QUEUE_MISMATCH_KEY]?.trim() || undefined,
  };
}
