// One step of an attempt (the shape of Nomad's task-runner hooks): `prepare` runs in order before
// the job exits, `afterExit` in order once it has, `cleanup` in reverse order whatever happened.

import type { AttemptPhase } from "../observe/events.ts";
import type { AttemptState, Ending } from "./attempt-state.ts";

export type AttemptStep = {
  /** The step's name; a step named after a phase (claim, fetch, environment, run, upload) starts that phase. */
  readonly name: string;
  prepare?(state: AttemptState): Promise<void>;
  afterExit?(state: AttemptState): Promise<void>;
  /** Undoes what prepare did; runs for every step whose prepare started, must not throw, may run twice. */
  cleanup?(state: AttemptState, ending: Ending): Promise<void>;
};

const PHASES: readonly AttemptPhase[] = ["claim", "fetch", "environment", "run", "upload", "ack"];

/** The phase a step starts, from its name. */
export function phaseOf(step: AttemptStep): AttemptPhase | undefined {
  return PHASES.find((p) => p === step.name);
}
