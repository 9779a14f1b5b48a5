// What /status and the status page show, kept up to date from the runner's events: identity,
// state, queues, running experiments with their phase (and log tail with --status-logs: the
// endpoint's GETs are open, so by default one experimenter's output is not shown to whoever can
// reach it), recent outcomes, resources. Reasons and errors pass through the secret masker.

import type { GpuAllocator } from "../gpu/allocator.ts";
import type { Capacity, PoolSnapshot } from "../resources/pool.ts";
import { SecretMasker } from "../log/secret-mask.ts";
import type { AttemptPhase, AttemptResult, RunnerEvents, RunnerState } from "./events.ts";
import type { HealthReport, ReadyReport } from "./health.ts";

/** Log lines kept per running experiment. */
export const LOG_TAIL_LINES = 50;
/** Finished attempts kept, newest first. */
export const FINISHED_KEPT = 20;
/** Longest log line kept, in characters (a job may print megabytes on one line). */
const MAX_LINE_CHARS = 2_000;

export type RunningExperiment = {
  attemptId: string;
  key: string;
  source: string;
  queue: string;
  deliveryCount: number;
  experimenter?: string;
  project?: string;
  phase?: AttemptPhase;
  phaseSince?: string;
  startedAt: string;
  elapsedMs: number;
  gpus: string[];
  resources: { cpus: number; ramBytes: number; hddBytes: number; gpus: number };
  /** The last log lines, only with --status-logs (anyone who can reach the endpoint reads them). */
  log?: string[];
};

export type FinishedExperiment = {
  attemptId: string;
  key: string;
  source: string;
  queue: string;
  result: AttemptResult;
  reason: string;
  exitCode?: number | null;
  durationMs: number;
  lastPhase?: AttemptPhase;
  finishedAt: string;
};

export type QueueStatus = {
  source: string;
  name: string;
  /** Listed by the last discovery of its backend. */
  served: boolean;
  lastCheckedAt?: string;
  lastTookAt?: string;
  checks: number;
  taken: number;
};

export type SourceStatus = {
  source: string;
  queues: number;
  lastRefreshAt?: string;
  lastError?: string;
  lastErrorAt?: string;
};

export type GpuStatus = {
  index: number;
  uuid: string;
  memTotalBytes: number;
  inService: boolean;
  allocated: boolean;
  sharedCount: number;
  utilizationGpuPct?: number;
};

export type StatusDoc = {
  runner: {
    id: string;
    version: string;
    host: string;
    pid: number;
    startedAt: string;
    uptimeMs: number;
    state: RunnerState;
    stateReason?: string;
    healthy?: boolean;
    ready?: boolean;
    healthReason?: string;
    lastPollAt?: string;
  };
  resources?: { capacity: Capacity; used: Capacity; reservations: number };
  gpus: { slotsPerCard: number; cards: GpuStatus[] };
  sources: SourceStatus[];
  queues: QueueStatus[];
  running: RunningExperiment[];
  finished: FinishedExperiment[];
  totals: Record<"started" | AttemptResult, number>;
  now: string;
};

export type StatusSources = {
  events: RunnerEvents;
  runnerId: string;
  version: string;
  host: string;
  state: () => RunnerState;
  pool?: () => PoolSnapshot;
  gpus?: GpuAllocator;
  gpuSlotsPerCard?: number;
  health?: () => HealthReport;
  ready?: () => ReadyReport;
  nowMs?: () => number;
  /** Keep and show each running experiment's last log lines (--status-logs); off, none are kept. */
  logs?: boolean;
};

type Running = Omit<RunningExperiment, "elapsedMs" | "startedAt" | "phaseSince" | "log"> & {
  startedAtMs: number;
  phaseSinceMs?: number;
  log: string[];
};

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

export class StatusState {
  private readonly startedAtMs: number;
  private readonly nowMs: () => number;
  private readonly running = new Map<string, Running>();
  private readonly finished: FinishedExperiment[] = [];
  private readonly queues = new Map<
    string,
    Omit<QueueStatus, "lastCheckedAt" | "lastTookAt"> & { lastCheckedMs?: number; lastTookMs?: number }
  >();
  private readonly sources = new Map<
    string,
    { queues: number; lastRefreshMs?: number; lastError?: string; lastErrorMs?: number }
  >();
  private readonly totals: StatusDoc["totals"] = {
    started: 0,
    succeeded: 0,
    failed: 0,
    requeued: 0,
    poisoned: 0,
    rejected: 0,
  };
  private readonly masker = new SecretMasker();
  private stateReason?: string;
  private lastPollMs?: number;
  private readonly offs: Array<() => void>;

