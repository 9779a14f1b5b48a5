// The event stream: listeners get what is emitted, a throwing observer never reaches the emitter,
// and the phase clock reports each previous phase's duration.

import { expect, test } from "bun:test";
import { PhaseClock, RunnerEvents, type RunnerEventMap } from "../../src/observe/events.ts";

test("listeners get events; a throwing listener does not stop the others", () => {
  const events = new RunnerEvents();
  const seen: number[] = [];
  events.on("poll", () => {
    throw new Error("observer bug");
  });
  const off = events.on("poll", (e) => seen.push(e.atMs));
  events.emit("poll", { atMs: 1 });
  off();
  events.emit("poll", { atMs: 2 });
  expect(seen).toEqual([1]);
});

test("the phase clock emits each phase once, with the previous phase and how long it lasted", async () => {
  const events = new RunnerEvents();
  const phases: RunnerEventMap["attempt.phase"][] = [];
  events.on("attempt.phase", (e) => phases.push(e));
  const clock = new PhaseClock(events, { key: "k", attemptId: "a", source: "local", queue: "q" });
  clock.enter("fetch");
  clock.enter("fetch");
  await Bun.sleep(20); // timing is the point: the phase must last a measurable time
  clock.enter("run");
  expect(phases.map((p) => p.phase)).toEqual(["fetch", "run"]);
  expect(phases[1]!.previous).toBe("fetch");
  expect(phases[1]!.previousMs!).toBeGreaterThan(0);
  expect(clock.last().lastPhase).toBe("run");
});
