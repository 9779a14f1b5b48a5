// Loop health fed with poll events on a controlled clock: red after two poll periods without a
// completed pass (also before the first), green again on the next pass, terminating stays green;
// readiness follows the runner's state.

import { expect, test } from "bun:test";
import { RunnerEvents, type RunnerState } from "../../src/observe/events.ts";
import { LoopHealth, POLL_PERIOD_MS, POLL_WAIT_MS, UNHEALTHY_AFTER_MS } from "../../src/observe/health.ts";

function setup() {
  const events = new RunnerEvents();
  const clock = { ms: 1_000_000 };
  const runner = { state: "running" as RunnerState };
  const health = new LoopHealth({ events, state: () => runner.state, nowMs: () => clock.ms });
  const pass = () => events.emit("poll", { atMs: clock.ms });
  return { events, clock, runner, health, pass };
}

test("the threshold is two poll periods, each longer than the loop's longest wait", () => {
  expect(POLL_PERIOD_MS).toBeGreaterThan(POLL_WAIT_MS);
  expect(UNHEALTHY_AFTER_MS).toBe(2 * POLL_PERIOD_MS);
});

test("healthy while passes complete; red once none completed for two poll periods; green again on the next", () => {
  const { clock, health, pass } = setup();
  pass();
  clock.ms += POLL_WAIT_MS;
  pass();
  expect(health.health().healthy).toBe(true);
  clock.ms += UNHEALTHY_AFTER_MS; // exactly at the limit: still healthy
  expect(health.health().healthy).toBe(true);
  clock.ms += 1;
  const red = health.health();
  expect(red.healthy).toBe(false);
  expect(red.reason).toContain("has not completed a pass");
  expect(red.passes).toBe(2);
  pass();
  expect(health.health().healthy).toBe(true);
  expect(health.health().sinceLastPassMs).toBe(0);
});

test("a first pass that never completes turns it red too", () => {
  const { clock, health } = setup();
  expect(health.health().healthy).toBe(true);
  expect(health.ready().ready).toBe(false);
  clock.ms += UNHEALTHY_AFTER_MS + 1;
  expect(health.health().healthy).toBe(false);
  expect(health.health().reason).toContain("first pass");
});

test("a terminating runner has left its loop on purpose and stays healthy", () => {
  const { clock, health, pass, runner } = setup();
  pass();
  runner.state = "terminating";
  clock.ms += 10 * UNHEALTHY_AFTER_MS;
  expect(health.health().healthy).toBe(true);
  expect(health.ready()).toMatchObject({ ready: false, state: "terminating" });
});

test("ready after the first pass while running; not while suspended", () => {
  const { health, pass, runner } = setup();
  expect(health.ready().ready).toBe(false);
  pass();
  expect(health.ready()).toEqual({ ready: true, state: "running", reason: "taking work" });
  runner.state = "suspended";
  expect(health.ready()).toMatchObject({ ready: false, state: "suspended" });
  runner.state = "running";
  expect(health.ready().ready).toBe(true);
});

test("a loop that ended on purpose (--limit-tasks) stays healthy while its last experiments run, and is not ready", () => {
  const { clock, health, pass, events } = setup();
  pass();
  events.emit("loop.ended", { atMs: clock.ms });
  clock.ms += 10 * UNHEALTHY_AFTER_MS;
  expect(health.health()).toMatchObject({ healthy: true, state: "running" });
  expect(health.ready()).toMatchObject({ ready: false, reason: "finishing: taking no more work" });
});
