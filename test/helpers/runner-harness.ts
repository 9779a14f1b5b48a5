// In-process harness for the runner loop's scheduling tests (test/unit/runner-*.test.ts): a real
// Runner over a real local-directory queue in a temp dir, a real ResourcePool of a small made-up
// machine, real request JSON, and in place of runAttempt an attempt the test ends when it wants
// (recording what started, with which reservation and control signals). The queue backend is
// wrapped only to count how often each queue is asked; the log is captured instead of printed.

import { afterEach } from "bun:test";
import { mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VenvCache } from "../../src/env/venv-cache.ts";
import type { Logger } from "../../src/log/logger.ts";
import { RunnerEvents, type RunnerEventMap } from "../../src/observe/events.ts";
import { LocalQueueBackend } from "../../src/queue/local/local-queue.ts";
import type { ResponsePublisher } from "../../src/queue/response-publisher.ts";
import type { Delivery, QueueBackend, ReceiveOptions, TaskQueue } from "../../src/queue/task-queue.ts";
import type { Request } from "../../src/request/model.ts";
import { ResourcePool, type Capacity, type Reservation } from "../../src/resources/pool.ts";
import { Runner, type RunnerLimits, type RunnerOptions } from "../../src/runner/runner.ts";
import { ArtifactCache } from "../../src/storage/artifact-cache.ts";
import type { AttemptControl, AttemptOutcome, runAttempt } from "../../src/task/attempt.ts";
import type { TaskContext } from "../../src/task/context.ts";
import { type Probe, waitFor } from "./wait-for.ts";

export const GiB = 2 ** 30;

const FIXTURE = new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname;
const WORKSPACE = (await Bun.file(FIXTURE).json()).experiment.artifacts.workspace as Record<string, unknown>;

export type Needs = { cpus?: number; gpus?: number; ram?: string; hdd?: string };

/** A plain studioml request: the fixture's workspace, this key and these resources_needed. */
export function requestJson(key: string, needs: Needs = {}, experiment: Record<string, unknown> = {}): string {
  const resources_needed = { cpus: 1, gpus: 0, ram: "10m", hdd: "10m", ...needs };
  return JSON.stringify({
    experiment: { key, filename: "train.py", artifacts: { workspace: WORKSPACE }, resources_needed, ...experiment },
  });
}

/** Poll quickly: these tests wait for in-process events that come within milliseconds. */
export const until = <T>(what: string, probe: Probe<T>): Promise<T> => waitFor(what, probe, 5000, 5);

/** A clock the test moves by hand, for the runner's idle time and its waiting and recheck periods. */
export class FakeClock {
  ms = 1_000_000;
  readonly now = () => this.ms;
  advance(ms: number) {
    this.ms += ms;
  }
}

/** One attempt the fake started, ended by the test. */
export type Started = {
  key: string | undefined;
  queue: string;
  delivery: Delivery;
  control: AttemptControl;
  reservation: Reservation | undefined;
  request: Request | undefined;
  done: boolean;
  /** Ends it as a finished experiment: the message is acked (removed for good). */
  finish(): Promise<void>;
  /** Ends it by throwing, as a crashing attempt would; the message is left claimed. */
  crash(message: string): Promise<void>;
};

/**
 * The attempt function handed to the Runner. It settles nothing on its own except on a forced
 * shutdown, where, like the real attempt, it gives the message back without counting a delivery.
 */
export class FakeAttempts {
  readonly started: Started[] = [];
  /** Keys whose attempt throws at once. */
  readonly throwFor = new Set<string>();
  /** Most attempts that ran at the same time. */
  maxConcurrent = 0;

  get running(): Started[] {
    return this.started.filter((s) => !s.done);
  }

  keys(): Array<string | undefined> {
    return this.started.map((s) => s.key);
  }

