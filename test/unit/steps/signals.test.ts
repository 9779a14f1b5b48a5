// Covers src/task/steps/signals.ts: a drain gives the job its grace, then stops it (checkpointed
// and requeued later by the upload step); a forced shutdown and a withdrawn request stop it at
// once; after cleanup none of them reach the job.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { signalsStep } from "../../../src/task/steps/signals.ts";
import { harness, MemoryDelivery, prepareAll, textOf } from "../../helpers/attempt-harness.ts";

const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "" };

describe("signals step", () => {
  test("drain: the job gets its grace, then is stopped for shutdown", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, signalsStep]);
    h.control.drain.abort();
    h.clock.advance(4_999);
    expect(s.job.stopReason).toBeUndefined();
    h.clock.advance(1);
    expect(s.job.stopReason).toBe("shutdown");
    await s.log!.close();
    expect(textOf(join(s.dirs!.output!, "output"))).toContain("runner is shutting down: the experiment has 5s");
  });

  test("forced shutdown stops at once; so does a withdrawn request (already withdrawn too)", async () => {
    const h = harness();
    const forced = h.state();
    await prepareAll(forced, [layoutStep, logStep, signalsStep]);
    h.control.forceAll.abort();
    expect(forced.job.stopReason).toBe("shutdown");

    const withdrawn = new AbortController();
    withdrawn.abort(new Error("queue local_steps was deleted"));
    const h2 = harness();
    const body = new TextEncoder().encode("{}");
    const s = h2.state({ delivery: new MemoryDelivery(body, "local_steps", 1, withdrawn.signal) });
    await prepareAll(s, [layoutStep, logStep, signalsStep]);
    expect(s.job.stopReason).toBe("request withdrawn (queue local_steps was deleted)");
  });

  test("after cleanup the runner's signals no longer reach the job", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, signalsStep]);
    await signalsStep.cleanup!(s, finished);
    h.control.drain.abort();
    h.control.forceAll.abort();
    h.clock.advance(60_000);
    expect(s.job.stopReason).toBeUndefined();
  });
});
