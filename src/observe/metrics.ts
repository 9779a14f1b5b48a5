// Prometheus metrics for /metrics: the Go runner's metric names where it has them, plus experiment
// outcomes, phase durations, bytes moved, resources and GPUs in use, fed by the runner's events.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { GpuAllocator } from "../gpu/allocator.ts";
import type { PoolSnapshot } from "../resources/pool.ts";
import type { AttemptResult, RunnerEvents, RunnerState } from "./events.ts";

export type MetricsSources = {
  events: RunnerEvents;
  host: string;
  runnerId: string;
  version: string;
  /** The pool's accounting, read at each scrape. */
  pool?: () => PoolSnapshot;
  /** The GPU allocator, read at each scrape; absent with --cpu-only. */
  gpus?: GpuAllocator;
  /** --gpu-slots-per-card. */
  gpuSlotsPerCard?: number;
  /** The runner's state now (SIGTERM's drain is not an event). */
  state?: () => RunnerState;
  /** Process metrics (CPU, memory, handles); on by default. */
  processMetrics?: boolean;
};

/** Buckets of the duration histograms, in seconds: 0.1 s to a day. */
const DURATION_BUCKETS_S = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 43_200, 86_400];

const RESULTS: AttemptResult[] = ["succeeded", "failed", "requeued", "poisoned", "rejected"];
const STATES: RunnerState[] = ["running", "suspended", "terminating"];

type ProjectLabels = { host: string; queue_type: string; queue_name: string; project: string; experiment: string };

