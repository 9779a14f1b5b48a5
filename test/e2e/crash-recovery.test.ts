// SIGKILL of the runner mid-job, then a restart: the claim is recovered, the orphaned
// experiment is stopped, the experiment runs again and completes; nothing is lost or failed.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isProcessRunning } from "../../src/exec/pid.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";

const SCRIPT = `
import os, time
print("attempt started pid", os.getpid(), flush=True)
time.sleep(float(os.environ.get("SLEEP_S", "4")))
print("attempt finished", flush=True)
`;

function findFile(root: string, name: string): string | undefined {
  if (!existsSync(root)) return undefined;
  for (const entry of readdirSync(root, { recursive: true }) as string[])
    if (entry.endsWith(name)) return join(root, entry);
  return undefined;
}

describe("runner killed mid-job", () => {
  test("restart recovers the message, stops the orphan and completes the experiment", async () => {
    const sb = await makeSandbox("crash", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = { SLEEP_S: "6" };
    });
    enqueue(sb.queueRoot, "local_crash", exp.message);

    // The job reports its own pid, a host pid only outside a PID namespace: this is the
    // unsandboxed case (a sandboxed job dies with its bwrap; isolation/limits.ts checks that on the host).
    const first = new RunnerProcess(sb, ["--sandbox", "none"]);
    await first.waitForLog(/starting experiment/);
    // Wait until the script itself runs.
    const pid = await waitFor("the script's own pid in its live output", () => {
      const out = findFile(sb.workDir, "output/output");
      return Number((out && /attempt started pid (\d+)/.exec(readFileSync(out, "utf8"))?.[1]) || 0);
    });
    expect(pid).toBeGreaterThan(0);
    first.child.kill("SIGKILL");
    await first.exited;
    expect(filesIn(join(sb.queueRoot, ".inflight", "local_crash")).length).toBe(1);

    const second = new RunnerProcess(sb, ["--sandbox", "none", "--limit-tasks", "1"]);
    expect(await second.exited).toBe(0);
    expect(second.stderr).toContain(`stopped orphaned experiment ${exp.key}`);
    expect(second.stderr).toContain("recovered message local_crash/");
    expect(isProcessRunning(pid)).toBe(false);

    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("delivery 2 from queue local_crash");
    expect(log).toContain("attempt finished");
    expect(log).toContain("exited with code 0");
    expect(filesIn(join(sb.queueRoot, "local_crash"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".inflight", "local_crash"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".failed", "local_crash"))).toEqual([]);
  }, 300_000);
});
