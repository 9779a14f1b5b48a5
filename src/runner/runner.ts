// The daemon's main loop: discover queues, take a request only when the pool can fit it, run
// attempts concurrently, and drain on SIGTERM (a second SIGTERM forces). For maintenance it can
// also be suspended (no new work, running experiments finish), resumed, or told to exit once idle.

import { formatDuration } from "../config/units.ts";
import { errorMessage, RetryableError } from "../errors.ts";
import type { QueueBackend } from "../queue/task-queue.ts";
import type { Request, Resources } from "../request/model.ts";
import { plainRequestReader } from "../request/read-request.ts";
import type { ResourcePool } from "../resources/pool.ts";
import { runAttempt, type AttemptOutcome } from "../task/attempt.ts";
import type { TaskContext } from "../task/context.ts";
import type { RunnerState } from "../observe/events.ts";

export type RunnerLimits = { limitTasks: number; limitIdleMs: number; shutdownGraceMs: number };

/**
 * What the binary leaves at its default and a test may replace: how an attempt runs (default
 * runAttempt), and the scheduler's clock (default Date.now) for idle time, the blocked-queue
 * recheck and forgetting a waiting request. Events keep the wall clock.
 */
export type RunnerOptions = { attempt?: typeof runAttempt; now?: () => number };

/** What a queue's last request needed; when it was last seen; the pool's release count then. */
type QueueNeeds = { resources: Resources; key: string; seenMs: number; releasesSeen: number; sinceMs: number };

/** A queue whose last request did not fit is asked again after this long even if nothing was released. */
const RECHECK_BLOCKED_QUEUE_MS = 15_000;
/** A waiting request not seen again for this long (taken elsewhere, withdrawn) is no longer held back for. */
const FORGET_WAITING_MS = 60_000;

export class Runner {
  private readonly shutdown = new AbortController();
  private readonly force = new AbortController();
  private readonly running = new Set<Promise<AttemptOutcome>>();
  private wake?: () => void;
  private taken = 0;
  private lastBusyMs: number;
  private readonly warnedNeverFits = new Set<string>();
  /** Per queue ("kind:name"): the resources its last request needed (the Go runner's rule). */
  private readonly lastNeeds = new Map<string, QueueNeeds>();
  /** Queues whose last request fits this runner but not now, oldest first: work is held back for them. */
  private readonly waiting = new Map<string, QueueNeeds>();
  /** Reservations released so far: a blocked queue is asked again once this moves. */
  private releases = 0;
  /** Queues not served because of their keys, with the reason last logged. */
  private readonly refusedQueues = new Map<string, string>();
  /**
   * running: taking work; suspended: not taking work, still alive; terminating: exit once the
   * running experiments end.
   */
  private maintenance: RunnerState = "running";
  private readonly attempt: typeof runAttempt;
  private readonly now: () => number;

  constructor(
    private readonly backends: QueueBackend[],
    private readonly pool: ResourcePool,
    private readonly ctx: TaskContext,
    private readonly limits: RunnerLimits,
    options: RunnerOptions = {},
  ) {
    this.attempt = options.attempt ?? runAttempt;
    this.now = options.now ?? Date.now;
    this.lastBusyMs = this.now();
  }

