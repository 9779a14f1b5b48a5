// Covers src/runner/runner.ts Runner's taking of work, in process (test/helpers/runner-harness.ts):
// only what the pool fits is taken, the Go runner's rule of not asking a blocked queue again until
// a release (or its recheck period), requests that never fit, crashing attempts, unreadable
// messages, failing discovery, refused queues and admission refusals. Fairness between queues is
// in runner-fairness.test.ts; limits, drain and maintenance states in runner-maintenance.test.ts.

import { describe, expect, test } from "bun:test";
import { RequestAdmission } from "../../src/request/admission.ts";
import { FakeClock, harnessPerTest, until } from "../helpers/runner-harness.ts";

const make = harnessPerTest();

describe("Runner takes only what fits", () => {
  test("two 1-cpu experiments at once on 2 cpus; the next starts as one ends, with a 1-cpu reservation", async () => {
    const h = await make();
    for (const key of ["s1", "s2", "s3", "s4"]) await h.publish("q", key, { cpus: 1 });
    h.start();
    await h.startedCount(2);
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1", "s2"]);
    expect(h.pool.snapshot().used.cpus).toBe(2);
    const [s1, s2] = h.attempts.started;
    expect(s1?.reservation?.needs.cpus).toBe(1);
    expect(s1?.reservation?.gpuUuids).toEqual([]);
    expect(s1?.request?.experiment.key).toBe("s1");
    expect(s1?.control.source).toBe("local");

    await s1?.finish();
    await h.started("s3");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1", "s2", "s3"]);
    await s2?.finish();
    await h.started("s4");
    await h.attempts.finishAll();
    await until("the pool to be idle", () => !h.pool.busy);
    expect(h.attempts.maxConcurrent).toBe(2);
    expect(h.maxUsedCpus).toBe(2);
    expect(await h.waitingIn("q")).toEqual([]);
  });

  test("a 2-cpu request waits while one cpu is taken and starts once it is free", async () => {
    const h = await make();
    await h.publish("a", "small", { cpus: 1 });
    await h.publish("b", "big", { cpus: 2 });
    h.start();
    const small = await h.started("small");
    await h.waitLogged("info", "experiment big in b waits for resources");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["small"]);
    await small.finish();
    const big = await h.started("big");
    expect(big.reservation?.needs.cpus).toBe(2);
    expect(h.maxUsedCpus).toBe(2);
  });
});

describe("a queue whose request does not fit now (the Go runner's rule)", () => {
  test("is not asked again until a reservation is released", async () => {
    const h = await make();
    await h.publish("a", "small", { cpus: 1 });
    h.start();
    const small = await h.started("small");
    await h.publish("b", "big", { cpus: 2 });
    await h.waitLogged("info", "experiment big in b waits for resources");
    await h.passes(1); // the end of the pass that saw it, which asked queue a before b
    const askedB = h.backend.asked("b");
    const askedA = h.backend.asked("a");
    await h.passes(5);
    expect(h.backend.asked("b")).toBe(askedB);
    expect(h.backend.asked("a")).toBeGreaterThanOrEqual(askedA + 5); // the loop did go round
    await small.finish();
    await h.started("big");
    expect(h.backend.asked("b")).toBeGreaterThan(askedB);
  });

  test("is asked again after 15 s without a release (the request may be gone), then blocked again", async () => {
    const clock = new FakeClock();
    const h = await make({ runner: { now: clock.now } });
    await h.publish("a", "small", { cpus: 1 });
    await h.publish("b", "big", { cpus: 2 });
    h.start();
    await h.started("small");
    await h.waitLogged("info", "experiment big in b waits for resources");
    const asked = h.backend.asked("b");
    clock.advance(14_999);
    await h.passes(3);
    expect(h.backend.asked("b")).toBe(asked);
    clock.advance(1);
    await until("queue b to be asked again", () => h.backend.asked("b") > asked);
    await h.passes(3);
    expect(h.backend.asked("b")).toBe(asked + 1);
    expect(h.attempts.keys()).toEqual(["small"]);
    expect(h.logged("info", "experiment big in b waits for resources")).toHaveLength(1);
  });
});

