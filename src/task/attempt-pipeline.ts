// Runs an attempt's steps: every prepare in order, then every afterExit in order, then every
// cleanup in reverse; a fault anywhere becomes the attempt's ending, which decides the settling.

import { asFault, errorMessage } from "../errors.ts";
import type { PhaseClock } from "../observe/events.ts";
import { SupersededError } from "./attempt-fence.ts";
import type { AttemptState, Ending } from "./attempt-state.ts";
import { type AttemptStep, phaseOf } from "./attempt-step.ts";

export async function runSteps(
  state: AttemptState,
  steps: readonly AttemptStep[],
  phases?: PhaseClock,
): Promise<Ending> {
  const started: AttemptStep[] = [];
  let ending: Ending;
  try {
    for (const step of steps) {
      if (!step.prepare) continue;
      enter(step, phases);
      started.push(step);
      await step.prepare(state);
    }
    for (const step of steps) {
      if (!step.afterExit) continue;
      if (!step.prepare) enter(step, phases);
      await step.afterExit(state);
    }
    ending = state.ending ?? {
      kind: "fault",
      fault: asFault(new Error("the attempt ended without an outcome")),
      reason: "the attempt ended without an outcome",
    };
  } catch (err) {
    ending = endingOf(err, state.key);
  }
  for (const step of started.reverse()) {
    await step
      .cleanup?.(state, ending)
      .catch((err) => state.ctx.log.warn(`cleanup of ${step.name} for ${state.key} failed: ${errorMessage(err)}`));
  }
  return ending;
}

function enter(step: AttemptStep, phases: PhaseClock | undefined) {
  const phase = phaseOf(step);
  if (phase) phases?.enter(phase);
}

/** A thrown value as the attempt's ending: a newer attempt's claim, or a fault with its phase in the reason. */
export function endingOf(err: unknown, key: string): Ending {
  if (err instanceof SupersededError) return { kind: "superseded", reason: err.message };
  const fault = asFault(err, { experiment: key });
  const phase = fault.context.phase ? ` (${fault.context.phase})` : "";
  return { kind: "fault", fault, reason: `${fault.message}${phase}` };
}