  constructor(private readonly sources_: StatusSources) {
    this.nowMs = sources_.nowMs ?? Date.now;
    this.startedAtMs = this.nowMs();
    const { events } = sources_;
    this.offs = [
      events.on("poll", (e) => (this.lastPollMs = e.atMs)),
      events.on("queues.refreshed", (e) => {
        const listed = new Set(e.queues);
        for (const name of e.queues) this.queue(e.source, name);
        for (const q of this.queues.values()) if (q.source === e.source) q.served = listed.has(q.name);
        const s = this.source(e.source);
        s.queues = e.queues.length;
        s.lastRefreshMs = this.nowMs();
      }),
      events.on("queues.failed", (e) => {
        const s = this.source(e.source);
        s.lastError = this.masker.mask(e.error);
        s.lastErrorMs = this.nowMs();
      }),
      events.on("queue.checked", (e) => {
        const q = this.queue(e.source, e.queue);
        q.checks++;
        q.lastCheckedMs = this.nowMs();
        if (e.took) {
          q.taken++;
          q.lastTookMs = q.lastCheckedMs;
        }
      }),
      events.on("attempt.started", (e) => {
        this.totals.started++;
        this.running.set(e.attemptId, {
          attemptId: e.attemptId,
          key: e.key,
          source: e.source,
          queue: e.queue,
          deliveryCount: e.deliveryCount,
          experimenter: e.experimenter,
          project: e.project,
          startedAtMs: e.startedAtMs,
          gpus: [...e.gpus],
          resources: { ...e.resources },
          log: [],
        });
      }),
      events.on("attempt.phase", (e) => {
        const r = this.running.get(e.attemptId);
        if (!r) return;
        r.phase = e.phase;
        r.phaseSinceMs = this.nowMs();
      }),
      events.on("attempt.log", (e) => {
        if (!sources_.logs) return;
        const r = this.running.get(e.attemptId);
        if (!r) return;
        r.log.push(e.line.length > MAX_LINE_CHARS ? `${e.line.slice(0, MAX_LINE_CHARS)}…` : e.line);
        if (r.log.length > LOG_TAIL_LINES) r.log.splice(0, r.log.length - LOG_TAIL_LINES);
      }),
      events.on("attempt.finished", (e) => {
        this.running.delete(e.attemptId);
        this.totals[e.result]++;
        this.finished.unshift({
          attemptId: e.attemptId,
          key: e.key,
          source: e.source,
          queue: e.queue,
          result: e.result,
          reason: this.masker.mask(e.reason),
          exitCode: e.exitCode,
          durationMs: Math.round(e.durationMs),
          lastPhase: e.lastPhase,
          finishedAt: new Date(this.nowMs()).toISOString(),
        });
        if (this.finished.length > FINISHED_KEPT) this.finished.length = FINISHED_KEPT;
      }),
      events.on("runner.state", (e) => (this.stateReason = e.reason)),
    ];
  }

  private queue(source: string, name: string) {
    const id = `${source}:${name}`;
    let q = this.queues.get(id);
    if (!q) this.queues.set(id, (q = { source, name, served: true, checks: 0, taken: 0 }));
    return q;
  }

  private source(source: string) {
    let s = this.sources.get(source);
    if (!s) this.sources.set(source, (s = { queues: 0 }));
    return s;
  }

  /** The document /status serves. */
  snapshot(): StatusDoc {
    const src = this.sources_;
    const now = this.nowMs();
    const health = src.health?.();
    const ready = src.ready?.();
    const pool = src.pool?.();
    const gpus = src.gpus;
    return {
      runner: {
        id: src.runnerId,
        version: src.version,
        host: src.host,
        pid: process.pid,
        startedAt: iso(this.startedAtMs)!,
        uptimeMs: now - this.startedAtMs,
        state: src.state(),
        stateReason: this.stateReason,
        healthy: health?.healthy,
        ready: ready?.ready,
        healthReason: health && !health.healthy ? health.reason : ready && !ready.ready ? ready.reason : undefined,
        lastPollAt: iso(this.lastPollMs),
      },
      resources: pool ? { capacity: pool.capacity, used: pool.used, reservations: pool.reservations } : undefined,
      gpus: {
        slotsPerCard: Math.max(1, src.gpuSlotsPerCard ?? 1),
        cards: (gpus?.state ?? []).map((c) => ({
          index: c.index,
          uuid: c.uuid,
          memTotalBytes: c.memTotalBytes,
          inService: c.inService,
          allocated: c.wholeBy !== undefined || c.sharedCount > 0,
          sharedCount: c.sharedCount,
          utilizationGpuPct: c.utilizationGpuPct,
        })),
      },
      sources: [...this.sources.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([source, s]) => ({
          source,
          queues: s.queues,
          lastRefreshAt: iso(s.lastRefreshMs),
          lastError: s.lastError,
          lastErrorAt: iso(s.lastErrorMs),
        })),
      queues: [...this.queues.values()]
        .sort((a, b) => a.source.localeCompare(b.source) || a.name.localeCompare(b.name))
        .map(({ lastCheckedMs, lastTookMs, ...q }) => ({
          ...q,
          lastCheckedAt: iso(lastCheckedMs),
          lastTookAt: iso(lastTookMs),
        })),
      running: [...this.running.values()]
        .sort((a, b) => a.startedAtMs - b.startedAtMs)
        .map(({ startedAtMs, phaseSinceMs, log, ...r }) => ({
          ...r,
          gpus: [...r.gpus],
          startedAt: iso(startedAtMs)!,
          phaseSince: iso(phaseSinceMs),
          elapsedMs: Math.max(0, now - startedAtMs),
          ...(src.logs ? { log: [...log] } : {}),
        })),
      finished: this.finished.map((f) => ({ ...f })),
      totals: { ...this.totals },
      now: iso(now)!,
    };
  }

  close(): void {
    for (const off of this.offs.splice(0)) off();
  }
}