describe("a request that never fits this runner", () => {
  test("stays in its queue with one warning and holds nothing back", async () => {
    const h = await make();
    await h.publish("a", "huge", { cpus: 4 });
    await h.publish("a", "s1", { cpus: 1 });
    await h.publish("b", "s2", { cpus: 1 });
    h.start();
    const s1 = await h.started("s1"); // behind it in the same queue
    await h.started("s2");
    await h.waitLogged("warn", "leaving experiment huge in a for a bigger runner: needs 4 cpus, runner has 2");
    const askedA = h.backend.asked("a");
    await s1.finish(); // a release: queue a is asked again, and sees it again
    await until("queue a to be asked after the release", () => h.backend.asked("a") > askedA);
    // Not waited for: a later small request of another queue is taken at once.
    await h.publish("b", "s3", { cpus: 1 });
    await h.started("s3");
    await h.passes(3);
    expect(h.logged("warn", "huge")).toHaveLength(1);
    expect(h.logged("info", "waits for resources")).toEqual([]);
    expect(h.attempts.keys()).not.toContain("huge");
    expect(await h.waitingIn("a")).toHaveLength(1);
  });
});

describe("faults do not stop the loop", () => {
  test("an attempt that throws is logged, its reservation released, and work goes on", async () => {
    const h = await make({ capacity: { cpus: 1 } });
    h.attempts.throwFor.add("boom");
    await h.publish("q", "boom");
    await h.publish("q", "next");
    h.start();
    await h.waitLogged("error", "attempt crashed: attempt for boom blew up");
    const next = await h.started("next"); // the only cpu was given back
    await next.crash("lost the plot");
    await h.waitLogged("error", "attempt crashed: lost the plot");
    expect(h.pool.snapshot().reservations).toBe(0);
    await h.publish("q", "after");
    await h.started("after");
    expect(h.ended).toBe(false);
  });

  test("a message that cannot be read is handed to the attempt without a reservation", async () => {
    const h = await make({ capacity: { cpus: 1 } });
    await h.publishRaw("q", "{ not json");
    h.start();
    await h.startedCount(1);
    const [unread] = h.attempts.started;
    expect(unread?.request).toBeUndefined();
    expect(unread?.reservation).toBeUndefined();
    expect(h.pool.snapshot().reservations).toBe(0);
    await h.publish("q", "fine"); // the one cpu is still free
    await h.started("fine");
  });

  test("a failing discovery is logged and retried", async () => {
    const h = await make();
    h.backend.failDiscovery = "listing denied";
    await h.publish("q", "k1");
    h.start();
    await h.waitLogged("warn", "local queue discovery failed: listing denied");
    await h.passes(2);
    expect(h.attempts.started).toEqual([]);
    h.backend.failDiscovery = undefined;
    await h.started("k1");
  });
});

describe("queues and requests refused before an attempt", () => {
  test("a refused queue is not asked, said once, and served again when the refusal clears", async () => {
    const refusals = new Map([["a_signed", "its signing key file does not parse"]]);
    const h = await make({ ctx: { queueRefusal: (queue) => refusals.get(queue) } });
    await h.publish("a_signed", "k1");
    await h.publish("b_plain", "k2");
    h.start();
    await h.started("k2");
    await h.passes(3);
    expect(h.backend.asked("a_signed")).toBe(0);
    expect(h.logged("error", "not serving local queue a_signed: its signing key file does not parse")).toHaveLength(1);
    refusals.set("a_signed", "its signing key file is gone");
    await h.waitLogged("error", "not serving local queue a_signed: its signing key file is gone");
    refusals.delete("a_signed");
    await h.waitLogged("info", "serving local queue a_signed again");
    await h.started("k1");
    expect(h.logged("error", "not serving")).toHaveLength(2);
  });

  test("a request the admission refuses goes to the failed place without a reservation", async () => {
    const h = await make({ capacity: { cpus: 1 }, ctx: { admission: new RequestAdmission({ maxAgeMs: 60_000 }) } });
    const nowS = Date.now() / 1000;
    await h.publish("q", "stale", { cpus: 1 }, { time_added: nowS - 3600 });
    await h.publish("q", "fresh", { cpus: 1 }, { time_added: nowS });
    h.start();
    await h.started("fresh");
    expect(h.logged("error", "experiment stale rejected: experiment.time_added")).toHaveLength(1);
    expect(await h.failedIn("q")).toHaveLength(1);
    expect(h.attempts.keys()).toEqual(["fresh"]);
  });
});
