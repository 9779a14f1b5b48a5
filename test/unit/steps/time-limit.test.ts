// Covers src/task/steps/time-limit.ts on a clock moved by hand: the job is stopped at its limit
// (not before), the log says why, a limit longer than a timer holds is reached in several steps,
// and cleanup disarms it.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { MAX_TIMER_MS } from "../../../src/task/attempt-clock.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { timeLimitStep } from "../../../src/task/steps/time-limit.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";

const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "" };

describe("time-limit step", () => {
  test("stops the job at the limit, not before", async () => {
    const h = harness();
    const s = h.state({ limit: { ms: 60_000, because: "experiment.max_duration" } });
    await prepareAll(s, [layoutStep, logStep, timeLimitStep]);
    h.clock.advance(59_999);
    expect(s.job.stopReason).toBeUndefined();
    h.clock.advance(1);
    expect(s.job.stopReason).toBe("time limit reached (experiment.max_duration)");
    await s.log!.close();
    expect(textOf(join(s.dirs!.output!, "output"))).toContain("time limit of 1m (experiment.max_duration) reached");
  });

  test("a limit longer than a timer holds (30 days) is reached in steps", async () => {
    const h = harness();
    const days30 = 30 * 24 * 3600_000;
    const s = h.state({ limit: { ms: days30, because: "the runner's --max-duration" } });
    await prepareAll(s, [layoutStep, logStep, timeLimitStep]);
    h.clock.advance(MAX_TIMER_MS);
    expect(s.job.stopReason).toBeUndefined();
    h.clock.advance(days30 - MAX_TIMER_MS);
    expect(s.job.stopReason).toBe("time limit reached (the runner's --max-duration)");
  });

  test("no limit, no timer; cleanup disarms", async () => {
    const h = harness();
    const none = h.state();
    await prepareAll(none, [layoutStep, logStep, timeLimitStep]);
    expect(h.clock.armed).toBe(0);
    const limited = h.state({ limit: { ms: 1000, because: "experiment.max_duration" } });
    await prepareAll(limited, [layoutStep, logStep, timeLimitStep]);
    expect(h.clock.armed).toBe(1);
    await timeLimitStep.cleanup!(limited, finished);
    h.clock.advance(5000);
    expect(limited.job.stopReason).toBeUndefined();
  });
});
