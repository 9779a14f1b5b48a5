// Lifecycle: SIGTERM drains (running work finishes), a short grace checkpoints and requeues
// without counting a delivery, a second SIGTERM forces, time limits kill the whole process tree,
// checkpoints reach storage while the job runs, and `submit --wait` follows an experiment.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isProcessRunning } from "../../src/exec/pid.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  runBinary,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  tarNames,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";

const SLEEPER = `
import json, os, time
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "checkpoint.txt"), "w").write("epoch 1\\n")
print("started", flush=True)
time.sleep(float(os.environ.get("SLEEP_S", "3")))
print("done sleeping", flush=True)
`;

const mk = (sb: { storageRoot: string }, sleepS: string, edit?: (m: Record<string, any>) => void) =>
  simpleExperiment(sb.storageRoot, { "main.py": SLEEPER }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = { SLEEP_S: sleepS };
    edit?.(m);
  });

const attemptsOf = (root: string, q: string, id: string) =>
  JSON.parse(readFileSync(join(root, ".attempts", q, `${id}.json`), "utf8"));

describe("runner lifecycle", () => {
  test("SIGTERM drains: the running experiment finishes and is acked, then the runner exits 0", async () => {
    const sb = await makeSandbox("drain", { cacheDir: SHARED_CACHE });
    const exp = mk(sb, "3");
    enqueue(sb.queueRoot, "local_drain", exp.message);
    const r = new RunnerProcess(sb, []);
    await r.waitForLog(/starting experiment/);
    // SIGTERM once the script itself runs (it writes checkpoint.txt first), not a fixed time after.
    await waitFor("the job's checkpoint.txt", () =>
      readdirSync(sb.workDir, { recursive: true }).some((f) => String(f).endsWith("checkpoint.txt")),
    );
    r.child.kill("SIGTERM");
    expect(await r.exited).toBe(0);
    expect(r.stderr).toContain("draining (SIGTERM)");
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("done sleeping");
    expect(filesIn(join(sb.queueRoot, "local_drain"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".inflight", "local_drain"))).toEqual([]);
  }, 180_000);

  test("after the grace period the experiment is checkpointed and requeued without counting a delivery", async () => {
    const sb = await makeSandbox("grace", { cacheDir: SHARED_CACHE });
    const exp = mk(sb, "120");
    const id = enqueue(sb.queueRoot, "local_grace", exp.message);
    const r = new RunnerProcess(sb, ["--shutdown-grace", "1s"]);
    await r.waitForLog(/starting experiment/);
    await waitFor("the job's checkpoint.txt", () =>
      readdirSync(sb.workDir, { recursive: true }).some((f) => String(f).endsWith("checkpoint.txt")),
    );
    const started = Date.now();
    r.child.kill("SIGTERM");
    expect(await r.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.stderr).toContain("checkpointed and requeued");
    expect(tarNames(join(exp.experimentDir, "modeldir.tar"))).toContain("checkpoint.txt");
    expect(filesIn(join(sb.queueRoot, "local_grace"))).toEqual([id]);
    expect(attemptsOf(sb.queueRoot, "local_grace", id).deliveries).toBe(0);
  }, 180_000);

  test("a second SIGTERM forces: the experiment is stopped at once and requeued", async () => {
    const sb = await makeSandbox("force", { cacheDir: SHARED_CACHE });
    const exp = mk(sb, "120");
    const id = enqueue(sb.queueRoot, "local_force", exp.message);
    const r = new RunnerProcess(sb, []);
    await r.waitForLog(/starting experiment/);
    await waitFor("the job's checkpoint.txt", () =>
      readdirSync(sb.workDir, { recursive: true }).some((f) => String(f).endsWith("checkpoint.txt")),
    );
    r.child.kill("SIGTERM");
    await r.waitForLog(/draining/);
    r.child.kill("SIGTERM");
    expect(await r.exited).toBe(0);
    expect(r.stderr).toContain("forced shutdown");
    expect(filesIn(join(sb.queueRoot, "local_force"))).toEqual([id]);
    void exp;
  }, 180_000);

  test("the time limit kills the whole process tree and the log says why", async () => {
    const sb = await makeSandbox("timeout", { cacheDir: SHARED_CACHE });
    const script = `
import subprocess, time
child = subprocess.Popen(["setsid", "sleep", "300"])
print("child pid", child.pid, flush=True)
time.sleep(300)
`;
    const exp = simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
      m.experiment.pythonver = "3.11";
      m.experiment.max_duration = "2s";
    });
    enqueue(sb.queueRoot, "local_timeout", exp.message);
    // The child's pid as the job prints it is a host pid only outside a PID namespace: unsandboxed
    // here (the sandboxed tree is checked from the host in isolation/launchers.ts).
    const r = new RunnerProcess(sb, ["--sandbox", "none", "--limit-tasks", "1"]);
    expect(await r.exited).toBe(0);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("time limit of 2s (experiment.max_duration) reached");
    const childPid = Number(/child pid (\d+)/.exec(log)![1]);
    // Killed with the tree; allow its (re)parent a moment to reap it.
    await waitFor("the job's child to be gone", () => !isProcessRunning(childPid), 5_000);
    expect(filesIn(join(sb.queueRoot, "local_timeout"))).toEqual([]);
  }, 180_000);

  test("mutable artifacts are checkpointed to storage while the experiment runs", async () => {
    const sb = await makeSandbox("checkpoint", { cacheDir: SHARED_CACHE });
    const exp = mk(sb, "6", (m) => {
      m.config.saveWorkspaceFrequency = "1s";
    });
    enqueue(sb.queueRoot, "local_ckpt", exp.message);
    const r = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    await r.waitForLog(/starting experiment/);
    await waitFor(
      "checkpoints of modeldir and output in storage",
      () => existsSync(join(exp.experimentDir, "modeldir.tar")) && existsSync(join(exp.experimentDir, "output.tar")),
    );
    expect(r.stderr).not.toContain("finished");
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("started");
    expect(await r.exited).toBe(0);
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("done sleeping");
  }, 180_000);

  test("submit --wait queues the example and prints its log; a failing script exits 1", async () => {
    const sb = await makeSandbox("submit", { cacheDir: SHARED_CACHE });
    const r = new RunnerProcess(sb, ["--limit-tasks", "2"]);
    const common = [
      "submit",
      "--queue-root",
      sb.queueRoot,
      "--storage",
      `file://${sb.storageRoot}`,
      "--pythonver",
      "3.11",
      "--wait",
      "--wait-timeout",
      "5m",
    ];
    const ok = runBinary([
      ...common,
      "--workspace",
      join(REPO, "examples/hello"),
      "train.py",
      "--msg",
      "it's a 'test'",
      "--steps",
      "3",
    ]);
    expect(ok.code).toBe(0);
    const key = ok.stdout.split("\n")[0]!;
    expect(key).toMatch(/^\d+_[0-9a-f-]{36}$/);
    expect(ok.stdout).toContain(`msg="it's a 'test'" lr=0.1 steps=3`);
    expect(ok.stdout).toContain("step 3: loss=");
    expect(tarNames(join(sb.storageRoot, "studioml-artifacts", "experiments", key, "modeldir.tar"))).toContain(
      "model.json",
    );
    const bad = runBinary([
      ...common,
      "--workspace",
      join(REPO, "examples/hello"),
      "train.py",
      "--steps",
      "not-a-number",
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("invalid int value");
    expect(bad.stderr).toContain("exited with code 2");
    expect(await r.exited).toBe(0);
  }, 300_000);
});
