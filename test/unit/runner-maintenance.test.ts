// Covers src/runner/runner.ts Runner's ways of stopping, in process (runner-harness.ts):
// --limit-tasks, --limit-idle-duration, drain (the first graceful, the second forces) and the
// maintenance states suspended / running / terminating set through setState.

import { describe, expect, test } from "bun:test";
import { FakeClock, harnessPerTest, until } from "../helpers/runner-harness.ts";

const make = harnessPerTest();

describe("limits", () => {
  test("--limit-tasks: takes that many, then waits for them and returns", async () => {
    const h = await make({ capacity: { cpus: 4 }, limits: { limitTasks: 2 } });
    for (const key of ["k1", "k2", "k3"]) await h.publish("q", key);
    h.start();
    await h.waitLogged("info", "took 2 experiment(s) (--limit-tasks): finishing");
    await until("the loop to end", () => h.count("loop.ended") === 1);
    expect(h.attempts.keys()).toEqual(["k1", "k2"]);
    expect(h.ended).toBe(false); // both still run
    await h.attempts.started[0]?.finish();
    expect(h.ended).toBe(false);
    await h.attempts.started[1]?.finish();
    await until("run() to return", () => h.ended);
    expect(await h.waitingIn("q")).toHaveLength(1);
    expect(h.backend.closed).toBe(1);
  });

  test("--limit-idle-duration: with nothing to do, returns once that long has passed", async () => {
    const h = await make({ limits: { limitIdleMs: 150 } });
    const t0 = performance.now();
    h.start();
    await until("run() to return", () => h.ended);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(h.logged("info", "idle for 150ms (--limit-idle-duration): finishing")).toHaveLength(1);
  });

  test("--limit-idle-duration counts from the end of the last experiment, never while one runs", async () => {
    const clock = new FakeClock();
    const h = await make({ limits: { limitIdleMs: 10_000 }, runner: { now: clock.now } });
    await h.publish("q", "k1");
    h.start();
    const k1 = await h.started("k1");
    clock.advance(60_000);
    await h.passes(3);
    expect(h.ended).toBe(false);
    await k1.finish();
    await h.passes(3);
    clock.advance(9_999);
    await h.passes(3);
    expect(h.ended).toBe(false);
    clock.advance(1);
    await until("run() to return", () => h.ended);
    expect(h.logged("info", "idle for 10s (--limit-idle-duration): finishing")).toHaveLength(1);
  });
});

describe("drain", () => {
  test("the first takes no new work and waits for the running experiments", async () => {
    const h = await make({ capacity: { cpus: 2 }, limits: { shutdownGraceMs: 30_000 } });
    for (const key of ["k1", "k2", "k3"]) await h.publish("q", key);
    h.start();
    await h.startedCount(2);
    h.runner.drain("SIGTERM");
    expect(h.runner.draining).toBe(true);
    expect(h.runner.state).toBe("terminating");
    expect(h.logged("info", "draining (SIGTERM): no new work; 2 experiment(s) running get 30s")).toHaveLength(1);
    const [k1, k2] = h.attempts.started;
    expect(k1?.control.shutdown.aborted).toBe(true);
    expect(k1?.control.force.aborted).toBe(false);
    expect(k1?.control.shutdownGraceMs).toBe(30_000);
    await until("the loop to end", () => h.count("loop.ended") === 1);
    await k1?.finish(); // a free cpu, and k3 waiting: still not taken
    expect(h.ended).toBe(false);
    expect(h.runner.runningCount).toBe(1);
    await k2?.finish();
    await until("run() to return", () => h.ended);
    expect(h.attempts.keys()).toEqual(["k1", "k2"]);
    expect(await h.waitingIn("q")).toHaveLength(1);
    expect(h.backend.closed).toBe(1);
  });

  test("the second forces: running experiments are stopped at once and their messages given back", async () => {
    const h = await make({ capacity: { cpus: 2 } });
    for (const key of ["k1", "k2", "k3"]) await h.publish("q", key);
    h.start();
    await h.startedCount(2);
    h.runner.drain("SIGTERM");
    await until("the loop to end", () => h.count("loop.ended") === 1);
    expect(h.attempts.started.every((s) => !s.control.force.aborted)).toBe(true);
    h.runner.drain("second SIGTERM");
    expect(h.logged("warn", "forced shutdown (second SIGTERM): stopping running experiments now")).toHaveLength(1);
    expect(h.attempts.started.every((s) => s.control.force.aborted)).toBe(true);
    await until("run() to return", () => h.ended);
    h.runner.drain("third SIGTERM"); // nothing more to do, nothing said
    expect(h.lines.filter((l) => l.message.includes("SIGTERM"))).toHaveLength(2);
    expect(await h.waitingIn("q")).toHaveLength(3);
  });
});

