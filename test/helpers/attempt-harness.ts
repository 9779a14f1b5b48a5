// In-process harness for the attempt's steps: a Delivery in memory that records how it was settled,
// a clock moved by hand, a logger that keeps its lines, and a TaskContext on real caches and file
// storage in a temporary directory, with a real request built from the captured client message.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VenvCache } from "../../src/env/venv-cache.ts";
import type { Logger } from "../../src/log/logger.ts";
import type { AttemptIdentity } from "../../src/observe/events.ts";
import type { Delivery, NackOutcome } from "../../src/queue/task-queue.ts";
import type { Request } from "../../src/request/model.ts";
import { parseRequest } from "../../src/request/parse.ts";
import { ArtifactCache } from "../../src/storage/artifact-cache.ts";
import type { AttemptClock, Cancel } from "../../src/task/attempt-clock.ts";
import type { AttemptControl, AttemptState } from "../../src/task/attempt-state.ts";
import type { AttemptStep } from "../../src/task/attempt-step.ts";
import type { TaskContext } from "../../src/task/context.ts";
import { JobHandle } from "../../src/task/job-handle.ts";
import { REPO, simpleExperiment } from "./e2e.ts";

/** Python environments are shared by every harness (and kept between runs, like the e2e tests' cache). */
const STEPS_VENVS = join(REPO, ".test-tmp", "steps-venvs");

/** Every harness's directory goes when the test process ends. */
const made: string[] = [];
process.on("exit", () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

export type Settled = { how: "ack" | "nack" | "reject"; reason?: string; countDelivery?: boolean };

/** A delivery held in memory: it records how it was settled; nack moves it to "failed" at maxDeliveries. */
export class MemoryDelivery implements Delivery {
  readonly settled: Settled[] = [];
  readonly id = crypto.randomUUID();
  constructor(
    readonly body: Uint8Array,
    readonly queue = "local_steps",
    readonly deliveryCount = 1,
    readonly revoked?: AbortSignal,
    private readonly maxDeliveries = 3,
  ) {}
  async extendLease() {}
  async ack() {
    this.settled.push({ how: "ack" });
  }
  async nack(reason: string, options: { countDelivery?: boolean } = {}): Promise<NackOutcome> {
    this.settled.push({ how: "nack", reason, countDelivery: options.countDelivery ?? true });
    return options.countDelivery !== false && this.deliveryCount >= this.maxDeliveries ? "failed" : "requeued";
  }
  async reject(reason: string) {
    this.settled.push({ how: "reject", reason });
  }
}

/** A clock that moves only when told: timers fire from advance(). */
export class ManualClock implements AttemptClock {
  private timers: Array<{ atMs: number; fn: () => void; everyMs?: number; id: number }> = [];
  private serial = 0;
  constructor(private now = Date.now()) {}
  nowMs() {
    return this.now;
  }
  after(ms: number, fn: () => void): Cancel {
    return this.add({ atMs: this.now + ms, fn });
  }
  every(ms: number, fn: () => void): Cancel {
    return this.add({ atMs: this.now + ms, fn, everyMs: ms });
  }
  /** Timers still armed. */
  get armed(): number {
    return this.timers.length;
  }
  /** Moves time forward, firing every timer that falls due on the way, in order. */
  advance(ms: number) {
    const until = this.now + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.atMs <= until).sort((a, b) => a.atMs - b.atMs)[0];
      if (!next) break;
      this.now = next.atMs;
      if (next.everyMs) next.atMs += next.everyMs;
      else this.timers = this.timers.filter((t) => t !== next);
      next.fn();
    }
    this.now = until;
  }
  private add(t: { atMs: number; fn: () => void; everyMs?: number }): Cancel {
    const timer = { ...t, id: ++this.serial };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
}

/** A logger that keeps "level message" lines. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, info: at("info"), warn: at("warn"), error: at("error"), debug: at("debug") };
}

export type Harness = {
  dir: string;
  storageRoot: string;
  /** Where the experiment's mutable artifacts go in file storage. */
  experimentDir: string;
  /** The experiment's record in the local database. */
  recordFile: string;
  message: Record<string, any>;
  request: Request;
  ctx: TaskContext & { log: ReturnType<typeof memoryLogger> };
  clock: ManualClock;
  control: AttemptControl & { drain: AbortController; forceAll: AbortController };
  /** A fresh attempt state for the request, as attempt.ts makes it. */
  state(overrides?: Partial<AttemptState>): AttemptState;
};

/** A request on file storage with the given workspace files (main.py runs by default). */
export function harness(
  files: Record<string, string> = { "main.py": "print('hello')\n" },
  edit?: (message: Record<string, any>) => void,
  ctxOverrides: Partial<TaskContext> = {},
): Harness {
  const dir = mkdtempSync(join(tmpdir(), "steps-"));
  made.push(dir);
  const storageRoot = join(dir, "storage");
  // The experiment's status goes to a local database beside its artifacts.
  const exp = simpleExperiment(storageRoot, files, (m) => {
    m.config.database = { type: "local", endpoint: storageRoot, bucket: "studioml-meta" };
    edit?.(m);
  });
  const request = parseRequest(JSON.stringify(exp.message));
  const clock = new ManualClock();
  const log = memoryLogger();
  const ctx: Harness["ctx"] = {
    workingDir: join(dir, "work"),
    runnerId: "steps-runner",
    host: "steps-host",
    runnerEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, LANG: "C.UTF-8" },
    venvs: new VenvCache({
      root: STEPS_VENVS,
      maxBytes: 0,
      maxAgeMs: 0,
      pinMode: "default",
      env: process.env,
    }),
    artifacts: new ArtifactCache(join(dir, "artifact-cache"), 1024 * 1024 * 1024),
    allowEnvSecrets: false,
    maxDurationMs: 0,
    keepDirectories: false,
    localFileStorageRoots: [storageRoot],
    log,
    clock,
    ...ctxOverrides,
  } as Harness["ctx"];
  const drain = new AbortController();
  const forceAll = new AbortController();
  const control = {
    shutdown: drain.signal,
    force: forceAll.signal,
    shutdownGraceMs: 5_000,
    source: "local",
    drain,
    forceAll,
  };
  const who: AttemptIdentity = {
    key: request.experiment.key,
    attemptId: "steps-1",
    source: "local",
    queue: "local_steps",
  };
  return {
    dir,
    storageRoot,
    experimentDir: exp.experimentDir,
    recordFile: join(storageRoot, "studioml-meta", "experiments", request.experiment.key),
    message: exp.message,
    request,
    ctx,
    clock,
    control,
    state: (overrides = {}) => ({
      delivery: new MemoryDelivery(new TextEncoder().encode(JSON.stringify(exp.message))),
      ctx,
      control,
      who,
      request,
      key: request.experiment.key,
      limit: undefined,
      attemptDir: join(ctx.workingDir, "studio-runner", request.experiment.key, `${clock.nowMs()}-1`),
      clock,
      job: new JobHandle(),
      disarm: new Map(),
      afterSettle: [],
      ...overrides,
    }),
  };
}

/** Runs the prepare of each step in order, as the pipeline does (no phases, no cleanup). */
export async function prepareAll(state: AttemptState, steps: readonly AttemptStep[]): Promise<void> {
  for (const step of steps) await step.prepare?.(state);
}

/** The text of a file, or "" when it is not there. */
export function textOf(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
