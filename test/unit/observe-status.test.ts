// The /status document built from real runner events and a real ResourcePool: queues with their
// last check and take, running experiments with phase and a bounded log tail, the last finished
// ones newest first with masked reasons, resources, and the runner's state. Log lines only with
// --status-logs (logs: true); without it none are kept or shown.

import { expect, test } from "bun:test";
import { RunnerEvents, type AttemptIdentity, type RunnerState } from "../../src/observe/events.ts";
import { FINISHED_KEPT, LOG_TAIL_LINES, StatusState } from "../../src/observe/status-state.ts";
import { ResourcePool } from "../../src/resources/pool.ts";

const GiB = 1024 ** 3;
const who = (n: number): AttemptIdentity => ({
  key: `exp-${n}`,
  attemptId: `att-${n}`,
  source: "local",
  queue: "local_q",
});

function setup(logs = true) {
  const events = new RunnerEvents();
  const clock = { ms: Date.parse("2026-12-01T10:00:00Z") };
  const runner = { state: "running" as RunnerState };
  const pool = new ResourcePool({ cpus: 4, ramBytes: 16 * GiB, hddBytes: 50 * GiB, gpus: 0 });
  const status = new StatusState({
    events,
    runnerId: "r1",
    version: "1.2.3",
    host: "box",
    state: () => runner.state,
    pool: () => pool.snapshot(),
    nowMs: () => clock.ms,
    logs,
  });
  return { events, clock, runner, pool, status };
}

test("identity, state, resources in use against capacity", () => {
  const { events, runner, pool, status } = setup();
  const held = pool.reserve({ cpus: 2, ramBytes: 4 * GiB, hddBytes: 5 * GiB, gpus: 0, gpuMemBytes: 0 })!;
  runner.state = "suspended";
  events.emit("runner.state", { state: "suspended", reason: "HTTP POST /drain" });
  const doc = status.snapshot();
  expect(doc.runner).toMatchObject({
    id: "r1",
    version: "1.2.3",
    host: "box",
    state: "suspended",
    stateReason: "HTTP POST /drain",
    pid: process.pid,
  });
  expect(doc.resources).toEqual({
    capacity: { cpus: 4, ramBytes: 16 * GiB, hddBytes: 50 * GiB, gpus: 0 },
    used: { cpus: 2, ramBytes: 4 * GiB, hddBytes: 5 * GiB, gpus: 0 },
    reservations: 1,
  });
  held.release();
  expect(status.snapshot().resources!.used.cpus).toBe(0);
  // Nothing from the runner's environment is in the document.
  expect(JSON.stringify(doc)).not.toContain(process.env.PATH ?? "no-path");
});

test("queues: served or no longer listed, last checked and last took work", () => {
  const { events, clock, status } = setup();
  events.emit("queues.refreshed", { source: "local", queues: ["local_a", "local_b"], ignored: 0 });
  events.emit("queue.checked", { source: "local", queue: "local_a", took: true });
  clock.ms += 5000;
  events.emit("queue.checked", { source: "local", queue: "local_a", took: false });
  events.emit("queues.refreshed", { source: "local", queues: ["local_a"], ignored: 0 });
  events.emit("queues.failed", {
    source: "rabbitmq",
    error: "management API at http://guest:hunter22@mq:15672 unreachable",
  });
  const doc = status.snapshot();
  expect(doc.queues).toEqual([
    {
      source: "local",
      name: "local_a",
      served: true,
      checks: 2,
      taken: 1,
      lastCheckedAt: "2026-12-01T10:00:05.000Z",
      lastTookAt: "2026-12-01T10:00:00.000Z",
    },
    {
      source: "local",
      name: "local_b",
      served: false,
      checks: 0,
      taken: 0,
      lastCheckedAt: undefined,
      lastTookAt: undefined,
    },
  ]);
  const rabbit = doc.sources.find((s) => s.source === "rabbitmq")!;
  expect(rabbit.lastError).not.toContain("hunter22");
  expect(rabbit.lastError).toContain("unreachable");
});

