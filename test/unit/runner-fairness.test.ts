// Covers src/runner/runner.ts Runner's fairness between queues, in process (runner-harness.ts):
// a request that fits this runner but not now is held back for, so a stream of small experiments
// from another queue cannot starve it; work that leaves room for it is still taken; the oldest
// waiting request wins between two waiting queues; a waiting request no longer seen is forgotten.

import { describe, expect, test } from "bun:test";
import { FakeClock, harnessPerTest } from "../helpers/runner-harness.ts";

const make = harnessPerTest();

describe("a waiting big request", () => {
  test("is not starved by a stream of small ones from another queue", async () => {
    const h = await make({ capacity: { cpus: 2 } });
    for (const key of ["s1", "s2", "s3"]) await h.publish("a_small", key, { cpus: 1 });
    await h.publish("b_big", "big", { cpus: 2 });
    h.start();
    const s1 = await h.started("s1");
    await h.waitLogged(
      "info",
      "experiment big in b_big waits for resources; other work is taken only where it leaves room for it",
    );
    await h.passes(3);
    // s2 fits the free cpu, but would leave no room for big.
    expect(h.attempts.keys()).toEqual(["s1"]);
    for (const key of ["s4", "s5"]) await h.publish("a_small", key, { cpus: 1 });
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1"]);

    await s1.finish();
    const big = await h.started("big");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1", "big"]);
    await big.finish();
    await h.startedCount(4);
    expect(h.attempts.keys()).toEqual(["s1", "big", "s2", "s3"]);
    expect(h.maxUsedCpus).toBe(2);
  });

  test("is not overtaken by small ones behind it in its own queue", async () => {
    const h = await make({ capacity: { cpus: 2 } });
    await h.publish("a_mixed", "s1", { cpus: 1 });
    await h.publish("a_mixed", "big", { cpus: 2 });
    for (const key of ["s2", "s3"]) await h.publish("a_mixed", key, { cpus: 1 });
    h.start();
    const s1 = await h.started("s1");
    await h.waitLogged("info", "experiment big in a_mixed waits for resources");
    await h.passes(3);
    // s2 fits the free cpu, but would leave no room for big, which came first.
    expect(h.attempts.keys()).toEqual(["s1"]);
    await s1.finish();
    const big = await h.started("big");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1", "big"]);
    await big.finish();
    await h.startedCount(4);
    expect(h.attempts.keys()).toEqual(["s1", "big", "s2", "s3"]);
  });

  test("holds back only what would take its room: CPU-only work runs beside a request waiting for GPUs", async () => {
    const h = await make({ capacity: { cpus: 8, gpus: 2 } });
    for (const key of ["g1", "g2"]) await h.publish("a_gpu", key, { cpus: 1, gpus: 1 });
    await h.publish("b_big", "big", { cpus: 2, gpus: 2 });
    for (const key of ["c1", "c2"]) await h.publish("c_cpu", key, { cpus: 1 });
    h.start();
    const g1 = await h.started("g1");
    await h.waitLogged("info", "experiment big in b_big waits for resources");
    await h.started("c1");
    await h.started("c2");
    await h.passes(3);
    // g2 fits the free card, but big needs both.
    expect(h.attempts.keys()).toEqual(["g1", "c1", "c2"]);
    await g1.finish();
    const big = await h.started("big");
    expect(big.reservation?.needs.gpus).toBe(2);
    await h.passes(3);
    expect(h.attempts.keys()).not.toContain("g2");
  });

  test("the oldest waiting request wins, whatever the order queues are looked at in", async () => {
    const h = await make({ capacity: { cpus: 4 } });
    await h.publish("a_run", "hog", { cpus: 3 });
    h.start();
    const hog = await h.started("hog");
    await h.publish("c_old", "old", { cpus: 3 });
    await h.waitLogged("info", "experiment old in c_old waits for resources");
    // Looked at before c_old, and small enough to fit once hog ends: it must not go first.
    await h.publish("b_young", "young", { cpus: 2 });
    await h.waitLogged("info", "experiment young in b_young waits for resources");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["hog"]);

    await hog.finish();
    const old = await h.started("old");
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["hog", "old"]);
    await old.finish();
    await h.started("young");
    expect(h.maxUsedCpus).toBe(3);
  });

  test("is forgotten 60 s after it was last seen (its queue is no longer served): the small ones go on", async () => {
    const clock = new FakeClock();
    const refusals = new Map<string, string>();
    const h = await make({
      capacity: { cpus: 2 },
      runner: { now: clock.now },
      ctx: { queueRefusal: (queue) => refusals.get(queue) },
    });
    for (const key of ["s1", "s2"]) await h.publish("a_small", key, { cpus: 1 });
    await h.publish("b_big", "big", { cpus: 2 });
    h.start();
    await h.started("s1");
    await h.waitLogged("info", "experiment big in b_big waits for resources");
    // Not asked from here on (a queue that vanished would be asked once, found empty, and forgotten at once).
    refusals.set("b_big", "its signing key file does not parse");
    clock.advance(60_000);
    await h.passes(3);
    expect(h.attempts.keys()).toEqual(["s1"]);
    clock.advance(1);
    await h.started("s2");
  });
});
