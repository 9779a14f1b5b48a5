// Covers src/task/steps/checkpoints.ts on a clock moved by hand: a changed mutable artifact goes to
// storage at config.saveWorkspaceFrequency, an unchanged one does not, a newer attempt's claim
// stops the job, and cleanup disarms the timers.

import { describe, expect, test } from "bun:test";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkpointsStep } from "../../../src/task/steps/checkpoints.ts";
import { claimStep } from "../../../src/task/steps/claim.ts";
import { fetchStep } from "../../../src/task/steps/fetch.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { harness, prepareAll } from "../../helpers/attempt-harness.ts";
import { tarMember } from "../../helpers/e2e.ts";
import { waitFor } from "../../helpers/wait-for.ts";

const STEPS = [layoutStep, logStep, claimStep, fetchStep, checkpointsStep];
const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "" };

describe("checkpoints step", () => {
  test("a changed artifact is uploaded every saveWorkspaceFrequency (1m in the client's message)", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, STEPS);
    const modeldir = join(h.experimentDir, "modeldir.tar");
    h.clock.advance(60_000);
    await s.uploader!.upload([]); // uploads are serialised: this waits for the tick's
    expect(existsSync(modeldir)).toBe(false); // nothing changed yet
    writeFileSync(join(s.dirs!.modeldir!, "weights.bin"), "epoch 1");
    h.clock.advance(60_000);
    await waitFor("modeldir checkpointed", () => existsSync(modeldir) && tarMember(modeldir, "weights.bin"));
    expect(tarMember(modeldir, "weights.bin")).toBe("epoch 1");
    const first = statSync(modeldir).mtimeMs;
    await checkpointsStep.cleanup!(s, finished);
    writeFileSync(join(s.dirs!.modeldir!, "weights.bin"), "epoch 2");
    h.clock.advance(600_000);
    await s.uploader!.upload([]);
    expect(statSync(modeldir).mtimeMs).toBe(first);
  });

  test("a newer attempt's claim stops the job at the next checkpoint", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, STEPS);
    const newer = h.state({ who: { ...s.who, attemptId: "newer" } });
    await prepareAll(newer, [layoutStep, logStep, claimStep]);
    writeFileSync(join(s.dirs!.modeldir!, "weights.bin"), "stale");
    h.clock.advance(60_000);
    await waitFor("the job is asked to stop", () => s.job.stopReason);
    expect(s.job.stopReason).toContain("newer");
    await checkpointsStep.cleanup!(s, finished);
  });
});
