// Covers src/task/steps/claim.ts: the attempt's claim is written to the experiment's place in
// storage, and an older attempt that checks its fence afterwards is superseded.

import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { SupersededError } from "../../../src/task/attempt-fence.ts";
import { claimStep } from "../../../src/task/steps/claim.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { harness, prepareAll } from "../../helpers/attempt-harness.ts";

describe("claim step", () => {
  test("the newer attempt's claim supersedes the older one at its next check", async () => {
    const h = harness();
    const older = h.state({ who: { key: h.request.experiment.key, attemptId: "older", source: "local", queue: "q" } });
    await prepareAll(older, [layoutStep, logStep, claimStep]);
    expect(readdirSync(h.experimentDir).some((f) => f.includes("attempt"))).toBe(true);
    await older.fence!.check();
    const newer = h.state({ who: { key: h.request.experiment.key, attemptId: "newer", source: "local", queue: "q" } });
    await prepareAll(newer, [layoutStep, logStep, claimStep]);
    await newer.fence!.check();
    await expect(older.fence!.check()).rejects.toBeInstanceOf(SupersededError);
  });
});
