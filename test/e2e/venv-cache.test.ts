// Python environments are cached: the second experiment with the same requirements reuses the
// venv (the log says so, and it is measurably faster), and two concurrent ones build it once.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { enqueue, makeSandbox, RunnerProcess, simpleExperiment, tarMember } from "../helpers/e2e.ts";

const SCRIPT = "import six\nprint('six', six.__version__)\n";
const envSeconds = (log: string) => {
  const m = /python environment \S+ (?:ready in|reused in) ([\d.]+)(ms|s)/.exec(log);
  return m ? Number(m[1]) / (m[2] === "ms" ? 1000 : 1) : NaN;
};

describe("venv cache", () => {
  test("second run reuses the cached venv and is faster; two concurrent runs build it once", async () => {
    const sb = await makeSandbox("venv");
    const mk = (reqs: string[]) =>
      simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
        m.experiment.pythonver = "3.11";
        m.experiment.pythonenv = reqs;
      });

    // Sequential: build, then reuse.
    const first = mk(["six", "termcolor"]);
    enqueue(sb.queueRoot, "local_venv", first.message);
    let runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    expect(await runner.exited).toBe(0);
    const second = mk(["termcolor", "six"]); // same set, other order
    enqueue(sb.queueRoot, "local_venv", second.message);
    runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    expect(await runner.exited).toBe(0);
    const log1 = tarMember(join(first.experimentDir, "output.tar"));
    const log2 = tarMember(join(second.experimentDir, "output.tar"));
    expect(log1).toContain("building python environment");
    expect(log2).toContain("reusing cached python environment");
    expect(log2).not.toContain("building python environment");
    expect(runner.stderr).toMatch(/reusing cached python environment/);
    const t1 = envSeconds(log1);
    const t2 = envSeconds(log2);
    console.log(`venv: built in ${t1}s, reused in ${t2}s`);
    expect(t2).toBeLessThan(t1 / 5);
    expect(log2).toContain("six 1.");

    // Concurrent: two experiments wanting a new environment at the same time.
    const a = mk(["six", "tqdm"]);
    const b = mk(["tqdm", "six"]);
    enqueue(sb.queueRoot, "local_venv", a.message);
    enqueue(sb.queueRoot, "local_venv", b.message);
    runner = new RunnerProcess(sb, ["--limit-tasks", "2", "--max-cores", "2"]);
    expect(await runner.exited).toBe(0);
    const builds = runner.stderr.match(/building python environment/g) ?? [];
    expect(builds.length).toBe(1);
    const logs = [tarMember(join(a.experimentDir, "output.tar")), tarMember(join(b.experimentDir, "output.tar"))];
    expect(logs.filter((l) => l.includes("building python environment")).length).toBe(1);
    expect(logs.filter((l) => l.includes("waiting for python environment")).length).toBe(1);
    for (const l of logs) expect(l).toContain("exited with code 0");
  }, 600_000);
});