  readonly attempt: typeof runAttempt = async (delivery, _ctx, control, reservation, request) => {
    const key = request?.experiment.key;
    if (key && this.throwFor.has(key)) throw new Error(`attempt for ${key} blew up`);
    const { promise, resolve, reject } = Promise.withResolvers<AttemptOutcome>();
    const end = async (how: () => Promise<void>) => {
      if (entry.done) return;
      entry.done = true;
      await how();
      // The runner's bookkeeping (release, wake) is a catch/finally chain of microtasks on this
      // promise: one turn of the event loop after it settles, it has all run.
      await promise.catch(() => undefined);
      await new Promise((turn) => setImmediate(turn));
    };
    const entry: Started = {
      key,
      queue: delivery.queue,
      delivery,
      control,
      reservation,
      request,
      done: false,
      finish: () =>
        end(async () => {
          await delivery.ack();
          resolve({ kind: "finished", exitCode: 0, reason: "exit 0" });
        }),
      crash: (message) =>
        end(async () => {
          reject(new Error(message));
        }),
    };
    control.force.addEventListener("abort", () => {
      void end(async () => {
        await delivery.nack("forced shutdown", { countDelivery: false });
        resolve({ kind: "requeued", reason: "forced shutdown" });
      });
    });
    this.started.push(entry);
    this.maxConcurrent = Math.max(this.maxConcurrent, this.running.length);
    return promise;
  };

  /** Finish every attempt still running. */
  async finishAll() {
    for (const s of this.running) await s.finish();
  }
}

/** The real local backend, counting how often each queue is asked and able to fail discovery. */
export class CountingBackend implements QueueBackend {
  readonly kind: string;
  readonly receives = new Map<string, number>();
  failDiscovery?: string;
  discoveries = 0;
  closed = 0;

  constructor(readonly inner: LocalQueueBackend) {
    this.kind = inner.kind;
  }

  asked(queue: string): number {
    return this.receives.get(queue) ?? 0;
  }

  check(timeoutMs: number): Promise<string> {
    return this.inner.check(timeoutMs);
  }

  async discover(): Promise<string[]> {
    this.discoveries++;
    if (this.failDiscovery) throw new Error(this.failDiscovery);
    return this.inner.discover();
  }

  open(name: string): TaskQueue {
    const queue = this.inner.open(name);
    return {
      name,
      receive: (options?: ReceiveOptions) => {
        this.receives.set(name, this.asked(name) + 1);
        return queue.receive(options);
      },
    };
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.inner.waitForWork(timeoutMs, signal);
  }

  publish(queue: string, body: Uint8Array | string): Promise<string> {
    return this.inner.publish(queue, body);
  }

  responsePublisher(): ResponsePublisher {
    return this.inner.responsePublisher();
  }

  async close(): Promise<void> {
    this.closed++;
    await this.inner.close();
  }
}

export type HarnessOptions = {
  /** The made-up machine; default 2 cpus, 8 GiB RAM, 100 GiB disk, no GPUs. */
  capacity?: Partial<Capacity>;
  limits?: Partial<RunnerLimits>;
  runner?: Omit<RunnerOptions, "attempt">;
  /** Context fields to set (queueRefusal, admission, readRequest). */
  ctx?: Partial<TaskContext>;
};

type Line = { level: "info" | "warn" | "error" | "debug"; message: string };

/** A runner wired to real parts in a temp dir; start() runs its loop, stop() ends it and cleans up. */
export class RunnerHarness {
  readonly lines: Line[] = [];
  readonly events = new RunnerEvents();
  readonly attempts = new FakeAttempts();
  readonly backend: CountingBackend;
  readonly pool: ResourcePool;
  readonly runner: Runner;
  /** Counts of the events the loop emitted. */
  readonly seen = new Map<string, number>();
  /** The most cpus the pool ever had reserved, sampled at every attempt start and poll. */
  maxUsedCpus = 0;
  ended = false;
  private loop?: Promise<void>;
  private sequence = 0;

