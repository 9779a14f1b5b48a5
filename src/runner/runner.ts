// The daemon's main loop: discover queues, take a request only when the pool can fit it, run
// attempts concurrently, and drain on SIGTERM (a second SIGTERM forces).

import { formatDuration } from "../config/units.ts";
import { errorMessage } from "../errors.ts";
import type { QueueBackend } from "../queue/task-queue.ts";
import type { Request } from "../request/model.ts";
import { parseRequest } from "../request/parse.ts";
import type { ResourcePool } from "../resources/pool.ts";
import { runAttempt, type AttemptOutcome } from "../task/attempt.ts";
import type { TaskContext } from "../task/context.ts";

export type RunnerLimits = { limitTasks: number; limitIdleMs: number; shutdownGraceMs: number };

export class Runner {
  private readonly shutdown = new AbortController();
  private readonly force = new AbortController();
  private readonly running = new Set<Promise<AttemptOutcome>>();
  private wake?: () => void;
  private taken = 0;
  private lastBusyMs = Date.now();
  private readonly warnedNeverFits = new Set<string>();
  readonly outcomes: AttemptOutcome[] = [];

  constructor(
    private readonly backends: QueueBackend[],
    private readonly pool: ResourcePool,
    private readonly ctx: TaskContext,
    private readonly limits: RunnerLimits,
  ) {}

  /** Stop taking work; running experiments get the grace period. A second call forces. */
  drain(reason: string) {
    if (!this.shutdown.signal.aborted) {
      this.ctx.log.info(`draining (${reason}): no new work; ${this.running.size} experiment(s) running get ${formatDuration(this.limits.shutdownGraceMs)}`);
      this.shutdown.abort();
    } else if (!this.force.signal.aborted) {
      this.ctx.log.warn(`forced shutdown (${reason}): stopping running experiments now`);
      this.force.abort();
    }
    this.wake?.();
  }

  get draining(): boolean {
    return this.shutdown.signal.aborted;
  }

  async run(): Promise<void> {
    const queuesSeen = new Set<string>();
    while (!this.draining) {
      if (this.limits.limitTasks > 0 && this.taken >= this.limits.limitTasks) {
        this.ctx.log.info(`took ${this.taken} experiment(s) (--limit-tasks): finishing`);
        break;
      }
      let took = false;
      for (const backend of this.backends) {
        let names: string[] = [];
        try {
          names = await backend.discover();
        } catch (err) {
          this.ctx.log.warn(`${backend.kind} queue discovery failed: ${errorMessage(err)}`);
        }
        for (const name of names) {
          if (!queuesSeen.has(`${backend.kind}:${name}`)) {
            queuesSeen.add(`${backend.kind}:${name}`);
            this.ctx.log.info(`serving ${backend.kind} queue ${name}`);
          }
          if (this.draining || (this.limits.limitTasks > 0 && this.taken >= this.limits.limitTasks)) break;
          if (await this.takeOne(backend, name)) took = true;
        }
      }
      if (this.running.size > 0) this.lastBusyMs = Date.now();
      if (took) continue;
      if (this.limits.limitIdleMs > 0 && this.running.size === 0 && Date.now() - this.lastBusyMs >= this.limits.limitIdleMs) {
        this.ctx.log.info(`idle for ${formatDuration(this.limits.limitIdleMs)} (--limit-idle-duration): finishing`);
        break;
      }
      await this.waitForWork();
    }
    if (this.running.size) this.ctx.log.info(`waiting for ${this.running.size} running experiment(s)`);
    await Promise.allSettled([...this.running]);
    for (const b of this.backends) await b.close().catch(() => undefined);
  }

  private async waitForWork() {
    const controller = new AbortController();
    const woken = new Promise<void>((resolve) => (this.wake = resolve));
    const idleLeft = this.limits.limitIdleMs > 0 ? Math.max(50, this.limits.limitIdleMs - (Date.now() - this.lastBusyMs)) : 5000;
    await Promise.race([woken, ...this.backends.map((b) => b.waitForWork(Math.min(5000, idleLeft), controller.signal))]);
    controller.abort();
    this.wake = undefined;
  }

  /** Take one request from the queue if one fits now; true when an attempt started. */
  private async takeOne(backend: QueueBackend, name: string): Promise<boolean> {
    const parsed = new WeakMap<Uint8Array, Request>();
    const queue = backend.open(name);
    let delivery;
    try {
      delivery = await queue.receive({
        accept: (body) => {
          let request: Request;
          try {
            request = parseRequest(body);
          } catch {
            return true; // take it, so the attempt can keep it in the failed place with the reason
          }
          const never = this.pool.neverFits(request.experiment.resources);
          if (never) {
            if (!this.warnedNeverFits.has(request.experiment.key)) {
              this.warnedNeverFits.add(request.experiment.key);
              this.ctx.log.warn(`leaving experiment ${request.experiment.key} in ${name} for a bigger runner: ${never}`);
            }
            return false;
          }
          if (!this.pool.fitsNow(request.experiment.resources)) return false;
          parsed.set(body, request);
          return true;
        },
      });
    } catch (err) {
      this.ctx.log.warn(`receive from ${backend.kind} queue ${name} failed: ${errorMessage(err)}`);
      return false;
    }
    if (!delivery) return false;
    const request = parsed.get(delivery.body);
    let reservation = request ? this.pool.reserve(request.experiment.resources) : undefined;
    if (request && !reservation) {
      // Backends that cannot look first: give it back without counting.
      await delivery.nack("does not fit this runner now", { countDelivery: false });
      return false;
    }
    this.taken++;
    const attempt = runAttempt(delivery, this.ctx, { shutdown: this.shutdown.signal, force: this.force.signal, shutdownGraceMs: this.limits.shutdownGraceMs }, reservation, request)
      .catch((err): AttemptOutcome => {
        this.ctx.log.error(`attempt crashed: ${errorMessage(err)}`);
        return { kind: "failed", reason: errorMessage(err) };
      })
      .then((outcome) => {
        this.outcomes.push(outcome);
        return outcome;
      })
      .finally(() => {
        reservation?.release();
        reservation = undefined;
        this.running.delete(attempt);
        this.lastBusyMs = Date.now();
        this.wake?.();
      });
    this.running.add(attempt);
    return true;
  }
}
