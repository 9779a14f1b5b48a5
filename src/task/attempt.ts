// One attempt at one request, as the list of its steps (src/task/steps/, one file each): the
// request is read, then each step prepares in order, the job runs, the steps see its exit, clean
// up in reverse, and the delivery is settled in one place (settle.ts) from how the attempt ended.

import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { PermanentError, RetryableError, errorMessage } from "../errors.ts";
import { PhaseClock, type AttemptIdentity, type AttemptResult } from "../observe/events.ts";
import type { Delivery } from "../queue/task-queue.ts";
import type { Request } from "../request/model.ts";
import { plainRequestReader } from "../request/read-request.ts";
import type { Reservation } from "../resources/pool.ts";
import { realClock } from "./attempt-clock.ts";
import { runSteps, endingOf } from "./attempt-pipeline.ts";
import type { AttemptControl, AttemptState, Ending } from "./attempt-state.ts";
import type { AttemptStep } from "./attempt-step.ts";
import type { TaskContext } from "./context.ts";
import { JobHandle } from "./job-handle.ts";
import { type AttemptOutcome, settle } from "./settle.ts";
import { cgroupStep } from "./steps/cgroup.ts";
import { checkpointsStep } from "./steps/checkpoints.ts";
import { claimStep } from "./steps/claim.ts";
import { environmentStep } from "./steps/environment.ts";
import { fetchStep } from "./steps/fetch.ts";
import { layoutStep } from "./steps/layout.ts";
import { locationsStep } from "./steps/locations.ts";
import { logStep } from "./steps/log.ts";
import { recordStep } from "./steps/record.ts";
import { runStep } from "./steps/run.ts";
import { signalsStep } from "./steps/signals.ts";
import { stopPollStep } from "./steps/stop-poll.ts";
import { timeLimitStep } from "./steps/time-limit.ts";
import { uploadStep } from "./steps/upload.ts";
import { timeLimit } from "./time-limit.ts";

export type { AttemptControl } from "./attempt-state.ts";
export type { AttemptOutcome } from "./settle.ts";

/** An attempt's steps, in order. */
export const ATTEMPT_STEPS: readonly AttemptStep[] = [
  layoutStep, // the attempt's directory, artifact mapping, job environment, owner record
  logStep, // the experiment's log, the uploader, the fence; "attempt.started"
  locationsStep, // where artifacts and the database may be (refused: nothing is written there)
  recordStep, // the experiment database: running, then finished
  claimStep, // this attempt becomes the experiment's current one in storage
  fetchStep, // artifacts and the container image
  environmentStep(), // the executor (container or venv) prepares the job
  cgroupStep(), // RAM/CPU/process limits; peak memory and OOM after the exit
  checkpointsStep, // mutable artifacts to storage while the job runs
  timeLimitStep, // stop at the time limit
  stopPollStep, // stop on the user's "stopped" in the database
  signalsStep, // drain, forced shutdown, withdrawn request
  runStep, // start the job, wait for its exit
  uploadStep, // why it ended; the final upload (or a checkpoint when draining)
];

export async function runAttempt(
  delivery: Delivery,
  ctx: TaskContext,
  control: AttemptControl,
  reservation?: Reservation,
  parsed?: Request,
  steps: readonly AttemptStep[] = ATTEMPT_STEPS,
): Promise<AttemptOutcome> {
  const startedMs = performance.now();
  const who: AttemptIdentity = {
    key: delivery.id,
    attemptId: `${ctx.runnerId}-${randomUUID()}`,
    source: control.source ?? "local",
    queue: delivery.queue,
  };
  const phases = new PhaseClock(ctx.events, who);
  const { ending, name, afterSettle } = await attempt(delivery, ctx, control, who, phases, steps, reservation, parsed);
  if (ending.kind === "finished") phases.enter("ack");
  const outcome = await settle(delivery, ending, ctx.log, name).finally(() =>
    Promise.all(afterSettle.map((work) => work().catch((err) => ctx.log.warn(`${name}: ${errorMessage(err)}`)))),
  );
  ctx.events?.emit("attempt.finished", {
    ...who,
    result: resultOf(outcome),
    reason: outcome.reason,
    exitCode: outcome.kind === "finished" ? outcome.exitCode : undefined,
    durationMs: performance.now() - startedMs,
    ...phases.last(),
  });
  return outcome;
}

/** Reads the request and runs the steps; how it ended, and the attempt's name for the runner's log. */
async function attempt(
  delivery: Delivery,
  ctx: TaskContext,
  control: AttemptControl,
  who: AttemptIdentity,
  phases: PhaseClock,
  steps: readonly AttemptStep[],
  reservation?: Reservation,
  parsed?: Request,
): Promise<{ ending: Ending; name: string; afterSettle: Array<() => Promise<void>> }> {
  const where = `${delivery.queue}/${delivery.id}`;
  let request: Request;
  try {
    request = parsed ?? (ctx.readRequest ?? plainRequestReader)(delivery.body, delivery.queue);
  } catch (err) {
    // A RetryableError: the runner's own key cannot be read just now, not the request's fault.
    const fault = err instanceof RetryableError ? err : new PermanentError(`bad request: ${errorMessage(err)}`);
    return { ending: endingOf(fault, where), name: where, afterSettle: [] };
  }
  const key = request.experiment.key;
  who.key = key;
  const name = `experiment ${key}`;
  const clock = ctx.clock ?? realClock;
  const limit = timeLimit(request, ctx.maxDurationMs, clock.nowMs());
  if (limit && limit.ms <= 0) {
    const expired = new PermanentError(`experiment ${key} expired before it could start (${limit.because})`);
    return { ending: endingOf(expired, key), name, afterSettle: [] };
  }
  const state: AttemptState = {
    delivery,
    ctx,
    control,
    who,
    reservation,
    request,
    key,
    limit,
    attemptDir: join(ctx.workingDir, "studio-runner", key, `${clock.nowMs()}-${delivery.deliveryCount}`),
    clock,
    job: new JobHandle(),
    disarm: new Map(),
    afterSettle: [],
  };
  return { ending: await runSteps(state, steps, phases), name, afterSettle: state.afterSettle };
}

/** The observers' name for an outcome: a finished script succeeded only with exit code 0. */
function resultOf(outcome: AttemptOutcome): AttemptResult {
  switch (outcome.kind) {
    case "finished":
      return outcome.exitCode === 0 ? "succeeded" : "failed";
    case "failed":
      return "poisoned";
    default:
      return outcome.kind;
  }
}
