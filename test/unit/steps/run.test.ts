// Covers src/task/steps/run.ts and job-handle.ts: the job's output goes to the log, its exit is
// kept, its pid goes into the owner record, and a stop asked for before it started stops it as it
// starts.

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { runStep } from "../../../src/task/steps/run.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";

async function prepared(script: string) {
  const h = harness();
  const s = h.state();
  await prepareAll(s, [layoutStep, logStep]);
  s.launch = { argv: ["sh", "-c", script], env: { PATH: "/usr/bin:/bin" }, cwd: s.attemptDir };
  return { h, s };
}

describe("run step", () => {
  test("output into the log, exit kept, pid in the owner record", async () => {
    const { h, s } = await prepared("echo to-stdout; echo to-stderr >&2; exit 3");
    await runStep.prepare!(s);
    expect(s.exit).toMatchObject({ code: 3, signal: null });
    await s.log!.close();
    const log = textOf(join(s.dirs!.output!, "output"));
    expect(log).toContain("to-stdout");
    expect(log).toContain("to-stderr");
    expect(log).toMatch(/the script ran \d+\.\d{3} s/);
    const owners = join(h.ctx.workingDir, "studio-runner", ".owners");
    const record = JSON.parse(readFileSync(join(owners, readdirSync(owners)[0]!), "utf8"));
    expect(record.job.pid).toBeGreaterThan(0);
  });

  test("a stop asked for before the start stops the job as it starts", async () => {
    const { s } = await prepared("sleep 30");
    s.job.stop("time limit reached (experiment.max_duration)", 1000);
    const started = Date.now();
    await runStep.prepare!(s);
    expect(s.exit!.killedFor).toBe("time limit reached (experiment.max_duration)");
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