test("running experiments: phase, elapsed time, GPUs and the last log lines", () => {
  const { events, clock, status } = setup();
  events.emit("attempt.started", {
    ...who(1),
    deliveryCount: 2,
    project: "p",
    gpus: ["GPU-1"],
    resources: { cpus: 1, ramBytes: GiB, hddBytes: GiB, gpus: 1 },
    startedAtMs: clock.ms,
  });
  events.emit("attempt.phase", { ...who(1), phase: "fetch" });
  clock.ms += 2000;
  events.emit("attempt.phase", { ...who(1), phase: "run", previous: "fetch", previousMs: 2000 });
  for (let i = 1; i <= LOG_TAIL_LINES + 10; i++) events.emit("attempt.log", { ...who(1), line: `line ${i}` });
  events.emit("attempt.log", { ...who(9), line: "from an attempt never started" });
  clock.ms += 1000;
  const [r] = status.snapshot().running;
  expect(r).toMatchObject({
    key: "exp-1",
    phase: "run",
    deliveryCount: 2,
    gpus: ["GPU-1"],
    elapsedMs: 3000,
    project: "p",
    phaseSince: "2026-12-01T10:00:02.000Z",
  });
  expect(r!.log).toHaveLength(LOG_TAIL_LINES);
  expect(r!.log![0]).toBe("line 11");
  expect(r!.log!.at(-1)).toBe(`line ${LOG_TAIL_LINES + 10}`);
  expect(status.snapshot().running).toHaveLength(1);
});

test("without --status-logs the running experiments carry no log lines (none are kept)", () => {
  const { events, clock, status } = setup(false);
  events.emit("attempt.started", {
    ...who(1),
    deliveryCount: 1,
    gpus: [],
    resources: { cpus: 1, ramBytes: GiB, hddBytes: GiB, gpus: 0 },
    startedAtMs: clock.ms,
  });
  events.emit("attempt.log", { ...who(1), line: "epoch 1: the other experimenter's private output" });
  const doc = status.snapshot();
  expect(doc.running).toHaveLength(1);
  expect(doc.running[0]!.log).toBeUndefined();
  expect(JSON.stringify(doc)).not.toContain("private output");
});

test("finished experiments: newest first, bounded, with outcome and masked reason; totals", () => {
  const { events, status } = setup();
  for (let n = 1; n <= FINISHED_KEPT + 5; n++) {
    events.emit("attempt.started", {
      ...who(n),
      deliveryCount: 1,
      gpus: [],
      resources: { cpus: 1, ramBytes: 0, hddBytes: 0, gpus: 0 },
      startedAtMs: Date.now(),
    });
    events.emit("attempt.finished", {
      ...who(n),
      result: n % 2 ? "succeeded" : "failed",
      reason: `exited with code ${n % 2 ? 0 : 1}`,
      exitCode: n % 2 ? 0 : 1,
      durationMs: 10,
    });
  }
  events.emit("attempt.finished", {
    ...who(99),
    result: "requeued",
    reason: "s3 at https://AKIA:sEcReT123456@s3.example down",
    durationMs: 5,
  });
  const doc = status.snapshot();
  expect(doc.running).toEqual([]);
  expect(doc.finished).toHaveLength(FINISHED_KEPT);
  expect(doc.finished[0]).toMatchObject({ key: "exp-99", result: "requeued" });
  expect(doc.finished[0]!.reason).not.toContain("sEcReT123456");
  expect(doc.finished[1]).toMatchObject({ key: `exp-${FINISHED_KEPT + 5}`, result: "succeeded", exitCode: 0 });
  expect(doc.totals).toEqual({
    started: FINISHED_KEPT + 5,
    succeeded: 13,
    failed: 12,
    requeued: 1,
    poisoned: 0,
    rejected: 0,
  });
});
