// The /metrics observer fed with real runner events, a real ResourcePool and a real GpuAllocator
// (synthetic cards): the Go runner's metric names, outcome counters, phase histograms, bytes, GPUs.

import { expect, test } from "bun:test";
import { GpuAllocator } from "../../src/gpu/allocator.ts";
import { RunnerEvents, type AttemptIdentity } from "../../src/observe/events.ts";
import { RunnerMetrics } from "../../src/observe/metrics.ts";
import { ResourcePool } from "../../src/resources/pool.ts";
import { syntheticCard } from "../helpers/synthetic-gpus.ts";

const GiB = 1024 ** 3;

/** The value of one sample line (name with its labels as printed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const who = (n: number): AttemptIdentity => ({
  key: `exp-${n}`,
  attemptId: `att-${n}`,
  source: "local",
  queue: "local_q",
});
const resources = { cpus: 1, ramBytes: GiB, hddBytes: GiB, gpus: 0 };

function start(events: RunnerEvents, n: number, project = "proj") {
  events.emit("attempt.started", {
    ...who(n),
    deliveryCount: 1,
    project,
    gpus: [],
    resources,
    startedAtMs: Date.now(),
  });
}

test("queue counters use the Go runner's names and labels", async () => {
  const events = new RunnerEvents();
  const m = new RunnerMetrics({ events, host: "h1", runnerId: "r1", version: "9.9.9", processMetrics: false });
  events.emit("queues.refreshed", { source: "local", queues: ["local_q"], ignored: 0 });
  events.emit("queues.refreshed", { source: "local", queues: ["local_q"], ignored: 0 });
  events.emit("queues.failed", { source: "rabbitmq", error: "management API unreachable" });
  events.emit("queue.checked", { source: "local", queue: "local_q", took: true });
  events.emit("queue.checked", { source: "local", queue: "local_q", took: false });
  events.emit("cache", { cache: "venv", hit: true });
  events.emit("cache", { cache: "artifact", hit: false });
  const text = await m.text();
  expect(sample(text, 'runner_queue_refresh_success{host="h1",project="local"}')).toBe(2);
  expect(sample(text, 'runner_queue_refresh_fail{host="h1",project="rabbitmq"}')).toBe(1);
  expect(sample(text, 'runner_queue_checked{host="h1",queue_type="local",queue_name="local_q"}')).toBe(2);
  expect(sample(text, 'runner_queue_ignored{host="h1",queue_type="local",queue_name="local_q"}')).toBe(1);
  expect(sample(text, 'runner_cache_hits{host="h1",cache="venv"}')).toBe(1);
  expect(sample(text, 'runner_cache_misses{host="h1",cache="artifact"}')).toBe(1);
  expect(sample(text, 'runner_info{host="h1",runner_id="r1",version="9.9.9"}')).toBe(1);
  expect(text).not.toContain("process_cpu_seconds_total");
});

test("outcomes, running experiments, phase durations and bytes", async () => {
  const events = new RunnerEvents();
  const m = new RunnerMetrics({ events, host: "h1", runnerId: "r1", version: "1" });
  for (const n of [1, 2, 3]) start(events, n);
  events.emit("attempt.phase", { ...who(1), phase: "fetch" });
  events.emit("attempt.phase", { ...who(1), phase: "run", previous: "fetch", previousMs: 1500 });
  events.emit("bytes", { direction: "download", bytes: 1000 });
  events.emit("bytes", { direction: "upload", bytes: 250 });
  events.emit("bytes", { direction: "upload", bytes: 250 });
  let text = await m.text();
  expect(sample(text, "runner_experiments_running")).toBe(3);
  expect(
    sample(
      text,
      'runner_project_running{host="h1",queue_type="local",queue_name="local_q",project="proj",experiment="exp-1"}',
    ),
  ).toBe(1);
  expect(sample(text, 'runner_phase_duration_seconds_count{phase="fetch"}')).toBe(1);
  expect(sample(text, 'runner_phase_duration_seconds_sum{phase="fetch"}')).toBe(1.5);
  expect(sample(text, 'runner_phase_duration_seconds_bucket{le="2.5",phase="fetch"}')).toBe(1);
  expect(sample(text, 'runner_phase_duration_seconds_bucket{le="1",phase="fetch"}')).toBe(0);
  expect(sample(text, "runner_download_bytes_total")).toBe(1000);
  expect(sample(text, "runner_upload_bytes_total")).toBe(500);

  events.emit("attempt.finished", {
    ...who(1),
    result: "succeeded",
    reason: "exited with code 0",
    exitCode: 0,
    durationMs: 4000,
    lastPhase: "ack",
    lastPhaseMs: 20,
  });
  events.emit("attempt.finished", {
    ...who(2),
    result: "failed",
    reason: "exited with code 1",
    exitCode: 1,
    durationMs: 3000,
  });
  events.emit("attempt.finished", { ...who(3), result: "requeued", reason: "storage down", durationMs: 100 });
  // Refused before it started: counted as rejected, never as running.
  events.emit("attempt.finished", { ...who(4), result: "rejected", reason: "bad request", durationMs: 1 });
  text = await m.text();
  expect(sample(text, "runner_experiments_running")).toBe(0);
  expect(sample(text, 'runner_experiments_started_total{queue_type="local",queue_name="local_q"}')).toBe(3);
  expect(sample(text, 'runner_experiments_succeeded_total{queue_type="local",queue_name="local_q"}')).toBe(1);
  expect(sample(text, 'runner_experiments_failed_total{queue_type="local",queue_name="local_q"}')).toBe(1);
  expect(sample(text, 'runner_experiments_requeued_total{queue_type="local",queue_name="local_q"}')).toBe(1);
  expect(sample(text, 'runner_experiments_rejected_total{queue_type="local",queue_name="local_q"}')).toBe(1);
  expect(
    sample(
      text,
      'runner_project_completed{host="h1",queue_type="local",queue_name="local_q",project="proj",experiment="exp-1"}',
    ),
  ).toBe(1);
  expect(text).not.toContain(
    'runner_project_running{host="h1",queue_type="local",queue_name="local_q",project="proj",experiment="exp-1"}',
  );
  expect(sample(text, 'runner_phase_duration_seconds_count{phase="ack"}')).toBe(1);
  expect(sample(text, 'runner_experiment_duration_seconds_count{result="succeeded"}')).toBe(1);
  // Default process metrics are there.
  expect(text).toContain("process_cpu_seconds_total");
  m.close();
});

test("resources and GPUs in use against capacity, utilisation from the cards, runner state", async () => {
  const events = new RunnerEvents();
  const gpus = new GpuAllocator(
    [syntheticCard(0, 80, { utilizationGpuPct: 40 }), syntheticCard(1, 80, { utilizationGpuPct: 0 })],
    { slotsPerCard: 2 },
  );
  const pool = new ResourcePool({ cpus: 8, ramBytes: 64 * GiB, hddBytes: 100 * GiB, gpus: 2 }, gpus);
  let state: "running" | "suspended" = "running";
  const m = new RunnerMetrics({
    events,
    host: "h",
    runnerId: "r",
    version: "1",
    pool: () => pool.snapshot(),
    gpus,
    gpuSlotsPerCard: 2,
    state: () => state,
    processMetrics: false,
  });
  const held = pool.reserve({ cpus: 3, ramBytes: 8 * GiB, hddBytes: 10 * GiB, gpus: 2, gpuMemBytes: 0 })!;
  expect(held.gpuUuids).toHaveLength(1);
  state = "suspended";
  let text = await m.text();
  expect(sample(text, "runner_cpus_total")).toBe(8);
  expect(sample(text, "runner_cpus_allocated")).toBe(3);
  expect(sample(text, "runner_ram_allocated_bytes")).toBe(8 * GiB);
  expect(sample(text, "runner_disk_total_bytes")).toBe(100 * GiB);
  expect(sample(text, "runner_gpu_cards_total")).toBe(2);
  expect(sample(text, "runner_gpu_cards_allocated")).toBe(1);
  expect(sample(text, "runner_gpu_slots_total")).toBe(4);
  expect(sample(text, "runner_gpu_slots_allocated")).toBe(2);
  expect(sample(text, `runner_gpu_utilization_ratio{uuid="${syntheticCard(0, 80).uuid}",index="0"}`)).toBe(0.4);
  expect(sample(text, 'runner_state{state="suspended"}')).toBe(1);
  expect(sample(text, 'runner_state{state="running"}')).toBe(0);
  held.release();
  text = await m.text();
  expect(sample(text, "runner_cpus_allocated")).toBe(0);
  expect(sample(text, "runner_gpu_cards_allocated")).toBe(0);
});

test("without NVML cards the utilisation metric is absent", async () => {
  const events = new RunnerEvents();
  const pool = new ResourcePool({ cpus: 2, ramBytes: GiB, hddBytes: GiB, gpus: 0 });
  const m = new RunnerMetrics({
    events,
    host: "h",
    runnerId: "r",
    version: "1",
    pool: () => pool.snapshot(),
    gpus: new GpuAllocator([]),
    processMetrics: false,
  });
  const text = await m.text();
  expect(text).not.toContain("runner_gpu_utilization_ratio");
  expect(sample(text, "runner_gpu_cards_total")).toBe(0);
});