  /** Stop taking work; running experiments get the grace period. A second call forces. */
  drain(reason: string) {
    if (!this.shutdown.signal.aborted) {
      const grace = formatDuration(this.limits.shutdownGraceMs);
      this.ctx.log.info(`draining (${reason}): no new work; ${this.running.size} experiment(s) running get ${grace}`);
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

  /** Whether new work is taken; running experiments go on in every state. */
  get state(): RunnerState {
    return this.draining ? "terminating" : this.maintenance;
  }

  /** How many experiments run now. */
  get runningCount(): number {
    return this.running.size;
  }

  /**
   * Maintenance drain: suspended takes no new work but stays up (resume with "running");
   * terminating takes no new work and exits once the running experiments have finished.
   * Running experiments are never stopped by this (SIGTERM's drain() does that after its grace).
   */
  setState(state: RunnerState, reason: string) {
    if (this.draining || state === this.maintenance) return;
    if (this.maintenance === "terminating") return; // exit already decided
    this.maintenance = state;
    const running = `${this.running.size} running experiment(s) go on`;
    this.ctx.log.info(
      state === "running"
        ? `resumed (${reason}): taking work again`
        : state === "suspended"
          ? `suspended (${reason}): no new work; ${running}`
          : `draining to exit (${reason}): no new work; ${running}, then the runner exits`,
    );
    this.ctx.events?.emit("runner.state", { state, reason });
    this.wake?.();
  }

  async run(): Promise<void> {
    const queuesSeen = new Set<string>();
    while (!this.draining && this.maintenance !== "terminating") {
      if (this.maintenance === "suspended") {
        this.ctx.events?.emit("poll", { atMs: Date.now() });
        await this.waitForWake(5000);
        continue;
      }
      if (this.limits.limitTasks > 0 && this.taken >= this.limits.limitTasks) {
        this.ctx.log.info(`took ${this.taken} experiment(s) (--limit-tasks): finishing`);
        break;
      }
      let took = false;
      for (const backend of this.backends) {
        let names: string[] = [];
        try {
          names = await backend.discover();
          this.ctx.events?.emit("queues.refreshed", { source: backend.kind, queues: names, ignored: 0 });
        } catch (err) {
          this.ctx.log.warn(`${backend.kind} queue discovery failed: ${errorMessage(err)}`);
          this.ctx.events?.emit("queues.failed", { source: backend.kind, error: errorMessage(err) });
        }
        for (const name of names) {
          if (!queuesSeen.has(`${backend.kind}:${name}`)) {
            queuesSeen.add(`${backend.kind}:${name}`);
            this.ctx.log.info(`serving ${backend.kind} queue ${name}`);
          }
          if (
            this.draining ||
            this.maintenance !== "running" ||
            (this.limits.limitTasks > 0 && this.taken >= this.limits.limitTasks)
          )
            break;
          if (this.refused(backend.kind, name)) continue;
          const taken = await this.takeOne(backend, name);
          this.ctx.events?.emit("queue.checked", { source: backend.kind, queue: name, took: taken });
          if (taken) took = true;
        }
      }
      this.ctx.events?.emit("poll", { atMs: Date.now() });
      if (this.running.size > 0) this.lastBusyMs = this.now();
      if (took) continue;
      if (
        this.limits.limitIdleMs > 0 &&
        this.running.size === 0 &&
        this.now() - this.lastBusyMs >= this.limits.limitIdleMs
      ) {
        this.ctx.log.info(`idle for ${formatDuration(this.limits.limitIdleMs)} (--limit-idle-duration): finishing`);
        break;
      }
      await this.waitForWork();
    }
    this.ctx.events?.emit("loop.ended", { atMs: Date.now() });
    if (this.running.size) this.ctx.log.info(`waiting for ${this.running.size} running experiment(s)`);
    await Promise.allSettled([...this.running]);
    for (const b of this.backends) await b.close().catch(() => undefined);
  }

  private async waitForWake(timeoutMs: number) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
    this.wake = undefined;
  }

  private async waitForWork() {
    const controller = new AbortController();
    const woken = new Promise<void>((resolve) => (this.wake = resolve));
    const idleLeft =
      this.limits.limitIdleMs > 0 ? Math.max(50, this.limits.limitIdleMs - (this.now() - this.lastBusyMs)) : 5000;
    await Promise.race([
      woken,
      ...this.backends.map((b) => b.waitForWork(Math.min(5000, idleLeft), controller.signal)),
    ]);
    controller.abort();
    this.wake = undefined;
  }

  /**
   * The request held back for: the oldest waiting request, when it is another queue's. Other
   * queues' requests are then taken only where they leave room for it, so a stream of small
   * experiments cannot starve a big one; the oldest waiting request always wins, so two waiting
   * queues never hold each other back.
   */
  private heldFor(queue: string): QueueNeeds | undefined {
    for (const [q, needs] of this.waiting) {
      if (this.now() - needs.seenMs > FORGET_WAITING_MS) {
        this.waiting.delete(q);
        continue;
      }
      return q === queue ? undefined : needs;
    }
    return undefined;
  }

  /** A queue whose signing key stopped parsing is not served (fail closed): said loudly, once per change. */
  private refused(kind: string, name: string): boolean {
    const id = `${kind}:${name}`;
    const why = this.ctx.queueRefusal?.(name);
    const before = this.refusedQueues.get(id);
    if (why) {
      if (before !== why) this.ctx.log.error(`not serving ${kind} queue ${name}: ${why}`);
      this.refusedQueues.set(id, why);
      return true;
    }
    if (before !== undefined) {
      this.ctx.log.info(`serving ${kind} queue ${name} again: its signing key is usable`);
      this.refusedQueues.delete(id);
    }
    return false;
  }

  /** Take one request from the queue if one fits now; true when an attempt started. */
  private async takeOne(backend: QueueBackend, name: string): Promise<boolean> {
    const parsed = new WeakMap<Uint8Array, Request>();
    const queue = backend.open(name);
    const id = `${backend.kind}:${name}`;
    // The Go runner's rule: a queue whose last request needed more than is free now is not asked
    // again until something was released (or a while has passed: the request may be gone).
    const last = this.lastNeeds.get(id);
    if (
      last &&
      last.releasesSeen === this.releases &&
      !this.pool.fitsNow(last.resources) &&
      this.now() - last.seenMs < RECHECK_BLOCKED_QUEUE_MS
    )
      return false;
    const held = this.heldFor(id);
    let looked = false;
    let delivery;
    try {
      delivery = await queue.receive({
        accept: (body) => {
          looked = true;
          let request: Request;
          try {
            request = (this.ctx.readRequest ?? plainRequestReader)(body, name);
          } catch (err) {
            // The runner's own key is unreadable just now: leave the message for later.
            if (err instanceof RetryableError) return false;
            return true; // take it, so the attempt can keep it in the failed place with the reason
          }
          const resources = request.experiment.resources;
          const now = this.now();
          const before = this.waiting.get(id);
          const needs = {
            resources,
            key: request.experiment.key,
            seenMs: now,
            releasesSeen: this.releases,
            sinceMs: before?.key === request.experiment.key ? before.sinceMs : now,
          };
          this.lastNeeds.set(id, needs);
          // Another request of this queue (the first one seen that did not fit) still waits: work
          // behind it in the same queue is held back for it too, as other queues' work is.
          const ownWaiting =
            before && before.key !== needs.key && now - before.seenMs <= FORGET_WAITING_MS ? before : undefined;
          const never = this.pool.neverFits(resources);
          if (never) {
            if (!ownWaiting) this.waiting.delete(id);
            if (!this.warnedNeverFits.has(request.experiment.key)) {
              this.warnedNeverFits.add(request.experiment.key);
              this.ctx.log.warn(
                `leaving experiment ${request.experiment.key} in ${name} for a bigger runner: ${never}`,
              );
            }
            return false;
          }
          if (!this.pool.fitsNow(resources)) {
            if (ownWaiting) return false; // the queue's earlier request keeps its place
            if (before?.key !== needs.key) {
              this.ctx.log.info(
                `experiment ${needs.key} in ${name} waits for resources; ` +
                  "other work is taken only where it leaves room for it",
              );
            }
            // Re-inserted only when new, so the map stays ordered oldest first.
            if (before) Object.assign(before, needs);
            else this.waiting.set(id, needs);
            return false;
          }
          const holdFor = held ?? ownWaiting;
          if (holdFor && !this.pool.fitsAlongside(resources, holdFor.resources)) return false;
          if (!ownWaiting) this.waiting.delete(id);
          parsed.set(body, request);
          return true;
        },
      });
    } catch (err) {
      this.ctx.log.warn(`receive from ${backend.kind} queue ${name} failed: ${errorMessage(err)}`);
      return false;
    }
    if (!delivery) {
      if (!looked) {
        // Nothing there (any more): nothing to hold back for.
        this.waiting.delete(id);
        this.lastNeeds.delete(id);
      }
      return false;
    }
    const request = parsed.get(delivery.body);
    const admission = this.ctx.admission;
    if (request && admission) {
      // Too old, or a replay of a completed experiment: kept in the failed place with the reason.
      const refusal = admission.refusal(request, delivery);
      if (refusal) {
        await delivery
          .reject(refusal)
          .catch((err) =>
            this.ctx.log.warn(`could not keep ${request.experiment.key} in the failed place: ${errorMessage(err)}`),
          );
        this.ctx.log.error(`experiment ${request.experiment.key} rejected: ${refusal}`);
        return true;
      }
      delivery = admission.track(delivery, request);
    }
    let reservation = request ? this.pool.reserve(request.experiment.resources) : undefined;
    if (request && !reservation) {
      // Backends that cannot look first: give it back without counting.
      await delivery.nack("does not fit this runner now", { countDelivery: false });
      return false;
    }
    this.taken++;
    const attempt = this.attempt(
      delivery,
      this.ctx,
      {
        shutdown: this.shutdown.signal,
        force: this.force.signal,
        shutdownGraceMs: this.limits.shutdownGraceMs,
        source: backend.kind,
      },
      reservation,
      request,
    )
      .catch((err): AttemptOutcome => {
        this.ctx.log.error(`attempt crashed: ${errorMessage(err)}`);
        return { kind: "failed", reason: errorMessage(err) };
      })
      .finally(() => {
        reservation?.release();
        reservation = undefined;
        this.releases++;
        this.running.delete(attempt);
        this.lastBusyMs = this.now();
        this.wake?.();
      });
    this.running.add(attempt);
    return true;
  }
}
