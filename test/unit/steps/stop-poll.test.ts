// Covers src/task/steps/stop-poll.ts: a user's "stopped" in the experiment's record stops the job at
// the next poll (--status-poll), not before; without a record nothing is polled.

import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { recordStep } from "../../../src/task/steps/record.ts";
import { stopPollStep } from "../../../src/task/steps/stop-poll.ts";
import { harness, prepareAll } from "../../helpers/attempt-harness.ts";
import { waitFor } from "../../helpers/wait-for.ts";

const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "" };

describe("stop-poll step", () => {
  test('"stopped" in the record stops the job at the next poll', async () => {
    const h = harness(undefined, undefined, { statusPollMs: 2_000 });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, recordStep, stopPollStep]);
    await s.recordStarted;
    h.clock.advance(2_000);
    await Bun.sleep(0);
    expect(s.job.stopReason).toBeUndefined();
    const record = JSON.parse(readFileSync(h.recordFile, "utf8"));
    writeFileSync(h.recordFile, JSON.stringify({ ...record, status: "stopped" }));
    // A poll still reading when its next tick comes lets that tick pass: keep the clock moving.
    await waitFor("the job is asked to stop", () => {
      h.clock.advance(2_000);
      return s.job.stopReason;
    });
    expect(s.job.stopReason).toBe("stopped by the user (experiment database)");
    await stopPollStep.cleanup!(s, finished);
    expect(h.clock.armed).toBe(0);
    await recordStep.cleanup!(s, finished);
  });

  test("no database, no polling", async () => {
    const h = harness(undefined, (m) => delete m.config.database);
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, recordStep, stopPollStep]);
    expect(h.clock.armed).toBe(0);
  });
});
