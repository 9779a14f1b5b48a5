// Covers src/exec/cgroup.ts against the REAL cgroup file system of this machine (v1 or v2):
// limits written, OOM kill of a process over its memory limit, CPU quota, destroy killing what is
// left (grandchildren included), and reaping of leftover groups. Skipped loudly where cgroups are
// unusable (not root, no memory controller …); never mocked.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  createJobCgroup,
  defaultJobPidsMax,
  detectCgroups,
  jobGroupName,
  killOrphanedCgroups,
  MIN_JOB_PIDS,
  reapStaleCgroups,
  type JobCgroup,
} from "../../src/exec/cgroup.ts";
import { waitFor } from "../helpers/wait-for.ts";

const MiB = 2 ** 20;
const support = detectCgroups();
const unusable = support.version === "none";
if (unusable) console.warn(`\n!!!!! cgroup tests SKIPPED: ${support.reason} !!!!!\n`);
else console.log(`cgroup support: v${support.version} ${JSON.stringify(support)}`);
const noPids = (support.version === 1 && !support.parentDirs.pids) || (support.version === 2 && !support.pids);
if (!unusable && noPids) console.warn(`\n!!!!! cgroup pids tests SKIPPED: no pids controller for us !!!!!\n`);
const noCpu =
  (support.version === 1 && (!support.parentDirs.cpu || !support.parentDirs.cpuacct)) ||
  (support.version === 2 && !support.cpu);
if (!unusable && noCpu)
  console.warn(`\n!!!!! cgroup CPU tests SKIPPED: no cpu controller (or v1 cpuacct) for us !!!!!\n`);

const tag = `test-${process.pid}`;
const made: JobCgroup[] = [];
const make = (name: string, limits: Parameters<typeof createJobCgroup>[2]) => {
  const g = createJobCgroup(support, `${tag}-${name}`, limits);
  made.push(g);
  return g;
};
afterAll(async () => {
  for (const g of made) await g.destroy();
});

const statSize = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};
const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8").trim();
const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
const gone = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.startsWith("Z");
  } catch {
    return true;
  }
};