  private constructor(
    readonly dir: string,
    options: HarnessOptions,
  ) {
    this.backend = new CountingBackend(
      new LocalQueueBackend({ root: join(dir, "queues"), maxDeliveries: 5, pollMs: 10 }),
    );
    this.pool = new ResourcePool({ cpus: 2, ramBytes: 8 * GiB, hddBytes: 100 * GiB, gpus: 0, ...options.capacity });
    const keep = (level: Line["level"]) => (message: string) => void this.lines.push({ level, message });
    const log: Logger = { info: keep("info"), warn: keep("warn"), error: keep("error"), debug: keep("debug") };
    const ctx: TaskContext = {
      workingDir: join(dir, "work"),
      runnerId: "sched-test",
      host: "sched-test-host",
      runnerEnv: {},
      venvs: new VenvCache({ root: join(dir, "venvs"), maxBytes: GiB, maxAgeMs: 0, pinMode: "default", env: {} }),
      artifacts: new ArtifactCache(join(dir, "artifacts"), GiB),
      allowEnvSecrets: false,
      maxDurationMs: 0,
      keepDirectories: false,
      log,
      events: this.events,
      ...options.ctx,
    };
    const limits: RunnerLimits = { limitTasks: 0, limitIdleMs: 0, shutdownGraceMs: 1000, ...options.limits };
    this.runner = new Runner([this.backend], this.pool, ctx, limits, {
      ...options.runner,
      attempt: (...args) => {
        this.sample();
        return this.attempts.attempt(...args);
      },
    });
    const names: Array<keyof RunnerEventMap> = ["poll", "loop.ended", "runner.state", "queue.checked"];
    for (const name of names)
      this.events.on(name, () => {
        this.seen.set(name, this.count(name) + 1);
        this.sample();
      });
  }

  static async create(options: HarnessOptions = {}): Promise<RunnerHarness> {
    return new RunnerHarness(await mkdtemp(join(tmpdir(), "runner-sched-")), options);
  }

  private sample() {
    this.maxUsedCpus = Math.max(this.maxUsedCpus, this.pool.snapshot().used.cpus);
  }

  count(event: keyof RunnerEventMap): number {
    return this.seen.get(event) ?? 0;
  }

  /** Queue a request; messages of a queue are taken oldest first, so each gets a later mtime. */
  async publish(queue: string, key: string, needs: Needs = {}, experiment: Record<string, unknown> = {}) {
    return this.publishRaw(queue, requestJson(key, needs, experiment));
  }

  async publishRaw(queue: string, body: string): Promise<string> {
    const id = await this.backend.publish(queue, body);
    const at = new Date(Date.now() - 600_000 + ++this.sequence * 1000);
    await utimes(join(this.dir, "queues", queue, id), at, at);
    return id;
  }

  /** Message files waiting in a queue's directory. */
  async waitingIn(queue: string): Promise<string[]> {
    const names = await readdir(join(this.dir, "queues", queue)).catch(() => []);
    return names.filter((n) => !n.startsWith("."));
  }

  /** Message files kept in a queue's failed place (without their .reason.json). */
  async failedIn(queue: string): Promise<string[]> {
    const names = await readdir(join(this.dir, "queues", ".failed", queue)).catch(() => []);
    return names.filter((n) => !n.endsWith(".reason.json"));
  }

  start(): Promise<void> {
    this.loop = this.runner.run().finally(() => {
      this.ended = true;
    });
    return this.loop;
  }

  /** The loop has looked at every queue again `n` more times from now (nothing said it had to take work). */
  async passes(n = 3) {
    const from = this.count("poll");
    await until(`${n} more polls`, () => this.count("poll") >= from + n);
  }

  /** Wait for the attempt of this key to start. */
  async started(key: string): Promise<Started> {
    return until(`attempt ${key} to start`, () => this.attempts.started.find((s) => s.key === key));
  }

  /** Wait for `n` attempts in all to have started. */
  async startedCount(n: number) {
    await until(`${n} attempts to start`, () => this.attempts.started.length >= n);
  }

  logged(level: Line["level"], text: string): string[] {
    return this.lines.filter((l) => l.level === level && l.message.includes(text)).map((l) => l.message);
  }

  async waitLogged(level: Line["level"], text: string): Promise<string> {
    return until(`a ${level} line with "${text}"`, () => this.logged(level, text)[0]);
  }

  /** End the loop (finishing whatever still runs) and remove the temp dir. */
  async stop() {
    if (this.loop && !this.ended) {
      this.runner.drain("test over");
      await this.attempts.finishAll();
      await this.loop;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * For a test file: `make(options)` builds a harness for the test running now, stopped after it
 * (bun's afterEach, registered by this call).
 */
export function harnessPerTest(): (options?: HarnessOptions) => Promise<RunnerHarness> {
  let current: RunnerHarness | undefined;
  afterEach(async () => {
    await current?.stop();
    current = undefined;
  });
  return async (options = {}) => {
    current = await RunnerHarness.create(options);
    return current;
  };
}
