// Covers src/task/steps/record.ts: the experiment's record goes running → finished (also for a
// request the attempt rejected), stays unfinished for a retried attempt, and is closed once.

import { describe, expect, test } from "bun:test";
import { PermanentError, RetryableError } from "../../../src/errors.ts";
import { recordStep } from "../../../src/task/steps/record.ts";
import { harness, textOf } from "../../helpers/attempt-harness.ts";

const statusOf = (file: string) => {
  const text = textOf(file);
  return text ? (JSON.parse(text).status as string) : undefined;
};

describe("record step", () => {
  test("running on prepare (not awaited), finished on cleanup of a finished attempt", async () => {
    const h = harness();
    const s = h.state();
    await recordStep.prepare!(s);
    await s.recordStarted;
    expect(statusOf(h.recordFile)).toBe("running");
    await recordStep.cleanup!(s, { kind: "finished", exit: { code: 0, signal: null }, reason: "exited with code 0" });
    expect(statusOf(h.recordFile)).toBe("finished");
    await recordStep.cleanup!(s, { kind: "finished", exit: { code: 0, signal: null }, reason: "again" });
  });

  test("a rejected request's record is finished; a retried one's is left running", async () => {
    const rejected = harness();
    const a = rejected.state();
    await recordStep.prepare!(a);
    await recordStep.cleanup!(a, { kind: "fault", fault: new PermanentError("bad"), reason: "bad" });
    expect(statusOf(rejected.recordFile)).toBe("finished");

    const retried = harness();
    const b = retried.state();
    await recordStep.prepare!(b);
    await recordStep.cleanup!(b, { kind: "fault", fault: new RetryableError("down"), reason: "down" });
    expect(statusOf(retried.recordFile)).toBe("running");
  });

  test("no database in the request: no record", async () => {
    const h = harness(undefined, (m) => delete m.config.database);
    const s = h.state();
    await recordStep.prepare!(s);
    expect(s.record).toBeUndefined();
  });
});
