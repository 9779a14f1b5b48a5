// What one attempt carries from step to step: the delivery and its request, and what each step
// sets up for the ones after it (directories, log, uploader, record, the job's launch, its exit).

import type { ExitInfo } from "../exec/process-tree.ts";
import type { RunnerFault } from "../errors.ts";
import type { OutputLog } from "./output-log.ts";
import type { AttemptIdentity } from "../observe/events.ts";
import type { Delivery } from "../queue/task-queue.ts";
import type { Request } from "../request/model.ts";
import type { Reservation } from "../resources/pool.ts";
import type { ExperimentRecord } from "../status/experiment-record.ts";
import type { StorageIdentity } from "../storage/storage-identity.ts";
import type { Stores } from "../storage/stores.ts";
import type { AttemptClock, Cancel } from "./attempt-clock.ts";
import type { AttemptFence } from "./attempt-fence.ts";
import type { ArtifactUploader } from "./artifacts.ts";
import type { TaskContext } from "./context.ts";
import type { JobHandle } from "./job-handle.ts";
import type { JobEnv } from "./job-env.ts";
import type { TimeLimit } from "./time-limit.ts";

export type AttemptControl = {
  /** Aborted when the runner drains: stop, checkpoint and requeue (without counting a delivery). */
  shutdown: AbortSignal;
  /** Grace a running experiment gets after shutdown before it is stopped. */
  shutdownGraceMs: number;
  /** Aborted on a forced shutdown: stop at once. */
  force: AbortSignal;
  /** Aborted when the request is withdrawn while it runs (its queue was deleted): stop it. */
  revoked?: AbortSignal;
  /** The kind of queue the request came from ("local", "rabbitmq", …): file: locations are trusted from local
   * queues only. */
  source?: string;
};

/** How a job ended, and whether the kernel killed it for its memory limit. */
export type JobExit = ExitInfo & { memoryLimitBytes?: number };

/** What the job is started with: the launchers' argv and environment; the job's own environment goes through fd 3. */
export type JobLaunch = {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** The job's environment for fd 3 (bwrap --args or the env loader); `env` is then the launchers'. */
  payload?: Buffer;
};

/** How the attempt ended, before the delivery is settled. */
export type Ending =
  | { kind: "finished"; exit: JobExit; reason: string }
  /** The runner drains: checkpointed, given back without counting a delivery. */
  | { kind: "shutdown"; reason: string }
  /** A newer attempt owns the experiment: given back uncounted, never acked here. */
  | { kind: "superseded"; reason: string }
  | { kind: "fault"; fault: RunnerFault; reason: string };

export type StorageAccessOptions = {
  allowEnvSecrets: boolean;
  runnerEnv: Record<string, string | undefined>;
  identity: StorageIdentity | undefined;
  stores: Stores | undefined;
  progress: (message: string) => void;
};

export type AttemptState = {
  readonly delivery: Delivery;
  readonly ctx: TaskContext;
  readonly control: AttemptControl;
  readonly who: AttemptIdentity;
  readonly reservation?: Reservation;
  readonly request: Request;
  readonly key: string;
  readonly limit: TimeLimit;
  /** This attempt's own directory under the working dir. */
  readonly attemptDir: string;
  readonly clock: AttemptClock;
  /** The job, to stop it from any step. */
  readonly job: JobHandle;
  /** Timers and listeners each step armed, disarmed by its cleanup. */
  readonly disarm: Map<string, Cancel>;
  /**
   * Work a cleanup left for after the delivery is settled (a finished experiment's directory is
   * removed once it is acked, not before); still inside the attempt, so its reservation is held.
   */
  readonly afterSettle: Array<() => Promise<void>>;
  // set by the layout and log steps
  dirs?: Record<string, string>;
  jobEnv?: JobEnv;
  log?: OutputLog;
  access?: StorageAccessOptions;
  fence?: AttemptFence;
  uploader?: ArtifactUploader;
  startedMs?: number;
  /** Set when the locations step refused the request: nothing is written to those locations. */
  locationsRefused?: boolean;
  // record
  record?: ExperimentRecord;
  recordStarted?: Promise<void>;
  // fetch
  image?: string;
  // environment
  launch?: JobLaunch;
  releaseEnvironment?: () => void;
  // run
  exit?: JobExit;
  ending?: Ending;
};

/** A value an earlier step must have set: its absence is a bug in the order of the steps. */
export function need<K extends keyof AttemptState>(state: AttemptState, key: K): NonNullable<AttemptState[K]> {
  const value = state[key];
  if (value === undefined || value === null) throw new Error(`attempt steps out of order: ${key} is not set yet`);
  return value as NonNullable<AttemptState[K]>;
}
