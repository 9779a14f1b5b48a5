// Covers src/task/steps/cgroup.ts against this machine's real cgroups where the runner may make
// them: the job's command is wrapped into its group, the peak memory is told after the exit, and
// the group goes at cleanup; without cgroup support, or when the group cannot be made, the job
// runs as it is with a warning in its log (never a failed attempt).

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { detectCgroups } from "../../../src/exec/cgroup.ts";
import { cgroupStep } from "../../../src/task/steps/cgroup.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { runStep } from "../../../src/task/steps/run.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";

const support = detectCgroups();
const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "" };
const launch = (dir: string) => ({ argv: ["sh", "-c", "exit 0"], env: { PATH: "/usr/bin:/bin" }, cwd: dir });

describe("cgroup step", () => {
  test.if(support.version !== "none")("the job runs in its own group; peak memory after the exit", async () => {
    const h = harness(undefined, undefined, { cgroups: support });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    s.launch = launch(s.attemptDir);
    const step = cgroupStep();
    await step.prepare!(s);
    expect(s.launch.argv).not.toEqual(["sh", "-c", "exit 0"]);
    await runStep.prepare!(s);
    expect(s.exit!.code).toBe(0);
    await step.afterExit!(s);
    await step.cleanup!(s, finished);
    await s.log!.close();
    expect(textOf(join(s.dirs!.output!, "output"))).toMatch(/peak memory \d/);
  });

  test("no cgroup support: the command is left as it is", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    s.launch = launch(s.attemptDir);
    await cgroupStep().prepare!(s);
    expect(s.launch.argv).toEqual(["sh", "-c", "exit 0"]);
  });

  test("a group that cannot be made: a warning, and the job runs without it", async () => {
    const broken = { version: 2 as const, parentDir: "/proc/no-such-cgroup", cpu: true, pids: true, notes: [] };
    const h = harness(undefined, undefined, { cgroups: broken });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    s.launch = launch(s.attemptDir);
    await cgroupStep().prepare!(s);
    expect(s.launch.argv).toEqual(["sh", "-c", "exit 0"]);
    await s.log!.close();
    expect(textOf(join(s.dirs!.output!, "output"))).toContain("warning: the experiment runs without its cgroup");
  });
});