export class RunnerMetrics {
  readonly registry = new Registry();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(sources: MetricsSources) {
    const { events, host } = sources;
    const registers = [this.registry];
    if (sources.processMetrics !== false) collectDefaultMetrics({ register: this.registry });

    new Gauge({
      name: "runner_info",
      help: "Always 1; the runner's identity in its labels.",
      labelNames: ["host", "runner_id", "version"],
      registers,
    }).set({ host, runner_id: sources.runnerId, version: sources.version }, 1);

    // The Go runner's names and labels (studio-go-runner docs/metrics.md); "project" of the refresh
    // counters is the queue backend here (local, rabbitmq, sqs, pubsub).
    const refreshOk = new Counter({
      name: "runner_queue_refresh_success",
      help: "Number of successful queue inventory checks.",
      labelNames: ["host", "project"],
      registers,
    });
    const refreshFail = new Counter({
      name: "runner_queue_refresh_fail",
      help: "Number of failed queue inventory checks.",
      labelNames: ["host", "project"],
      registers,
    });
    const checked = new Counter({
      name: "runner_queue_checked",
      help: "Number of times a queue is queried for work.",
      labelNames: ["host", "queue_type", "queue_name"],
      registers,
    });
    const ignored = new Counter({
      name: "runner_queue_ignored",
      help: "Number of times a queue was queried and no work was taken from it (empty, or its work did not fit now).",
      labelNames: ["host", "queue_type", "queue_name"],
      registers,
    });
    const projectRunning = new Gauge({
      name: "runner_project_running",
      help: "Number of experiments being actively worked on per queue.",
      labelNames: ["host", "queue_type", "queue_name", "project", "experiment"],
      registers,
    });
    const projectCompleted = new Counter({
      name: "runner_project_completed",
      help: "Number of experiments that have been run per queue.",
      labelNames: ["host", "queue_type", "queue_name", "project", "experiment"],
      registers,
    });
    const cacheHits = new Counter({
      name: "runner_cache_hits",
      help: "Number of cache hits (cache: artifact or venv).",
      labelNames: ["host", "cache"],
      registers,
    });
    const cacheMisses = new Counter({
      name: "runner_cache_misses",
      help: "Number of cache misses (cache: artifact or venv).",
      labelNames: ["host", "cache"],
      registers,
    });

    // This runner's own.
    const started = new Counter({
      name: "runner_experiments_started_total",
      help: "Attempts started (the request was read and is valid).",
      labelNames: ["queue_type", "queue_name"],
      registers,
    });
    const ended: Record<AttemptResult, Counter<"queue_type" | "queue_name">> = Object.fromEntries(
      RESULTS.map((result) => [
        result,
        new Counter({
          name: `runner_experiments_${result}_total`,
          help: RESULT_HELP[result],
          labelNames: ["queue_type", "queue_name"],
          registers,
        }),
      ]),
    ) as Record<AttemptResult, Counter<"queue_type" | "queue_name">>;
    const running = new Gauge({ name: "runner_experiments_running", help: "Attempts running now.", registers });
    const phaseSeconds = new Histogram({
      name: "runner_phase_duration_seconds",
      help: "How long each phase of an attempt took (claim, fetch, environment, run, upload, ack).",
      labelNames: ["phase"],
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    const attemptSeconds = new Histogram({
      name: "runner_experiment_duration_seconds",
      help: "How long attempts took, by result.",
      labelNames: ["result"],
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    const downloaded = new Counter({
      name: "runner_download_bytes_total",
      help: "Bytes downloaded from storage (cache hits move nothing).",
      registers,
    });
    const uploaded = new Counter({ name: "runner_upload_bytes_total", help: "Bytes uploaded to storage.", registers });
    const passes = new Counter({
      name: "runner_poll_passes_total",
      help: "Passes of the runner's poll loop.",
      registers,
    });
    const lastPass = new Gauge({
      name: "runner_last_poll_timestamp_seconds",
      help: "Unix time of the poll loop's last pass.",
      registers,
    });
    const state = sources.state;
    new Gauge({
      name: "runner_state",
      help:
        "1 for the runner's state now: running (taking work), suspended (drained, waiting), terminating (exits " +
        "when idle).",
      labelNames: ["state"],
      registers,
      collect() {
        const now = state?.() ?? "running";
        for (const s of STATES) this.set({ state: s }, s === now ? 1 : 0);
      },
    });

    const pool = sources.pool;
    if (pool) {
      const resource = (name: string, help: string, pick: (s: PoolSnapshot) => number) =>
        new Gauge({
          name,
          help,
          registers,
          collect() {
            this.set(pick(pool()));
          },
        });
      resource("runner_cpus_total", "CPUs this runner hands out (--max-cores).", (s) => s.capacity.cpus);
      resource("runner_cpus_allocated", "CPUs reserved by running experiments.", (s) => s.used.cpus);
      resource("runner_ram_total_bytes", "RAM this runner hands out (--max-mem).", (s) => s.capacity.ramBytes);
      resource("runner_ram_allocated_bytes", "RAM reserved by running experiments.", (s) => s.used.ramBytes);
      resource("runner_disk_total_bytes", "Disk this runner hands out (--max-disk).", (s) => s.capacity.hddBytes);
      resource("runner_disk_allocated_bytes", "Disk reserved by running experiments.", (s) => s.used.hddBytes);
    }
    const gpus = sources.gpus;
    const slotsPerCard = Math.max(1, sources.gpuSlotsPerCard ?? 1);
    if (gpus || pool) {
      const gauge = (name: string, help: string, value: () => number) =>
        new Gauge({
          name,
          help,
          registers,
          collect() {
            this.set(value());
          },
        });
      gauge("runner_gpu_cards_total", "GPU cards in service.", () =>
        gpus ? gpus.totalCards : (pool?.().capacity.gpus ?? 0),
      );
      gauge("runner_gpu_cards_allocated", "GPU cards in service held by running experiments (whole or shared).", () =>
        gpus ? gpus.totalCards - gpus.freeCards : (pool?.().used.gpus ?? 0),
      );
      gauge("runner_gpu_slots_total", "GPU slots: cards in service times --gpu-slots-per-card.", () =>
        gpus ? gpus.totalCards * slotsPerCard : (pool?.().capacity.gpus ?? 0),
      );
      gauge("runner_gpu_slots_allocated", "GPU slots requested by running experiments.", () => pool?.().used.gpus ?? 0);
    }
    // Only where NVML reports cards: without NVML the metric is absent.
    if (gpus && gpus.state.length > 0) {
      new Gauge({
        name: "runner_gpu_utilization_ratio",
        help: "GPU utilisation (0 to 1) at the last NVML read (--gpu-refresh-interval).",
        labelNames: ["uuid", "index"],
        registers,
        collect() {
          this.reset();
          for (const card of gpus.state) {
            if (card.utilizationGpuPct !== undefined)
              this.set({ uuid: card.uuid, index: String(card.index) }, card.utilizationGpuPct / 100);
          }
        },
      });
    }

    const projectOf = new Map<string, ProjectLabels>();
    const runningPerProject = new Map<string, number>();
    const labelKey = (l: ProjectLabels) => JSON.stringify(l);
    this.unsubscribe.push(
      events.on("poll", (e) => {
        passes.inc();
        lastPass.set(e.atMs / 1000);
      }),
      events.on("queues.refreshed", (e) => refreshOk.inc({ host, project: e.source })),
      events.on("queues.failed", (e) => refreshFail.inc({ host, project: e.source })),
      events.on("queue.checked", (e) => {
        checked.inc({ host, queue_type: e.source, queue_name: e.queue });
        if (!e.took) ignored.inc({ host, queue_type: e.source, queue_name: e.queue });
      }),
      events.on("attempt.started", (e) => {
        started.inc({ queue_type: e.source, queue_name: e.queue });
        running.inc();
        const labels: ProjectLabels = {
          host,
          queue_type: e.source,
          queue_name: e.queue,
          project: e.project ?? "",
          experiment: e.key,
        };
        projectOf.set(e.attemptId, labels);
        const k = labelKey(labels);
        runningPerProject.set(k, (runningPerProject.get(k) ?? 0) + 1);
        projectRunning.set(labels, runningPerProject.get(k)!);
      }),
      events.on("attempt.phase", (e) => {
        if (e.previous && e.previousMs !== undefined) phaseSeconds.observe({ phase: e.previous }, e.previousMs / 1000);
      }),
      events.on("attempt.finished", (e) => {
        ended[e.result].inc({ queue_type: e.source, queue_name: e.queue });
        attemptSeconds.observe({ result: e.result }, e.durationMs / 1000);
        if (e.lastPhase && e.lastPhaseMs !== undefined)
          phaseSeconds.observe({ phase: e.lastPhase }, e.lastPhaseMs / 1000);
        const labels = projectOf.get(e.attemptId);
        if (!labels) return; // ended before it started (unreadable request)
        projectOf.delete(e.attemptId);
        running.dec();
        projectCompleted.inc(labels);
        const k = labelKey(labels);
        const left = (runningPerProject.get(k) ?? 1) - 1;
        if (left > 0) {
          runningPerProject.set(k, left);
          projectRunning.set(labels, left);
        } else {
          runningPerProject.delete(k);
          projectRunning.remove(labels);
        }
      }),
      events.on("bytes", (e) => (e.direction === "download" ? downloaded : uploaded).inc(e.bytes)),
      events.on("cache", (e) => (e.hit ? cacheHits : cacheMisses).inc({ host, cache: e.cache })),
    );
  }

  /** The exposition text for a scrape. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stop listening to the events (the registry keeps its values). */
  close(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }
}

const RESULT_HELP: Record<AttemptResult, string> = {
  succeeded: "Attempts whose script exited 0, results uploaded and the request acked.",
  failed: "Attempts whose script failed (exit code not 0, killed, time limit); a finished experiment, acked.",
  requeued: "Attempts given back to the queue (runner-side fault or shutdown).",
  poisoned: "Requests moved to the failed place after a runner-side fault used up their deliveries (--max-deliveries).",
  rejected:
    "Requests kept in the failed place at once: malformed, expired, or a permanent fault (unusable artifact, no " +
    "matching Python).",
};
