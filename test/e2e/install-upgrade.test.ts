// install.sh --upgrade and --rollback on a scratch root (DESTDIR, so no systemd: the runner is
// drained by SIGTERM from install.sh itself). The INSTALLED binary runs as a runner on a local
// queue with file storage while an experiment is submitted to it; install.sh --upgrade swaps in a
// second build (same sources, another version string) and every outcome is read on the host:
// /proc for the processes, the queue directory for the request, file storage for the results,
// sha256 of the files in <prefix>/bin.
//   - short --shutdown-grace: the experiment is checkpointed and requeued, the new binary resumes
//     it from the checkpoint and completes it;
//   - long --shutdown-grace: the experiment completes before the old runner exits;
//   - --rollback swaps studio-runner and studio-runner.previous (twice = back again);
//   - refusals leave the installed binary and a running runner untouched.

import { beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildIdentity, compileBinary } from "../../build/compile.ts";
import {
  ensureBinary,
  filesIn,
  jobPrinted,
  makeSandbox,
  REPO,
  runnerDefaults,
  type Sandbox,
  SHARED_CACHE,
  sha256File,
  tarMember,
  tarNames,
  testEnv,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";

const INSTALL_SH = join(REPO, "deploy", "install.sh");
const PREFIX = "/usr/local";
const QUEUE = "local"; // submit's default queue

/** Steps of one second each, resumed from modeldir/step.txt (the checkpoint) when it is there. */
const TRAIN = `
import json, os, sys, time
modeldir = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))["modeldir"]
state = os.path.join(modeldir, "step.txt")
start = int(open(state).read()) if os.path.exists(state) else 0
print(f"resuming at step {start}" if start else "starting", flush=True)
steps = int(sys.argv[1])
for i in range(start, steps):
    time.sleep(1)
    open(state, "w").write(str(i + 1))
    print(f"step {i + 1}", flush=True)
open(os.path.join(modeldir, "result.txt"), "w").write(f"trained {steps} steps\\n")
print("done training", flush=True)
`;

let oldBinary = "";
let newBinary = "";
let oldSha = "";
let newSha = "";
const NEW_VERSION = `${buildIdentity().version}-upgrade-test`;

beforeAll(async () => {
  // The build under test, copied: dist/studio-runner may be rebuilt while this file runs.
  const dir = (await makeSandbox("install-upgrade-build")).dir;
  oldBinary = join(dir, "old", "studio-runner");
  mkdirSync(join(dir, "old"));
  copyFileSync(ensureBinary(), oldBinary);
  chmodSync(oldBinary, 0o755);
  // A second build of the same sources with another version string: a real, distinguishable "new" binary.
  mkdirSync(join(dir, "new"));
  newBinary = join(dir, "new", "studio-runner");
  await compileBinary(newBinary, { ...buildIdentity(), version: NEW_VERSION });
  oldSha = sha256File(oldBinary);
  newSha = sha256File(newBinary);
}, 300_000);

type Result = { code: number | null; out: string; err: string };

/** Runs a command without blocking this process (a runner it started keeps writing to its pipes). */
async function run(command: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  const child = spawn(command, args, { env: { ...testEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { code, out, err };
}

const installSh = (root: string, args: string[]) =>
  run("bash", [INSTALL_SH, "--prefix", PREFIX, ...args], { DESTDIR: root });

const installed = (root: string) => join(root, PREFIX.slice(1), "bin", "studio-runner");
const previousOf = (root: string) => `${installed(root)}.previous`;

/** /proc/PID/exe, or undefined when the process is gone (or a zombie: it has no executable any more). */
function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** The installed binary as a runner on the sandbox's local queue and file storage. */
class InstalledRunner {
  readonly child: ChildProcess;
  readonly pid: number;
  stderr = "";
  readonly exited: Promise<number | null>;

  constructor(root: string, sb: Sandbox, args: string[]) {
    this.child = spawn(
      installed(root),
      [
        "run",
        "--queue-root",
        sb.queueRoot,
        "--working-dir",
        sb.workDir,
        "--cache-dir",
        sb.cacheDir,
        ...runnerDefaults(sb, args),
        ...args,
      ],
      { cwd: sb.dir, env: testEnv(), stdio: ["ignore", "ignore", "pipe"] },
    );
    this.pid = this.child.pid!;
    this.child.stderr!.on("data", (d) => (this.stderr += d));
    this.exited = new Promise((r) => this.child.on("exit", (code, signal) => r(code ?? (signal ? -1 : null))));
  }

  async waitForLog(pattern: RegExp, timeoutMs = 120_000): Promise<void> {
    await waitFor(
      `runner log ${pattern}`,
      () => {
        if (this.child.exitCode !== null) throw new Error(`runner exited early:\n${this.stderr}`);
        return pattern.test(this.stderr);
      },
      timeoutMs,
    ).catch((e) => {
      throw new Error(`${e.message}\n${this.stderr}`);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** `studio-runner submit` of the installed binary: a workspace with train.py, STEPS steps. */
async function submit(root: string, sb: Sandbox, steps: number): Promise<{ key: string; experimentDir: string }> {
  const ws = join(sb.dir, "workspace");
  mkdirSync(ws, { recursive: true });
  writeFileSync(join(ws, "train.py"), TRAIN);
  const r = await run(installed(root), [
    "submit",
    "--queue-root",
    sb.queueRoot,
    "--storage",
    `file://${sb.storageRoot}`,
    "--workspace",
    ws,
    "--pythonver",
    "3.11",
    "train.py",
    String(steps),
  ]);
  expect(r.code).toBe(0);
  const key = r.out.split("\n")[0]!;
  expect(key).toMatch(/^\d+_[0-9a-f-]{36}$/);
  return { key, experimentDir: join(sb.storageRoot, "studioml-artifacts", "experiments", key) };
}

const queued = (sb: Sandbox) => filesIn(join(sb.queueRoot, QUEUE));
const claimed = (sb: Sandbox) => filesIn(join(sb.queueRoot, ".inflight", QUEUE));

async function installFresh(name: string): Promise<{ sb: Sandbox; root: string }> {
  const sb = await makeSandbox(name, { cacheDir: SHARED_CACHE });
  const root = join(sb.dir, "root");
  const r = await installSh(root, ["--binary", oldBinary]);
  expect(r.code).toBe(0);
  expect(sha256File(installed(root))).toBe(oldSha);
  expect(existsSync(previousOf(root))).toBe(false);
  return { sb, root };
}

describe("install.sh --upgrade / --rollback (DESTDIR, drained by SIGTERM)", () => {
  test("short grace: the running experiment is checkpointed and requeued, the upgraded binary resumes and " +
    "completes it; --rollback swaps back and forth", async () => {
    const { sb, root } = await installFresh("upgrade-requeue");
    const old = new InstalledRunner(root, sb, ["--shutdown-grace", "2s"]);
    let fresh: InstalledRunner | undefined;
    try {
      const exp = await submit(root, sb, 25);
      const [id] = await waitFor("the request in the queue or claimed", () => {
        const ids = [...queued(sb), ...claimed(sb)];
        return ids.length ? ids : undefined;
      });
      await waitFor("the job's step 3", () => jobPrinted(sb.workDir, "step 3"));
      expect(exeOf(old.pid)).toBe(installed(root)); // the installed binary runs it

      const up = await installSh(root, ["--upgrade", "--binary", newBinary, "--drain-timeout", "120"]);
      expect(up.err).toBe("");
      expect(up.code).toBe(0);
      expect(up.out).toContain(`SIGTERM to runner ${old.pid}`);
      expect(up.out).toContain(`-> ${NEW_VERSION}`);
      expect(up.out).toContain("the drained runner was not started again");
      // On the host: the old runner is gone when install.sh returns, and it exited cleanly.
      expect(exeOf(old.pid)).toBeUndefined();
      expect(await old.exited).toBe(0);
      // The request is back in the queue, unclaimed; the checkpoint reached storage; not finished.
      expect(queued(sb)).toEqual([id!]);
      expect(claimed(sb)).toEqual([]);
      expect(tarNames(join(exp.experimentDir, "modeldir.tar"))).toContain("step.txt");
      expect(tarNames(join(exp.experimentDir, "modeldir.tar"))).not.toContain("result.txt");
      // The swap: the new build is installed, the old one kept as studio-runner.previous.
      expect(sha256File(installed(root))).toBe(newSha);
      expect(sha256File(previousOf(root))).toBe(oldSha);
      expect(filesIn(join(root, "usr/local/bin"), true).sort()).toEqual(["studio-runner", "studio-runner.previous"]);
      expect((await run(installed(root), ["--version"])).out.trim()).toBe(NEW_VERSION);

      // The new binary takes the requeued experiment, resumes it from the checkpoint and completes it.
      fresh = new InstalledRunner(root, sb, ["--limit-tasks", "1"]);
      await waitFor("the new runner's executable", () => exeOf(fresh!.pid));
      expect(exeOf(fresh.pid)).toBe(installed(root));
      expect(await fresh.exited).toBe(0);
      const output = tarMember(join(exp.experimentDir, "output.tar"));
      expect(output).toMatch(/resuming at step \d+/);
      expect(output).toContain("step 25");
      expect(output).toContain("done training");
      expect(tarMember(join(exp.experimentDir, "modeldir.tar"), "result.txt")).toBe("trained 25 steps\n");
      expect(queued(sb)).toEqual([]);
      expect(claimed(sb)).toEqual([]);

      // --rollback: the previous binary is back, the upgraded one becomes .previous; again: reversed.
      const back = await installSh(root, ["--rollback"]);
      expect(back.code).toBe(0);
      expect(back.out).toContain("nothing to drain");
      expect(sha256File(installed(root))).toBe(oldSha);
      expect(sha256File(previousOf(root))).toBe(newSha);
      const again = await installSh(root, ["--rollback"]);
      expect(again.code).toBe(0);
      expect(sha256File(installed(root))).toBe(newSha);
      expect(sha256File(previousOf(root))).toBe(oldSha);
    } finally {
      await old.stop();
      await fresh?.stop();
    }
  }, 600_000);

  test("long grace: the running experiment completes before the old runner exits, then the swap", async () => {
    const { sb, root } = await installFresh("upgrade-complete");
    const old = new InstalledRunner(root, sb, ["--shutdown-grace", "5m"]);
    try {
      const exp = await submit(root, sb, 8);
      await waitFor("the job's step 2", () => jobPrinted(sb.workDir, "step 2"));
      expect(existsSync(join(exp.experimentDir, "output.tar"))).toBe(false);
      const up = await installSh(root, ["--upgrade", "--binary", newBinary, "--drain-timeout", "300"]);
      expect(up.code).toBe(0);
      expect(up.out).toContain(`SIGTERM to runner ${old.pid}`);
      expect(exeOf(old.pid)).toBeUndefined();
      expect(await old.exited).toBe(0);
      // Finished and acknowledged by the old runner before it exited: results stored, queue empty.
      const output = tarMember(join(exp.experimentDir, "output.tar"));
      expect(output).toContain("step 8");
      expect(output).toContain("done training");
      expect(output).not.toContain("resuming");
      expect(tarMember(join(exp.experimentDir, "modeldir.tar"), "result.txt")).toBe("trained 8 steps\n");
      expect(queued(sb)).toEqual([]);
      expect(claimed(sb)).toEqual([]);
      expect(sha256File(installed(root))).toBe(newSha);
      expect(sha256File(previousOf(root))).toBe(oldSha);
    } finally {
      await old.stop();
    }
  }, 600_000);

  test("refusals: --rollback without a previous binary, --upgrade with nothing installed or a new binary " +
    "that does not run; the installed binary and its running runner are left alone", async () => {
    const { sb, root } = await installFresh("upgrade-refusals");

    const noPrevious = await installSh(root, ["--rollback"]);
    expect(noPrevious.code).toBe(1);
    expect(noPrevious.err).toContain("no previous binary to roll back to");
    expect(sha256File(installed(root))).toBe(oldSha);

    const empty = join(sb.dir, "empty-root");
    const nothing = await installSh(empty, ["--upgrade", "--binary", newBinary]);
    expect(nothing.code).toBe(1);
    expect(nothing.err).toContain("nothing is installed");
    expect(existsSync(installed(empty))).toBe(false);

    const runner = new InstalledRunner(root, sb, []);
    try {
      await runner.waitForLog(/local queues in/);
      const garbage = join(sb.dir, "garbage");
      writeFileSync(garbage, crypto.getRandomValues(new Uint8Array(4096)));
      chmodSync(garbage, 0o755);
      const script = join(sb.dir, "script");
      writeFileSync(script, "#!/bin/sh\necho 'not a runner'\n");
      chmodSync(script, 0o755);
      const notExecutable = join(sb.dir, "not-executable");
      writeFileSync(notExecutable, "");
      chmodSync(notExecutable, 0o644);
      for (const [bad, message] of [
        [garbage, "does not run here"],
        [script, "does not run here"],
        [notExecutable, "is not an executable file"],
      ] as const) {
        const r = await installSh(root, ["--upgrade", "--binary", bad]);
        expect(r.code).toBe(1);
        expect(r.err).toContain(message);
        expect(r.out).not.toContain("SIGTERM");
        expect(sha256File(installed(root))).toBe(oldSha);
        expect(filesIn(join(root, "usr/local/bin"), true)).toEqual(["studio-runner"]);
      }
      // The runner was never signalled: still running, from the installed file, not draining.
      expect(runner.child.exitCode).toBeNull();
      expect(exeOf(runner.pid)).toBe(installed(root));
      expect(runner.stderr).not.toContain("draining");
    } finally {
      await runner.stop();
    }
  }, 300_000);
});
