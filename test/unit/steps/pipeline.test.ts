// Covers src/task/attempt-pipeline.ts and settle.ts: prepare in order, afterExit in order, cleanup
// in reverse (only of steps that started, whatever happened), phases from step names, endings from
// faults, and the one place a delivery is settled.

import { describe, expect, test } from "bun:test";
import { PermanentError, RetryableError } from "../../../src/errors.ts";
import { type AttemptPhase, RunnerEvents, PhaseClock } from "../../../src/observe/events.ts";
import { runSteps } from "../../../src/task/attempt-pipeline.ts";
import { SupersededError } from "../../../src/task/attempt-fence.ts";
import type { AttemptStep } from "../../../src/task/attempt-step.ts";
import { settle } from "../../../src/task/settle.ts";
import { harness, MemoryDelivery, memoryLogger } from "../../helpers/attempt-harness.ts";

function recorder(calls: string[], name: string, fail?: "prepare" | "afterExit"): AttemptStep {
  return {
    name,
    async prepare() {
      calls.push(`prepare ${name}`);
      if (fail === "prepare") throw new PermanentError(`${name} refused`, { phase: name });
    },
    async afterExit(s) {
      calls.push(`afterExit ${name}`);
      if (fail === "afterExit") throw new RetryableError(`${name} broke`);
      s.ending ??= { kind: "finished", exit: { code: 0, signal: null }, reason: "exited with code 0" };
    },
    async cleanup(_s, ending) {
      calls.push(`cleanup ${name} ${ending.kind}`);
    },
  };
}

describe("attempt pipeline", () => {
  test("prepare in order, afterExit in order, cleanup in reverse; phases come from step names", async () => {
    const h = harness();
    const calls: string[] = [];
    const events = new RunnerEvents();
    const phases: AttemptPhase[] = [];
    events.on("attempt.phase", (e) => phases.push(e.phase));
    const steps = ["layout", "claim", "fetch", "run", "upload"].map((n) => recorder(calls, n));
    const ending = await runSteps(
      h.state(),
      steps,
      new PhaseClock(events, { key: "k", attemptId: "a", source: "local", queue: "q" }),
    );
    expect(ending.kind).toBe("finished");
    expect(calls).toEqual([
      ...["layout", "claim", "fetch", "run", "upload"].map((n) => `prepare ${n}`),
      ...["layout", "claim", "fetch", "run", "upload"].map((n) => `afterExit ${n}`),
      ...["upload", "run", "fetch", "claim", "layout"].map((n) => `cleanup ${n} finished`),
    ]);
    expect(phases).toEqual(["claim", "fetch", "run", "upload"]);
  });

  test("a fault in a prepare stops the steps after it; only the started ones clean up, with the fault", async () => {
    const h = harness();
    const calls: string[] = [];
    const steps = [recorder(calls, "a"), recorder(calls, "b", "prepare"), recorder(calls, "c")];
    const ending = await runSteps(h.state(), steps);
    expect(ending).toMatchObject({ kind: "fault", reason: "b refused (b)" });
    expect(calls).toEqual(["prepare a", "prepare b", "cleanup b fault", "cleanup a fault"]);
  });

  test("a fault after the exit is a fault; a newer attempt's claim ends it as superseded", async () => {
    const h = harness();
    const calls: string[] = [];
    const late = await runSteps(h.state(), [recorder(calls, "a"), recorder(calls, "b", "afterExit")]);
    expect(late).toMatchObject({ kind: "fault", reason: "b broke" });
    expect(late.kind === "fault" && late.fault.retryable).toBe(true);
    const superseded = await runSteps(h.state(), [
      { name: "x", prepare: async () => Promise.reject(new SupersededError("attempt 2 owns it")) },
    ]);
    expect(superseded).toEqual({ kind: "superseded", reason: "attempt 2 owns it" });
  });

  test("a cleanup that throws is logged and the others still run", async () => {
    const h = harness();
    const calls: string[] = [];
    const broken: AttemptStep = {
      name: "broken",
      prepare: async () => {},
      cleanup: async () => Promise.reject(new Error("stuck")),
    };
    await runSteps(h.state(), [recorder(calls, "a"), broken]);
    expect(calls).toContain("cleanup a finished");
    expect(h.ctx.log.lines.some((l) => l.includes("cleanup of broken") && l.includes("stuck"))).toBe(true);
  });
});

describe("settle: the one place a delivery is settled", () => {
  const body = new Uint8Array();
  test("finished → ack; shutdown and superseded → given back uncounted", async () => {
    const log = memoryLogger();
    const d = new MemoryDelivery(body);
    expect(
      await settle(d, { kind: "finished", exit: { code: 3, signal: null }, reason: "exited with code 3" }, log, "e"),
    ).toEqual({
      kind: "finished",
      exitCode: 3,
      reason: "exited with code 3",
    });
    await settle(d, { kind: "shutdown", reason: "runner shutting down" }, log, "e");
    await settle(d, { kind: "superseded", reason: "newer" }, log, "e");
    expect(d.settled).toEqual([
      { how: "ack" },
      { how: "nack", reason: "runner shutting down", countDelivery: false },
      { how: "nack", reason: "newer", countDelivery: false },
    ]);
  });

  test("a retryable fault is given back (failed place after the last delivery); a permanent one is rejected", async () => {
    const log = memoryLogger();
    const first = new MemoryDelivery(body, "q", 1);
    const last = new MemoryDelivery(body, "q", 3);
    const retry = { kind: "fault" as const, fault: new RetryableError("disk full"), reason: "disk full" };
    expect(await settle(first, retry, log, "experiment k")).toEqual({ kind: "requeued", reason: "disk full" });
    expect(await settle(last, retry, log, "experiment k")).toEqual({ kind: "failed", reason: "disk full" });
    const bad = { kind: "fault" as const, fault: new PermanentError("bad"), reason: "bad (fetch)" };
    expect(await settle(first, bad, log, "experiment k")).toEqual({ kind: "rejected", reason: "bad (fetch)" });
    expect(first.settled.at(-1)).toEqual({ how: "reject", reason: "bad (fetch)" });
    expect(log.lines).toContain("warn experiment k: disk full; moved to the failed place");
    expect(log.lines).toContain("error experiment k rejected: bad (fetch)");
  });
});
