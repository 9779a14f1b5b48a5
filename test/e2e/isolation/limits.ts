// Resource limits, leftover processes, containers and the job's environment (issue #14: holes 5
// (cgroup part), 1 for apptainer, 12 (env names); attack classes 3 for apptainer, 14, 15, 16 of
// docs/security.md), from the compiled binary. Every check is made on the host: /proc scanned for
// the job's marker, /proc/<pid>/cgroup read while the job sleeps, the stored output artifact and
// the runner's log searched for canary values, the apptainer stand-in's own record of its argv and
// environment. The cgroup and leftover cases run with `--sandbox none` explicitly (where the hole
// was) and with the default sandbox; they hold in both.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { detectCgroups } from "../../../src/exec/cgroup.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../../helpers/e2e.ts";
import { processesWith } from "../../helpers/host-processes.ts";
import { waitFor } from "../../helpers/wait-for.ts";

const support = detectCgroups();
const cgroupsUsable = support.version !== "none";
const pidsLimited = (support.version === 1 && !!support.parentDirs.pids) || (support.version === 2 && !!support.pids);
if (!cgroupsUsable)
  console.warn(
    `\n*** cgroups unusable here ` +
      `(${support.version === "none" ? support.reason : ""}): the limits isolation ` +
      `tests cannot run ***\n`,
  );
if (cgroupsUsable && !pidsLimited) console.warn("\n*** no pids controller for us: the fork-bomb test cannot run ***\n");
const STANDIN = join(REPO, "test/helpers/apptainer-standin");
const HAVE_BWRAP = existsSync("/usr/bin/bwrap");

/** Waits until `done()` or `timeoutMs`; returns done()'s last answer. */
const MODES = [
  { name: "--sandbox none", args: ["--sandbox", "none"] },
  { name: "the default sandbox", args: [] as string[] },
];

/** A plain experiment (no requirements, python 3.11) with `main` as its script and `marker` as its only argument. */
function experiment(storageRoot: string, main: string, marker: string, edit?: (m: Record<string, any>) => void) {
  return simpleExperiment(storageRoot, { "main.py": main }, (m) => {
    m.experiment.pythonver = "3.11";
    m.experiment.args = [marker];
    delete m.config.database;
    edit?.(m);
  });
}

const DOUBLE_FORK = `import os, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", [marker, "300"])
    os._exit(0)
os.wait()
print("left a setsid, double-forked grandchild sleeping 300 s", flush=True)
time.sleep(3)
`;

