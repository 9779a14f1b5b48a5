// The runner's event stream: the poll loop and each attempt say what happens (queues polled,
// phases entered, log lines, outcomes, bytes moved, cache hits), and observers — metrics, health,
// the status page, response-queue reports — listen. Emitting never throws and never waits.

/** The steps of an attempt, in order, as observers see them. */
export type AttemptPhase = "claim" | "fetch" | "environment" | "run" | "upload" | "ack";

/** How an attempt ended (AttemptOutcome.kind, with finished split by the script's exit). */
export type AttemptResult = "succeeded" | "failed" | "requeued" | "poisoned" | "rejected";

export type AttemptIdentity = {
  /** The experiment key. */
  key: string;
  /** Unique per attempt (runner id + uuid). */
  attemptId: string;
  /** Queue backend kind ("local", "rabbitmq", "sqs", "pubsub"). */
  source: string;
  queue: string;
};

export type RunnerEventMap = {
  /** One pass of the poll loop finished (health: the loop is alive). */
  "poll": { atMs: number };
  /** A backend listed its queues: the ones served, and how many were filtered out. */
  "queues.refreshed": { source: string; queues: string[]; ignored: number };
  /** A backend could not list its queues. */
  "queues.failed": { source: string; error: string };
  /** One queue was asked for work; took = a request was taken from it. */
  "queue.checked": { source: string; queue: string; took: boolean };
  /** An attempt began (after the request was read). */
  "attempt.started": AttemptIdentity & {
    deliveryCount: number;
    experimenter?: string;
    project?: string;
    gpus: string[];
    resources: { cpus: number; ramBytes: number; hddBytes: number; gpus: number };
    startedAtMs: number;
  };
  /** The attempt entered a phase; the previous phase (if any) lasted previousMs. */
  "attempt.phase": AttemptIdentity & { phase: AttemptPhase; previous?: AttemptPhase; previousMs?: number };
  /** One line of the experiment's log (already masked). */
  "attempt.log": AttemptIdentity & { line: string };
  /** The attempt ended. */
  "attempt.finished": AttemptIdentity & {
    result: AttemptResult;
    reason: string;
    exitCode?: number | null;
    durationMs: number;
    lastPhase?: AttemptPhase;
    lastPhaseMs?: number;
  };
  /** Bytes moved to or from storage. */
  "bytes": { direction: "download" | "upload"; bytes: number };
  /** A cache lookup: artifacts or python environments. */
  "cache": { cache: "artifact" | "venv"; hit: boolean };
  /** The poll loop ended for good (drain, --limit-tasks, --limit-idle-duration): the runner exits once its running
   * experiments end. */
  "loop.ended": { atMs: number };
  /** The runner stopped or resumed taking work. */
  "runner.state": { state: RunnerState; reason: string };
};

/** running: taking work; suspended: drained, waiting to resume; terminating: drained, will exit. */
export type RunnerState = "running" | "suspended" | "terminating";

export type RunnerEventName = keyof RunnerEventMap;
type Listener<E extends RunnerEventName> = (event: RunnerEventMap[E]) => void;

export class RunnerEvents {
  private readonly listeners = new Map<RunnerEventName, Set<Listener<never>>>();

  on<E extends RunnerEventName>(name: E, listener: Listener<E>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<E extends RunnerEventName>(name: E, event: RunnerEventMap[E]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<E>)(event);
      } catch {
        // An observer's fault must never reach the runner.
      }
    }
  }
}

/** Phase bookkeeping for one attempt: emits attempt.phase with the previous phase's duration. */
export class PhaseClock {
  private current?: AttemptPhase;
  private sinceMs = performance.now();

  constructor(
    private readonly events: RunnerEvents | undefined,
    private readonly who: AttemptIdentity,
  ) {}

  enter(phase: AttemptPhase): void {
    if (phase === this.current) return;
    const now = performance.now();
    const previous = this.current;
    const previousMs = previous ? now - this.sinceMs : undefined;
    this.current = phase;
    this.sinceMs = now;
    this.events?.emit("attempt.phase", { ...this.who, phase, previous, previousMs });
  }

  /** The phase the attempt is in and for how long, for the finish event. */
  last(): { lastPhase?: AttemptPhase; lastPhaseMs?: number } {
    return this.current ? { lastPhase: this.current, lastPhaseMs: performance.now() - this.sinceMs } : {};
  }
}
