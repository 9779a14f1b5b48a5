// Covers src/task/steps/log.ts: the experiment's log starts with where and what it is, secrets are
// masked, "attempt.started" is said; after a fault the log names it and goes to storage, except to
// places the location rules refused and for an attempt a newer one superseded.

import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PermanentError, RetryableError } from "../../../src/errors.ts";
import { RunnerEvents } from "../../../src/observe/events.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";
import { tarMember } from "../../helpers/e2e.ts";

const fault = (err: RetryableError | PermanentError) => ({ kind: "fault" as const, fault: err, reason: err.message });

describe("log step", () => {
  test("the log says where the experiment runs and masks secrets; attempt.started is emitted", async () => {
    const events = new RunnerEvents();
    const started: unknown[] = [];
    events.on("attempt.started", (e) => started.push(e));
    const h = harness(undefined, (m) => (m.config.env = { API_TOKEN: "tok-SECRET-123456" }), { events });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    s.log!.write("the token is tok-SECRET-123456");
    await s.log!.close();
    const text = textOf(join(s.dirs!.output!, "output"));
    expect(text).toContain(`experiment ${h.request.experiment.key} on steps-host, delivery 1 from queue local_steps`);
    expect(text).toContain("the token is");
    expect(text).not.toContain("tok-SECRET-123456");
    expect(started).toHaveLength(1);
    expect(h.ctx.log.lines).toContain(`info starting experiment ${h.request.experiment.key}`);
  });

  test("after a fault the log names it and is uploaded", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    await logStep.cleanup!(s, fault(new RetryableError("storage down", { phase: "fetch workspace" })));
    const uploaded = join(h.experimentDir, "output.tar");
    expect(existsSync(uploaded)).toBe(true);
    expect(tarMember(uploaded)).toContain("runner fault, will retry (fetch workspace): storage down");
  });

  test("nothing is uploaded to refused locations, nor for a superseded attempt", async () => {
    const h = harness();
    const refused = h.state();
    await prepareAll(refused, [layoutStep, logStep]);
    refused.locationsRefused = true;
    await logStep.cleanup!(refused, fault(new PermanentError("experiment.artifacts.output.qualified: refused")));
    expect(existsSync(join(h.experimentDir, "output.tar"))).toBe(false);
    expect(textOf(join(refused.dirs!.output!, "output"))).toContain("experiment failed: experiment.artifacts.output");

    const superseded = h.state();
    await prepareAll(superseded, [layoutStep, logStep]);
    await logStep.cleanup!(superseded, { kind: "superseded", reason: "attempt b owns this experiment now" });
    expect(existsSync(join(h.experimentDir, "output.tar"))).toBe(false);
    expect(textOf(join(superseded.dirs!.output!, "output"))).toContain("attempt b owns this experiment now");
  });
});