describe("maintenance states (setState)", () => {
  test("suspended takes no new work while the running experiment goes on; running takes work again", async () => {
    const h = await make();
    const states: string[] = [];
    h.events.on("runner.state", (e) => void states.push(`${e.state} (${e.reason})`));
    await h.publish("q", "k1");
    h.start();
    const k1 = await h.started("k1");
    h.runner.setState("suspended", "DrainAndSuspend");
    expect(h.runner.state).toBe("suspended");
    expect(h.logged("info", "suspended (DrainAndSuspend): no new work; 1 running experiment(s) go on")).toHaveLength(1);
    await h.passes(1); // a pass that had begun before has ended: from here on the loop is suspended
    const discoveries = h.backend.discoveries;
    await h.publish("q", "k2");
    const polls = h.count("poll");
    await k1.finish(); // wakes the loop: it polls without looking at any queue, and stays suspended
    await until("the suspended loop to wake", () => h.count("poll") > polls);
    expect(h.backend.discoveries).toBe(discoveries);
    expect(h.attempts.keys()).toEqual(["k1"]);
    h.runner.setState("suspended", "again"); // no change, nothing said
    h.runner.setState("running", "Running");
    expect(h.logged("info", "resumed (Running): taking work again")).toHaveLength(1);
    await h.started("k2");
    expect(states).toEqual(["suspended (DrainAndSuspend)", "running (Running)"]);
    expect(h.ended).toBe(false);
  });

  test("terminating takes no new work and returns once the running experiment ends; it is final", async () => {
    const h = await make();
    await h.publish("q", "k1");
    h.start();
    const k1 = await h.started("k1");
    h.runner.setState("terminating", "DrainAndTerminate");
    expect(h.runner.state).toBe("terminating");
    expect(
      h.logged(
        "info",
        "draining to exit (DrainAndTerminate): no new work; 1 running experiment(s) go on, then the runner exits",
      ),
    ).toHaveLength(1);
    await until("the loop to end", () => h.count("loop.ended") === 1);
    await h.publish("q", "k2");
    h.runner.setState("running", "too late");
    expect(h.runner.state).toBe("terminating");
    expect(h.logged("info", "resumed")).toEqual([]);
    expect(h.ended).toBe(false);
    await k1.finish();
    await until("run() to return", () => h.ended);
    expect(h.attempts.keys()).toEqual(["k1"]);
    expect(await h.waitingIn("q")).toHaveLength(1);
  });

  test("a drain while suspended ends the loop at once, and later states are ignored", async () => {
    const h = await make();
    h.start();
    await h.passes(1);
    h.runner.setState("suspended", "DrainAndSuspend");
    await h.passes(1);
    const discoveries = h.backend.discoveries;
    const t0 = performance.now();
    h.runner.drain("SIGTERM");
    await until("run() to return", () => h.ended);
    expect(performance.now() - t0).toBeLessThan(1000); // not at the suspended loop's next 5 s poll
    expect(h.backend.discoveries).toBe(discoveries);
    h.runner.setState("running", "Running");
    expect(h.runner.state).toBe("terminating");
    expect(h.logged("info", "resumed")).toEqual([]);
  });
});