describe.skipIf(!cgroupsUsable)("limits: processes never outlive their job (class 15, hole 5)", () => {
  for (const mode of MODES) {
    test(`${mode.name}: a setsid + double-fork grandchild is gone from the host when ` +
      `the experiment finishes`, async () => {
      const sb = await makeSandbox("iso-limits-leftover", { cacheDir: SHARED_CACHE });
      const marker = `leftover-marker-${crypto.randomUUID()}`;
      const exp = experiment(sb.storageRoot, DOUBLE_FORK, marker);
      enqueue(sb.queueRoot, "local_leftover", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1", ...mode.args]);
      try {
        // The grandchild is seen on the host while the job runs (a sleep whose argv[0] is the marker)…
        await waitFor("the grandchild on the host", () => processesWith(`${marker}\u0000300`).length > 0, 120_000, 50);
        expect(await runner.exited).toBe(0);
        const out = tarMember(join(exp.experimentDir, "output.tar"));
        expect(out).toContain("left a setsid, double-forked grandchild");
        expect(out).toContain("experiment exited with code 0");
        expect(filesIn(join(sb.queueRoot, "local_leftover"))).toEqual([]);
        // …and nothing with the marker is left once the experiment is finished (give the kernel a moment to reap).
        await waitFor("no process with the marker", () => processesWith(marker).length === 0, 3_000, 50);
      } finally {
        for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
      }
    }, 180_000);

    test(`${mode.name}: a request with no ram or cpus still runs in a cgroup (read on ` +
      `the host while it sleeps)`, async () => {
      const sb = await makeSandbox("iso-limits-nolimits", { cacheDir: SHARED_CACHE });
      const marker = `cgroup-marker-${crypto.randomUUID()}`;
      const exp = experiment(
        sb.storageRoot,
        "import time\ntime.sleep(6)\nprint('slept', flush=True)\n",
        marker,
        (m) => {
          m.experiment.resources_needed = { gpus: 0, hdd: "10m" };
          m.config.resources_needed = { gpus: 0, hdd: "10m" };
        },
      );
      enqueue(sb.queueRoot, "local_nolimits", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1", ...mode.args]);
      // The job's python (its command line holds the marker; under bwrap, the one whose parent is not bwrap itself).
      const cgroups = await waitFor(
        "the job's python on the host",
        () => {
          for (const pid of processesWith(marker)) {
            try {
              const exe = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "";
              if (!exe.includes("python")) continue;
              return readFileSync(`/proc/${pid}/cgroup`, "utf8");
            } catch {
              // gone
            }
          }
          return "";
        },
        120_000,
      );
      expect(await runner.exited).toBe(0);
      console.log(`the job's /proc/<pid>/cgroup:\n${cgroups}`);
      expect(cgroups).toMatch(/\/studio-runner\/job-\d+-\d+-\d+-p\d+/);
      if (support.version === 1) {
        expect(cgroups).toMatch(/memory:\S*\/studio-runner\/job-/);
        if (pidsLimited) expect(cgroups).toMatch(/pids:\S*\/studio-runner\/job-/);
      }
      expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("experiment exited with code 0");
    }, 180_000);
  }
});

describe.skipIf(!cgroupsUsable)(
  "limits: a job and its setsid grandchild do not survive their runner (class 15)",
  () => {
    test("--sandbox none: the runner is SIGKILLed mid-job; the next runner on the " +
      "machine kills what its job groups still hold", async () => {
      const sb = await makeSandbox("iso-limits-restart", { cacheDir: SHARED_CACHE });
      const marker = `restart-marker-${crypto.randomUUID()}`;
      const exp = experiment(sb.storageRoot, DOUBLE_FORK.replace("time.sleep(3)", "time.sleep(300)"), marker);
      enqueue(sb.queueRoot, "local_restart", exp.message);
      const first = new RunnerProcess(sb, ["--sandbox", "none"]);
      try {
        await waitFor("the grandchild on the host", () => processesWith(`${marker}\u0000300`).length > 0, 120_000, 50);
        first.child.kill("SIGKILL");
        await first.exited;
        // A negative check (nothing kills them once their runner is gone): a fixed moment, no event to await.
        await Bun.sleep(300);
        // The runner is gone; its job and the grandchild still run (nothing in the kernel stops them).
        expect(processesWith(`${marker}\u0000300`).length).toBe(1);
        // Another runner starts on this machine (its own empty queue root): it empties the dead runner's groups.
        const other = await makeSandbox("iso-limits-restart-next", { cacheDir: SHARED_CACHE });
        const next = new RunnerProcess(other, ["--sandbox", "none", "--limit-idle-duration", "1s"]);
        expect(await next.exited).toBe(0);
        expect(next.stderr).toContain("killed the processes left in");
        await waitFor("no process with the marker", () => processesWith(marker).length === 0, 5_000, 50);
      } finally {
        for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
      }
    }, 240_000);
  },
);

const FORK_BOMB = `import os, sys, time
marker = sys.argv[1]
made = 0
try:
    for i in range(20000):
        if os.fork() == 0:
            try:
                os.execv("/bin/sleep", [marker, "120"])
            finally:
                os._exit(1)
        made += 1
except OSError as e:
    print(f"fork failed after {made} children: {type(e).__name__}", flush=True)
print(f"made {made} children", flush=True)
time.sleep(8)
`;

describe.skipIf(!cgroupsUsable || !pidsLimited)("limits: resource exhaustion (class 14)", () => {
  test("--sandbox none: a fork bomb is held by the pids limit; the runner stays alive " +
    "and serves the next experiment", async () => {
    const sb = await makeSandbox("iso-limits-forkbomb", { cacheDir: SHARED_CACHE });
    const marker = `forkbomb-marker-${crypto.randomUUID()}`;
    const bomb = experiment(sb.storageRoot, FORK_BOMB, marker, (m) => {
      m.experiment.resources_needed = { cpus: 1, gpus: 0, ram: "1g", hdd: "10m" };
      m.config.resources_needed = m.experiment.resources_needed;
    });
    const after = experiment(sb.storageRoot, "print('the next experiment ran', flush=True)\n", `after-${marker}`);
    // One at a time (--max-cores 1): whichever runs second, the runner must still be there to take it.
    enqueue(sb.queueRoot, "local_forkbomb", bomb.message);
    enqueue(sb.queueRoot, "local_forkbomb", after.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "2", "--max-cores", "1", "--sandbox", "none"]);
    // Watched on the host through the kernel's own count (pids.current of this runner's job groups):
    // cheap enough not to slow the bomb down, unlike a /proc scan over thousands of processes.
    const pidsParent =
      support.version === 1 ? support.parentDirs.pids! : support.version === 2 ? support.parentDir : "";
    let most = 0;
    const watching = (async () => {
      while (runner.child.exitCode === null && runner.child.signalCode === null) {
        for (const name of filesIn(pidsParent)) {
          if (!name.startsWith(`job-${runner.child.pid}-`)) continue;
          try {
            most = Math.max(most, Number(readFileSync(join(pidsParent, name, "pids.current"), "utf8")));
          } catch {
            // removed meanwhile
          }
        }
        await Bun.sleep(100);
      }
    })();
    try {
      expect(await runner.exited).toBe(0);
      await watching;
      const out = tarMember(join(bomb.experimentDir, "output.tar"));
      console.log(
        `fork bomb: at most ${most} processes in its cgroup (pids.current, read on the ` +
          `host); its log says: ` +
          `${out.match(/fork failed[^\n]*|made \d+ children/g)?.join("; ")}`,
      );
      const made = Number(/made (\d+) children/.exec(out)?.[1]);
      expect(out).toContain("fork failed after");
      // Held at the default pids limit (4096 for a 1-cpu job): the job, its children, nothing more.
      expect(made).toBeLessThan(4096);
      expect(most).toBeGreaterThan(1000);
      expect(most).toBeLessThanOrEqual(4096);
      expect(out).toMatch(/experiment (exited with code 0|killed)/);
      expect(tarMember(join(after.experimentDir, "output.tar"))).toContain("the next experiment ran");
      expect(filesIn(join(sb.queueRoot, "local_forkbomb"))).toEqual([]);
      await waitFor("no process with the marker", () => processesWith(marker).length === 0, 5_000, 50);
    } finally {
      for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
    }
  }, 300_000);

  test("--sandbox none: 2 GB written to /dev/shm (tmpfs) with ram 256MiB is killed by the memory limit", async () => {
    const sb = await makeSandbox("iso-limits-shm", { cacheDir: SHARED_CACHE });
    const marker = `shm-marker-${crypto.randomUUID()}`;
    const shmFile = `/dev/shm/${marker}`;
    const main = `import sys
path = "/dev/shm/" + sys.argv[1]
block = b"\\0" * (16 * 1024 * 1024)
with open(path, "wb") as f:
    for i in range(128):
        f.write(block)
        f.flush()
        if i % 8 == 0:
            print(f"wrote {(i + 1) * 16} MiB", flush=True)
print("wrote 2 GiB to tmpfs", flush=True)
`;
    const exp = experiment(sb.storageRoot, main, marker, (m) => {
      m.experiment.resources_needed = { cpus: 1, gpus: 0, ram: "256m", hdd: "10m" };
      m.config.resources_needed = m.experiment.resources_needed;
    });
    enqueue(sb.queueRoot, "local_shm", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--sandbox", "none"]);
    try {
      expect(await runner.exited).toBe(0);
      const out = tarMember(join(exp.experimentDir, "output.tar"));
      expect(out).toContain("wrote 16 MiB");
      expect(out).not.toContain("wrote 2 GiB to tmpfs");
      expect(out).toContain("experiment killed by its memory limit of 256.0MiB (resources_needed.ram)");
      expect(runner.stderr).toContain(`experiment ${exp.key} finished: killed by its memory limit`);
      // On the host: the file the job left in the shared /dev/shm stopped at the limit.
      if (existsSync(shmFile)) expect(statSync(shmFile).size).toBeLessThanOrEqual(256 * 2 ** 20);
      expect(filesIn(join(sb.queueRoot, "local_shm"))).toEqual([]);
    } finally {
      rmSync(shmFile, { force: true });
    }
  }, 180_000);
});

describe("limits: the runner's secrets never reach the job or its stored output (hole 12)", () => {
  // Canaries in the runner's own environment. Values marked secret must appear nowhere in storage
  // nor in the runner's log; the rest (socket paths …) must only be absent from the job's environment.
  const SECRET: Record<string, string> = {
    AZURE_STORAGE_CONNECTION_STRING:
      "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=azCanaryE2e01==;EndpointSuffix=core.windows.net",
    GITHUB_TOKEN: "githubCanaryE2e02",
    HF_TOKEN: "hfCanaryE2e03",
    NPM_TOKEN: "npmCanaryE2e04",
    VAULT_TOKEN: "vaultCanaryE2e05",
    DOCKER_AUTH_CONFIG: "dockerCanaryE2e06",
    DATABASE_URL: "postgres://app:dbCanaryE2e07@db:5432/app",
    SERVICE_PASSWORD: "passwordCanaryE2e08",
    WANDB_API_KEY: "wandbCanaryE2e09",
    APP_CLIENT_SECRET: "clientSecretCanaryE2e10",
  };
  const HANDLES: Record<string, string> = {
    SSH_AUTH_SOCK: "/tmp/ssh-canary-e2e/agent.1",
    SSH_AGENT_PID: "424242",
    KUBECONFIG: "/etc/kube-canary-e2e/config",
  };
  const JOB = `import json, os
print("ENV " + json.dumps(sorted(os.environ)), flush=True)
# Under --sandbox none as root the job may read the runner's own environment: the masker must
# still keep every secret value out of the stored log.
try:
    print("RUNNER " + open(f"/proc/{os.getppid()}/environ").read().replace("\\0", " "), flush=True)
except Exception as e:
    print("RUNNER unreadable " + type(e).__name__, flush=True)
`;
  for (const mode of MODES) {
    test(`${mode.name}: AZURE_*, *_TOKEN, SSH_AUTH_SOCK … are withheld, and their ` +
      `values are absent from the stored output and the log`, async () => {
      const sb = await makeSandbox("iso-limits-env", { cacheDir: SHARED_CACHE });
      const exp = experiment(sb.storageRoot, JOB, "env");
      enqueue(sb.queueRoot, "local_env", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1", ...mode.args], { ...SECRET, ...HANDLES });
      expect(await runner.exited).toBe(0);
      const out = tarMember(join(exp.experimentDir, "output.tar"));
      expect(out).toContain("experiment exited with code 0");
      const names = JSON.parse(/^ENV (.*)$/m.exec(out)![1]!) as string[];
      for (const name of [...Object.keys(SECRET), ...Object.keys(HANDLES)]) expect(names).not.toContain(name);
      for (const value of Object.values(SECRET)) {
        expect(out).not.toContain(value);
        expect(runner.stderr + runner.stdout).not.toContain(value);
      }
      // Nothing in storage holds a value either (records, the _results document, every artifact).
      const stored = readdirSync(exp.experimentDir)
        .map((f) => readFileSync(join(exp.experimentDir, f), "latin1"))
        .join("\n");
      for (const value of Object.values(SECRET)) expect(stored).not.toContain(value);
    }, 180_000);
  }
});

describe.skipIf(!HAVE_BWRAP)(
  "limits: apptainer gets a fixed environment and no option from the request (hole 1, class 3)",
  () => {
    const JOB = `import os
print("in container; LD_PRELOAD=" + os.environ.get("LD_PRELOAD", "-")
      + " USER_VAR=" + os.environ.get("USER_VAR", "-"), flush=True)
`;
    test("config.env's APPTAINER_*, SINGULARITY_*, LD_* reach only the container's env " +
      "file, never the tool's own environment", async () => {
      const sb = await makeSandbox("iso-limits-apptainer-env");
      const log = join(sb.dir, "standin.log");
      const exp = simpleExperiment(sb.storageRoot, { "main.py": JOB }, (m) => {
        m.experiment.artifacts._singularity = { qualified: "docker://python:3.11-slim", mutable: false, unpack: false };
        m.config.env = {
          USER_VAR: "from config.env",
          APPTAINER_BIND: "/etc:/hostetc",
          SINGULARITY_BIND: "/root:/hostroot",
          APPTAINERENV_INJECTED: "x",
          APPTAINER_CONFIGDIR: "/tmp/evil-config",
          LD_PRELOAD: "/nonexistent/evil.so",
          LD_LIBRARY_PATH: "/nonexistent/evil-libs",
        };
      });
      enqueue(sb.queueRoot, "local_apptainer", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--debug"], {
        PATH: `${STANDIN}:${process.env.PATH}`,
        APPTAINER_STANDIN_LOG: log,
        HF_TOKEN: "hfCanaryApptainer01",
      });
      expect(await runner.exited).toBe(0);
      const out = tarMember(join(exp.experimentDir, "output.tar"));
      expect(out).toContain("USER_VAR=from config.env");
      expect(out).toContain("experiment exited with code 0");
      // What the tool itself ran with, as the stand-in recorded it on the host.
      const toolEnv = JSON.parse(readFileSync(`${log}.env`, "utf8").trim()) as Record<string, string>;
      console.log(`the container tool's own environment: ${JSON.stringify(toolEnv)}`);
      for (const name of [
        "APPTAINER_BIND",
        "SINGULARITY_BIND",
        "APPTAINERENV_INJECTED",
        "APPTAINER_CONFIGDIR",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "USER_VAR",
        "HF_TOKEN",
        "STUDIOML_EXPERIMENT",
      ]) {
        expect(toolEnv).not.toHaveProperty(name);
      }
      expect(toolEnv.PATH).toBe("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
      expect(Object.values(toolEnv).join("\n")).not.toContain("hfCanaryApptainer01");
      // The command line: hardened, one bind (the attempt's directory), `--` before the image.
      const argv = JSON.parse(readFileSync(log, "utf8").trim()) as string[];
      expect(argv.slice(0, 3)).toEqual(["exec", "--containall", "--no-privs"]);
      expect(argv.filter((a) => a === "--bind").length).toBe(1);
      expect(argv[argv.indexOf("docker://python:3.11-slim") - 1]).toBe("--");
    }, 180_000);

    test("a script name or key that would become a tool option or a second bind is " +
      "refused with a clear reason; nothing runs", async () => {
      const sb = await makeSandbox("iso-limits-apptainer-args");
      const log = join(sb.dir, "standin.log");
      const hostile = (edit: (m: Record<string, any>) => void) =>
        simpleExperiment(sb.storageRoot, { "main.py": JOB }, (m) => {
          m.experiment.artifacts._singularity = {
            qualified: "docker://python:3.11-slim",
            mutable: false,
            unpack: false,
          };
          edit(m);
        });
      const byFilename = hostile((m) => (m.experiment.filename = "--bind=/etc:/hostetc"));
      const byKey = hostile((m) => (m.experiment.key = `${m.experiment.key},.:hostcwd`));
      const ids = [
        enqueue(sb.queueRoot, "local_apptainer_args", byFilename.message),
        enqueue(sb.queueRoot, "local_apptainer_args", byKey.message),
      ];
      const runner = new RunnerProcess(sb, ["--limit-tasks", "2"], {
        PATH: `${STANDIN}:${process.env.PATH}`,
        APPTAINER_STANDIN_LOG: log,
      });
      expect(await runner.exited).toBe(0);
      expect(existsSync(log)).toBe(false); // the tool never ran
      const reasons = ids.map((id) =>
        readFileSync(join(sb.queueRoot, ".failed", "local_apptainer_args", `${id}.reason.json`), "utf8"),
      );
      expect(reasons[0]).toContain("experiment.filename");
      expect(reasons[0]).toContain("--bind=/etc:/hostetc");
      expect(reasons[1]).toContain("experiment.key");
      expect(reasons[1]).toContain(",.:hostcwd");
      expect(filesIn(join(sb.queueRoot, "local_apptainer_args"))).toEqual([]);
    }, 180_000);
  },
);