describe.skipIf(unusable)("JobCgroup on the real cgroup file system", () => {
  test("limits are written and destroy removes the directories", async () => {
    const g = make("limits", { memoryBytes: 100 * MiB, cpus: 1.5 });
    for (const d of g.dirs) expect(existsSync(d)).toBe(true);
    if (support.version === 2) {
      const dir = g.dirs[0]!;
      expect(read(dir, "memory.max")).toBe(String(100 * MiB));
      if (support.cpu) expect(read(dir, "cpu.max")).toBe("150000 100000");
      if (existsSync(join(dir, "memory.swap.max"))) expect(read(dir, "memory.swap.max")).toBe("0");
    } else if (support.version === 1) {
      const mem = join(support.parentDirs.memory, g.name);
      expect(read(mem, "memory.limit_in_bytes")).toBe(String(100 * MiB));
      if (existsSync(join(mem, "memory.memsw.limit_in_bytes")))
        expect(read(mem, "memory.memsw.limit_in_bytes")).toBe(String(100 * MiB));
      if (support.parentDirs.cpu) {
        const cpu = join(support.parentDirs.cpu, g.name);
        expect(read(cpu, "cpu.cfs_quota_us")).toBe("150000");
        expect(read(cpu, "cpu.cfs_period_us")).toBe("100000");
      }
    }
    expect(g.pids()).toEqual([]);
    await g.destroy();
    for (const d of g.dirs) expect(existsSync(d)).toBe(false);
    await g.destroy(); // idempotent
  });

  test("a process allocating 300 MB in a 100 MiB group is OOM-killed and reported", async () => {
    const g = make("oom", { memoryBytes: 100 * MiB });
    const script = "import time\ntime.sleep(0.3)\nb = b'x' * (300 * 1024 * 1024)\ntime.sleep(5)\nprint('survived')";
    const child = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    g.addProcess(child.pid!);
    expect(g.pids()).toContain(child.pid!);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    const result = await exited(child);
    console.log(
      `OOM test: exit ${JSON.stringify(result)}, oomKilled=${g.oomKilled()}, peak=${g.peakMemoryBytes()} bytes`,
    );
    expect(result.signal).toBe("SIGKILL");
    expect(out).not.toContain("survived");
    expect(g.oomKilled()).toBe(true);
    const peak = g.peakMemoryBytes();
    if (peak !== undefined) expect(peak).toBeLessThanOrEqual(100 * MiB);
    await g.destroy();
    expect(g.oomKilled()).toBe(true); // still answered after the group is gone
    expect(g.peakMemoryBytes()).toBe(peak);
  }, 20_000);

  test("a process within its limit is not reported as OOM-killed", async () => {
    const g = make("fits", { memoryBytes: 100 * MiB });
    const child = spawn("python3", ["-c", "import time\ntime.sleep(0.3)\nb = b'x' * (20 * 1024 * 1024)"], {
      stdio: "ignore",
    });
    g.addProcess(child.pid!);
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(g.oomKilled()).toBe(false);
    expect(g.peakMemoryBytes() ?? 20 * MiB).toBeGreaterThanOrEqual(20 * MiB);
  }, 20_000);

  test.skipIf(noCpu)(
    "a 0.5 cpu quota holds a busy loop to about half a CPU",
    async () => {
      const g = make("cpu", { cpus: 0.5 });
      const child = spawn("python3", ["-c", "import time\nt = time.time()\nwhile time.time() - t < 2: pass"], {
        stdio: "ignore",
      });
      g.addProcess(child.pid!);
      const startMs = Date.now();
      await exited(child);
      const wallS = (Date.now() - startMs) / 1000;
      const cpuS = g.cpuUsageSeconds()!;
      console.log(
        `CPU test: ${cpuS.toFixed(3)} s CPU over ${wallS.toFixed(3)} s wall = ` +
          `${(cpuS / wallS).toFixed(3)} CPU-s per s (quota 0.5)`,
      );
      expect(cpuS).toBeGreaterThan(0.2);
      expect(cpuS / wallS).toBeLessThan(0.75);
    },
    20_000,
  );

  test("wrapCommand puts the job in the group before it runs", async () => {
    const g = make("wrap", { memoryBytes: 100 * MiB });
    const argv = g.wrapCommand(["python3", "-c", "b = b'x' * (300 * 1024 * 1024)\nprint('survived')"]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    const result = await exited(child);
    expect(out).not.toContain("warning");
    expect(out).not.toContain("survived");
    expect(result.signal).toBe("SIGKILL");
    expect(g.oomKilled()).toBe(true);
  }, 20_000);

  test("destroy kills what is left in the group, grandchildren included, and removes it", async () => {
    const g = make("destroy", { memoryBytes: 100 * MiB });
    // The shell forks a grandchild into a new session (out of the job's process group).
    const child = spawn("sh", ["-c", "sleep 0.3; setsid sleep 60 & sleep 60"], { stdio: "ignore", detached: true });
    g.addProcess(child.pid!);
    const childExit = exited(child);
    await waitFor("sh and both sleeps in the group", () => g.pids().length >= 3, 5_000, 50);
    const pids = g.pids();
    expect(pids.length).toBeGreaterThanOrEqual(3); // sh, setsid'd sleep, sleep
    await g.destroy();
    expect((await childExit).signal).toBe("SIGKILL");
    for (const pid of pids) expect(gone(pid)).toBe(true);
    for (const d of g.dirs) expect(existsSync(d)).toBe(false);
  }, 20_000);

  test("reapStaleCgroups removes an empty leftover group and keeps a busy one", async () => {
    const parents =
      support.version === 2
        ? [support.parentDir]
        : support.version === 1
          ? [...new Set(Object.values(support.parentDirs).filter((d): d is string => !!d))]
          : [];
    const stale = `${tag}-stale`;
    for (const p of parents) mkdirSync(join(p, stale));
    const busy = make("busy", {});
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    busy.addProcess(child.pid!);

    expect(reapStaleCgroups(support).removed).not.toContain(stale); // too young by default
    const result = reapStaleCgroups(support, { minAgeMs: 0 });
    expect(result.removed).toContain(stale);
    expect(result.busy).toContain(busy.name);
    for (const p of parents) expect(existsSync(join(p, stale))).toBe(false);
    for (const d of busy.dirs) expect(existsSync(d)).toBe(true);
    await busy.destroy();
    for (const d of busy.dirs) expect(existsSync(d)).toBe(false);
  }, 20_000);

  test.skipIf(noPids)(
    "pids.max holds a fork loop: forks beyond it fail, the group never holds more",
    async () => {
      const g = make("pids", { pidsMax: 24 });
      expect(read(g.pidsDir!, "pids.max")).toBe("24");
      // python forks 100 sleeping children and counts the forks that failed (EAGAIN).
      const script =
        "import os, time\nok = failed = 0\nfor i in range(100):\n    try:\n" +
        "        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n" +
        "        ok += 1\n    except OSError:\n        failed += 1\nprint(ok, failed, flush=True)\n" +
        "time.sleep(1)";
      const argv = g.wrapCommand(["/usr/bin/python3", "-c", script]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: {} });
      let out = "";
      child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
      const peakDeadlineMs = Date.now() + 10_000;
      let most = 0;
      while (!out.includes("\n") && Date.now() < peakDeadlineMs) {
        most = Math.max(most, g.pids().length);
        await Bun.sleep(20);
      }
      const [ok, failed] = out.trim().split(" ").map(Number);
      console.log(`pids test: ${ok} forks succeeded, ${failed} failed, at most ${most} processes seen`);
      expect(ok! + 1).toBeLessThanOrEqual(24);
      expect(failed).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(24);
      await g.destroy();
      expect(g.pids()).toEqual([]);
      for (const d of g.dirs) expect(existsSync(d)).toBe(false);
    },
    30_000,
  );

  test("the memory limit counts what a job writes to tmpfs (/dev/shm): it is OOM-killed", async () => {
    const g = make("shm", { memoryBytes: 64 * MiB });
    const file = `/dev/shm/studio-runner-cgroup-test-${process.pid}`;
    try {
      const argv = g.wrapCommand(["/bin/dd", "if=/dev/zero", `of=${file}`, "bs=1M", "count=400"]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: "ignore", env: {} });
      const result = await exited(child);
      console.log(
        `tmpfs test: exit ${JSON.stringify(result)}, oomKilled=${g.oomKilled()}, written ${statSize(file)} bytes`,
      );
      expect(result.signal).toBe("SIGKILL");
      expect(g.oomKilled()).toBe(true);
      expect(statSize(file)).toBeLessThanOrEqual(64 * MiB);
    } finally {
      rmSync(file, { force: true });
    }
  }, 30_000);

  test("the wrapper stub needs no environment and ignores a hostile one (IFS, an imported echo function)", async () => {
    const g = make("stub-env", {});
    for (const env of [
      {},
      { IFS: "0123456789/", "BASH_FUNC_echo%%": "() { :; }", PATH: "/nonexistent", ENV: "/nonexistent" },
    ]) {
      const argv = g.wrapCommand(["/bin/sleep", "0.5"]);
      expect(argv.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env });
      let err = "";
      child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
      await waitFor("the child in the group", () => g.pids().includes(child.pid!), 5_000, 10);
      expect(g.pids()).toContain(child.pid!);
      expect(await exited(child)).toEqual({ code: 0, signal: null });
      expect(err).toBe("");
    }
  }, 20_000);

  test("a group whose runner has exited is emptied and removed by the next runner; a " +
    "live runner's group is left", async () => {
    // A pid that is not running (or runs with another start time): the owner is gone.
    const ns = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))![1];
    const dead = createJobCgroup(support, `job-999999-1-${process.pid}-p${ns}`, {});
    // The same dead pid in another pid namespace: not ours to judge.
    const foreign = createJobCgroup(support, `job-999999-1-${process.pid}-p1`, {});
    made.push(foreign);
    const mine = make("x", {});
    const own = createJobCgroup(support, jobGroupName(900_000 + (process.pid % 1000)), {});
    made.push(own);
    expect(own.name).toMatch(new RegExp(`^job-${process.pid}-\\d+-\\d+-p${ns}$`));
    const orphan = spawn("/bin/sh", ["-c", "sleep 0.3; setsid sleep 60 & sleep 60"], {
      stdio: "ignore",
      detached: true,
    });
    dead.addProcess(orphan.pid!);
    const ownChild = spawn("sleep", ["30"], { stdio: "ignore" });
    own.addProcess(ownChild.pid!);
    await waitFor("sh and both sleeps in the group", () => dead.pids().length >= 3, 5_000, 20);
    const orphanPids = dead.pids();
    expect(orphanPids.length).toBe(3);

    const emptied = await killOrphanedCgroups(support);
    expect(emptied).toContain(dead.name);
    expect(emptied).not.toContain(own.name);
    expect(emptied).not.toContain(mine.name);
    expect(existsSync(foreign.dirs[0]!)).toBe(true);
    for (const pid of orphanPids) expect(gone(pid)).toBe(true);
    for (const d of dead.dirs) expect(existsSync(d)).toBe(false);
    expect(own.pids()).toContain(ownChild.pid!);
    await own.destroy();
  }, 20_000);

  test("creating a group with an invalid limit throws a CgroupError and leaves nothing", () => {
    expect(() => createJobCgroup(support, `${tag}-bad`, { memoryBytes: -1 })).toThrow(/invalid memory limit/);
    expect(() => createJobCgroup(support, `${tag}-bad`, { cpus: 0 })).toThrow(/invalid CPU limit/);
  });
});

test("the default pids limit: at least MIN_JOB_PIDS, 256 per CPU above that, at most a quarter of pid_max", () => {
  expect(defaultJobPidsMax(0, 4_194_304)).toBe(MIN_JOB_PIDS);
  expect(defaultJobPidsMax(2, 4_194_304)).toBe(MIN_JOB_PIDS);
  expect(defaultJobPidsMax(64, 4_194_304)).toBe(16_384);
  expect(defaultJobPidsMax(64, 32_768)).toBe(8_192);
  expect(defaultJobPidsMax(Number.NaN, 4_194_304)).toBe(MIN_JOB_PIDS);
  expect(defaultJobPidsMax(1)).toBeGreaterThanOrEqual(64);
});

test("without cgroups createJobCgroup throws a CgroupError naming the reason", () => {
  expect(() => createJobCgroup({ version: "none", reason: "not root" }, "x", {})).toThrow(
    /cgroups unavailable \(not root\)/,
  );
});
