// Linux control groups for jobs: find which hierarchy this runner may use (v2 unified, or v1
// memory + cpu + pids), give each job its own group under a `studio-runner` parent with the job's
// RAM, CPU and process-count limits, put the job's processes in it, read back OOM kills, peak
// memory and CPU time, and remove it, killing whatever is left (a double-forked `setsid` child
// included: membership is inherited and no process can leave a group it may not write to). The
// memory limit counts tmpfs and /dev/shm pages the job writes (shmem is charged to the writer's
// group on v1 and v2). A group left by a runner that died is emptied and removed by the next one
// (reapStaleCgroups). Every failure is a CgroupError that the caller reports as a warning: a job
// runs unconfined rather than failing because cgroups are unusable.
//
// Where the groups go (always below the runner's own cgroup, read from /proc/self/cgroup and
// /proc/self/mountinfo, so limits imposed on the runner still apply to its jobs):
//   v1: <mount of each controller>/<runner's cgroup>/studio-runner/<job>, for memory, cpu,
//       cpuacct and pids (cpu and cpuacct may be one co-mounted hierarchy).
//   v2: <runner's cgroup C>/studio-runner/<job> (memory required, cpu and pids when delegated).
//       v2 forbids processes in a non-root group that hands controllers to children, so when C has
//       processes and memory/cpu are not yet enabled in C's cgroup.subtree_control, every process
//       of C (the runner, and whatever shares its service or container) is moved to the leaf
//       C/studio-runner-main first. Under systemd run the runner with Delegate=yes so systemd
//       leaves this subtree alone.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";

export const PARENT_GROUP_NAME = "studio-runner";
/** v2 only: the leaf that the runner's cgroup's own processes move to. */
export const RUNNER_LEAF_NAME = "studio-runner-main";
const CPU_PERIOD_US = 100_000;
const MIN_CPU_QUOTA_US = 1_000;
/** Processes and threads a job may have at once when it asks for few CPUs (a fork bomb stops here). */
export const MIN_JOB_PIDS = 4096;
/** …and per requested CPU beyond that (data loaders with many workers and threads each). */
const JOB_PIDS_PER_CPU = 256;

export type CgroupV1Dirs = { memory: string; cpu?: string; cpuacct?: string; pids?: string };

export type CgroupSupport =
  | {
      version: 2;
      parentDir: string;
      /** cpu controller delegated to us (else CPU is not limited) */ cpu: boolean;
      /** pids controller delegated to us (else the number of processes is not limited) */ pids?: boolean;
      notes: string[];
    }
  | { version: 1; parentDirs: CgroupV1Dirs; notes: string[] }
  | { version: "none"; reason: string };

export type CgroupLimits = {
  memoryBytes?: number;
  cpus?: number /** pids.max: processes + threads */;
  pidsMax?: number;
};

/**
 * The pids limit of a job that asked for `cpus`: at least MIN_JOB_PIDS, 256 per CPU above that,
 * and never more than a quarter of the machine's pid space (kernel.pid_max), so one job cannot
 * exhaust it for the runner and the other jobs.
 */
export function defaultJobPidsMax(cpus: number, pidMax = readNumber("/proc/sys/kernel/pid_max") ?? 32_768): number {
  const wanted = Math.max(MIN_JOB_PIDS, Math.ceil(JOB_PIDS_PER_CPU * (Number.isFinite(cpus) && cpus > 0 ? cpus : 0)));
  return Math.max(64, Math.min(wanted, Math.floor(pidMax / 4)));
}

export class CgroupError extends Error {
  readonly path: string;
  /** errno code from the failed call ("EACCES", "EBUSY" …), when there was one. */
  readonly errno?: string;
  constructor(message: string, path: string, cause?: unknown) {
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
    super(`${message}: ${path}${errno ? ` (${errno})` : ""}`, { cause });
    this.name = "CgroupError";
    this.path = path;
    this.errno = errno;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading /proc

type Mount = { root: string; mountPoint: string; fsType: string; superOptions: string[]; readOnly: boolean };

const unescapeMountField = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

function cgroupMounts(): Mount[] {
  const out: Mount[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const dash = line.indexOf(" - ");
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(" ");
    const [fsType, , superOpts = ""] = line.slice(dash + 3).split(" ");
    if (fsType !== "cgroup" && fsType !== "cgroup2") continue;
    const mountOptions = (left[5] ?? "").split(",");
    out.push({
      root: unescapeMountField(left[3] ?? "/"),
      mountPoint: unescapeMountField(left[4] ?? ""),
      fsType,
      superOptions: superOpts.split(","),
      readOnly: mountOptions.includes("ro") || superOpts.split(",").includes("ro"),
    });
  }
  return out;
}

/** The runner's own cgroup path per v1 controller, and its v2 path ("0::" line). */
function ownCgroups(): { v1: Map<string, string>; v2?: string } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") v2 = m[3];
    else for (const c of m[2]!.split(",")) if (c) v1.set(c, m[3]!);
  }
  return { v1, v2 };
}

/** Directory of cgroup `path` seen through `mount` (the mount root when it is not visible there). */
function dirInMount(mount: Mount, path: string): string {
  const root = mount.root === "/" ? "" : mount.root;
  if (!path.includes("/..") && (path === root || path.startsWith(root + "/") || root === "")) {
    const dir = join(mount.mountPoint, path.slice(root.length)).replace(/(.)\/+$/, "$1");
    if (existsSync(join(dir, "cgroup.procs"))) return dir;
  }
  return mount.mountPoint;
}

// ---------------------------------------------------------------------------------------------
// Small file helpers

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function writeValue(path: string, value: string, what: string): void {
  try {
    writeFileSync(path, value);
  } catch (e) {
    throw new CgroupError(`cannot ${what} (writing ${JSON.stringify(value)})`, path, e);
  }
}

function makeDir(path: string, what: string): void {
  try {
    mkdirSync(path, { recursive: true });
  } catch (e) {
    throw new CgroupError(`cannot create ${what}`, path, e);
  }
}

/** "key value" lines (memory.events, memory.oom_control, cpu.stat) as numbers. */
function keyedNumbers(path: string): Map<string, number> | undefined {
  const text = readText(path);
  if (text === undefined) return undefined;
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}

function readNumber(path: string): number | undefined {
  const text = readText(path)?.trim();
  return text && /^\d+$/.test(text) ? Number(text) : undefined;
}

function pidsIn(dir: string): number[] {
  const text = readText(join(dir, "cgroup.procs"));
  return text
    ? text
        .split("\n")
        .filter((l) => /^\d+$/.test(l))
        .map(Number)
    : [];
}

const permissionHint = (e: unknown) => {
  const code = (e as CgroupError).errno;
  const uid = process.getuid?.();
  return (code === "EACCES" || code === "EPERM") && uid !== 0
    ? ` — not root (uid ${uid}) and no delegated cgroup`
    : code === "EROFS"
      ? " — the cgroup file system is read-only"
      : "";
};

// ---------------------------------------------------------------------------------------------
// Detection

/**
 * Which cgroup hierarchy the runner can confine jobs with, creating the `studio-runner` parent
 * group(s) on the way (idempotent). Prefers v2 when the unified hierarchy offers memory (cpu is
 * used when offered too); otherwise v1 (memory required, cpu/cpuacct when mounted); otherwise
 * "none" with the reason. `notes` say what is not limited and what was moved.
 */
export function detectCgroups(): CgroupSupport {
  if (process.platform !== "linux")
    return { version: "none", reason: `cgroups are Linux-only (platform ${process.platform})` };
  let mounts: Mount[];
  let own: ReturnType<typeof ownCgroups>;
  try {
    mounts = cgroupMounts();
    own = ownCgroups();
  } catch (e) {
    return {
      version: "none",
      reason: `cannot read /proc/self/cgroup or /proc/self/mountinfo: ${(e as Error).message}`,
    };
  }
  const reasons: string[] = [];

  const v2Mount = own.v2 !== undefined ? mounts.find((m) => m.fsType === "cgroup2") : undefined;
  if (v2Mount && own.v2 !== undefined) {
    const result = detectV2(v2Mount, own.v2);
    if (typeof result !== "string") return result;
    reasons.push(result);
  } else reasons.push("no cgroup v2 hierarchy");

  const v1Of = (controller: string) => mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes(controller));
  const memoryMount = v1Of("memory");
  if (memoryMount) {
    const result = detectV1(memoryMount, v1Of("cpu"), v1Of("cpuacct"), v1Of("pids"), own.v1);
    if (typeof result !== "string") return result;
    reasons.push(result);
  } else reasons.push("no cgroup v1 memory controller mounted");
  return { version: "none", reason: reasons.join("; ") };
}

function detectV2(mount: Mount, ownPath: string, withPids = true): CgroupSupport | string {
  let c = dirInMount(mount, ownPath);
  // Already moved to the leaf by an earlier detection in this process: the runner's group is its parent.
  if (c.endsWith(`/${RUNNER_LEAF_NAME}`) && c !== mount.mountPoint) c = dirname(c);
  const available = (readText(join(c, "cgroup.controllers")) ?? "").trim().split(/\s+/).filter(Boolean);
  if (!available.includes("memory"))
    return `cgroup v2 at ${c} lacks the memory controller (has: ${available.join(" ") || "none"})`;
  if (mount.readOnly) return `cgroup v2 at ${mount.mountPoint} is mounted read-only`;
  const cpu = available.includes("cpu");
  const pids = withPids && available.includes("pids");
  const controllers = ["memory", ...(cpu ? ["cpu"] : []), ...(pids ? ["pids"] : [])];
  const notes = [
    ...(cpu ? [] : [`cgroup v2 at ${c} has no cpu controller: CPU is not limited`]),
    ...(pids || !withPids
      ? []
      : [`cgroup v2 at ${c} has no pids controller: the number of a job's processes is not limited`]),
  ];
  try {
    enableV2Controllers(c, controllers, notes);
    const parentDir = join(c, PARENT_GROUP_NAME);
    makeDir(parentDir, "the studio-runner cgroup");
    enableV2Controllers(parentDir, controllers, notes);
    probeChild(parentDir, ["memory.max", ...(cpu ? ["cpu.max"] : []), ...(pids ? ["pids.max"] : [])]);
    return { version: 2, parentDir, cpu, pids, notes };
  } catch (e) {
    if (pids) {
      // The pids controller is listed but cannot be handed to us: confine memory (and CPU) without it.
      const without = detectV2(mount, ownPath, false);
      if (typeof without !== "string" && without.version === 2)
        without.notes.push(
          `cgroup v2 pids controller not usable (${(e as Error).message}): ` +
            "the number of a job's processes is not limited",
        );
      return without;
    }
    return `cgroup v2 at ${c} is not usable: ${(e as Error).message}${permissionHint(e)}`;
  }
}

/** Proves that a job group can be made under `parent` and has `files` (the controllers' knobs), by creating and
 * removing one. */
function probeChild(parent: string, files: string[]): void {
  const probe = join(parent, `probe-${process.pid}`);
  try {
    rmdirSync(probe);
  } catch {
    // not there: the usual case
  }
  makeDir(probe, "a probe cgroup");
  try {
    for (const f of files) {
      if (!existsSync(join(probe, f))) throw new CgroupError(`a child group lacks ${f}`, probe);
      if (f.endsWith(".usage")) continue; // a counter: present is enough
      try {
        writeFileSync(join(probe, f), readFileSync(join(probe, f), "utf8").trim().split(" ")[0]!);
      } catch (e) {
        throw new CgroupError(`cannot write ${f} in a child group`, probe, e);
      }
    }
  } finally {
    try {
      rmdirSync(probe);
    } catch {
      // best effort
    }
  }
}

/** Enables `controllers` for `dir`'s children, moving `dir`'s own processes to a leaf when v2's
 * no-internal-processes rule requires it. */
function enableV2Controllers(dir: string, controllers: string[], notes: string[]): void {
  const file = join(dir, "cgroup.subtree_control");
  const enabled = (readText(file) ?? "").trim().split(/\s+/);
  if (controllers.every((x) => enabled.includes(x))) return;
  const request = controllers.map((x) => `+${x}`).join(" ");
  try {
    writeFileSync(file, request);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EBUSY")
      throw new CgroupError(`cannot enable the ${controllers.join(" and ")} controller(s)`, file, e);
  }
  const leaf = join(dir, RUNNER_LEAF_NAME);
  makeDir(leaf, "the runner's leaf cgroup");
  const pids = pidsIn(dir);
  for (const pid of pids) {
    try {
      writeFileSync(join(leaf, "cgroup.procs"), String(pid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH")
        throw new CgroupError(`cannot move process ${pid} to the runner's leaf cgroup`, leaf, e);
    }
  }
  notes.push(`moved ${pids.length} process(es) of ${dir} to ${leaf} to enable controllers for jobs`);
  writeValue(file, request, `enable the ${controllers.join(" and ")} controller(s)`);
}

function detectV1(
  memory: Mount,
  cpu: Mount | undefined,
  cpuacct: Mount | undefined,
  pids: Mount | undefined,
  own: Map<string, string>,
): CgroupSupport | string {
  if (memory.readOnly) return `cgroup v1 memory hierarchy at ${memory.mountPoint} is mounted read-only`;
  const parentIn = (mount: Mount, controller: string) =>
    join(dirInMount(mount, own.get(controller) ?? "/"), PARENT_GROUP_NAME);
  const notes: string[] = [];
  let parentDirs: CgroupV1Dirs;
  try {
    parentDirs = { memory: parentIn(memory, "memory") };
    makeDir(parentDirs.memory, "the studio-runner memory cgroup");
    probeChild(parentDirs.memory, ["memory.limit_in_bytes"]);
  } catch (e) {
    return `cgroup v1 memory hierarchy is not usable: ${(e as Error).message}${permissionHint(e)}`;
  }
  const unlimited = {
    cpu: ": CPU is not limited",
    cpuacct: "",
    pids: ": the number of a job's processes is not limited",
  };
  const knob = { cpu: "cpu.cfs_quota_us", cpuacct: "cpuacct.usage", pids: "pids.max" };
  for (const [controller, mount] of [
    ["cpu", cpu],
    ["cpuacct", cpuacct],
    ["pids", pids],
  ] as const) {
    if (!mount) {
      notes.push(`no cgroup v1 ${controller} controller mounted${unlimited[controller]}`);
      continue;
    }
    if (mount === memory) {
      parentDirs[controller] = parentDirs.memory;
      continue;
    }
    try {
      const dir = parentIn(mount, controller);
      makeDir(dir, `the studio-runner ${controller} cgroup`);
      probeChild(dir, [knob[controller]]);
      parentDirs[controller] = dir;
    } catch (e) {
      notes.push(`${(e as Error).message}${unlimited[controller]}`);
    }
  }
  return { version: 1, parentDirs, notes };
}

// ---------------------------------------------------------------------------------------------
// One job's group

/** Directories of job `name` under `support`'s parent(s), without duplicates (co-mounted v1 hierarchies). */
function jobDirs(support: Exclude<CgroupSupport, { version: "none" }>, name: string) {
  if (support.version === 2) {
    const dir = join(support.parentDir, name);
    return {
      all: [dir],
      memory: dir,
      cpu: support.cpu ? dir : undefined,
      cpuacct: dir as string | undefined,
      pids: support.pids ? dir : undefined,
    };
  }
  const p = support.parentDirs;
  const memory = join(p.memory, name);
  const cpu = p.cpu ? join(p.cpu, name) : undefined;
  const cpuacct = p.cpuacct ? join(p.cpuacct, name) : undefined;
  const pids = p.pids ? join(p.pids, name) : undefined;
  return {
    all: [...new Set([memory, cpu, cpuacct, pids].filter((d): d is string => d !== undefined))],
    memory,
    cpu,
    cpuacct,
    pids,
  };
}

export class JobCgroup {
  readonly version: 1 | 2;
  readonly name: string;
  /** Every directory of this group: one for v2, one per v1 hierarchy. */
  readonly dirs: readonly string[];
  private readonly memoryDir: string;
  private readonly cpuacctDir?: string;
  /** Where pids.max is (undefined: the number of processes is not limited). */
  readonly pidsDir?: string;
  private destroying?: Promise<void>;
  /** Figures read just before destroy removed the directories; the getters return these afterwards. */
  private final?: { oomKilled: boolean; peakMemoryBytes?: number; cpuUsageSeconds?: number };

  constructor(version: 1 | 2, name: string, dirs: ReturnType<typeof jobDirs>) {
    this.version = version;
    this.name = name;
    this.dirs = dirs.all;
    this.memoryDir = dirs.memory;
    this.cpuacctDir = dirs.cpuacct;
    this.pidsDir = dirs.pids;
  }

  /** The cgroup.procs file of every hierarchy (what a process writes its pid to in order to join). */
  get procsFiles(): string[] {
    return this.dirs.map((d) => join(d, "cgroup.procs"));
  }

  /** Moves `pid` (and the threads of that process) into the group in every hierarchy. */
  addProcess(pid: number): void {
    for (const file of this.procsFiles) writeValue(file, String(pid), `add process ${pid} to the job's cgroup`);
  }

  /**
   * `argv` prefixed with a /bin/sh stub that puts itself in the group and then execs `argv`, so the
   * job is confined from its first instruction (no window before addProcess). If joining fails
   * the stub writes a warning to stderr (the job's log) and runs the job anyway.
   *
   * The stub runs with the runner's privileges, before any privilege drop or sandbox later in
   * `argv`, so it depends on nothing the job or the request controls: it reads no environment
   * variable (it needs none: PATH is only used when argv[0] has no slash), every expansion is
   * quoted (IFS cannot split it), its only non-special builtin (echo) is first freed of any
   * function a shell might import, and its operands are the runner's own cgroup paths, ended by
   * `--`. The caller spawns it with a fixed minimal environment (see the sandbox launchers).
   */
  wrapCommand(argv: readonly string[]): string[] {
    const script =
      'unset -f echo 2>/dev/null; for f do shift; case "$f" in --) exec "$@";; esac; ' +
      '{ echo "$$" > "$f"; } 2>/dev/null || ' +
      'echo "[studio-runner] warning: could not join cgroup $f; running without that limit" >&2; done; exit 127';
    return ["/bin/sh", "-c", script, "studio-runner-cgroup", ...this.procsFiles, "--", ...argv];
  }

  /** Pids of the processes now in the group (any hierarchy). */
  pids(): number[] {
    return [...new Set(this.dirs.flatMap(pidsIn))];
  }

  /** Whether the kernel's OOM killer killed a process of this group because of its memory limit. */
  oomKilled(): boolean {
    if (this.final) return this.final.oomKilled;
    if (this.version === 2) return (keyedNumbers(join(this.memoryDir, "memory.events"))?.get("oom_kill") ?? 0) > 0;
    const oomKills = keyedNumbers(join(this.memoryDir, "memory.oom_control"))?.get("oom_kill");
    if (oomKills !== undefined) return oomKills > 0;
    // Kernels before 4.13 have no oom_kill counter: the memory+swap limit being hit is the best sign.
    return (
      (readNumber(join(this.memoryDir, "memory.memsw.failcnt")) ??
        readNumber(join(this.memoryDir, "memory.failcnt")) ??
        0) > 0
    );
  }

  /** Highest memory use of the group so far, when the kernel records it (v1 always; v2 from 5.19, memory.peak). */
  peakMemoryBytes(): number | undefined {
    if (this.final) return this.final.peakMemoryBytes;
    return readNumber(join(this.memoryDir, this.version === 2 ? "memory.peak" : "memory.max_usage_in_bytes"));
  }

  /** CPU time used by the group's processes so far, in seconds (undefined without cpuacct on v1). */
  cpuUsageSeconds(): number | undefined {
    if (this.final) return this.final.cpuUsageSeconds;
    if (this.version === 2) {
      const usageUs = keyedNumbers(join(this.memoryDir, "cpu.stat"))?.get("usage_usec");
      return usageUs === undefined ? undefined : usageUs / 1e6;
    }
    const usageNs = this.cpuacctDir ? readNumber(join(this.cpuacctDir, "cpuacct.usage")) : undefined;
    return usageNs === undefined ? undefined : usageNs / 1e9;
  }

  /**
   * SIGKILLs every process left in the group (including descendants that left the job's process
   * group), waits until it is empty, then removes its directories. Bounded by `timeoutMs`; never
   * throws; later calls return the first call's promise. oomKilled(), peakMemoryBytes() and
   * cpuUsageSeconds() keep answering afterwards with the figures read just before removal.
   */
  destroy(options: { timeoutMs?: number } = {}): Promise<void> {
    this.destroying ??= this.killAndRemove(options.timeoutMs ?? 5_000).catch(() => undefined);
    return this.destroying;
  }

  private async killAndRemove(timeoutMs: number): Promise<void> {
    const deadlineMs = Date.now() + timeoutMs;
    const killFile = this.version === 2 ? join(this.memoryDir, "cgroup.kill") : undefined;
    for (;;) {
      const pids = this.pids().filter((p) => p !== process.pid);
      if (pids.length === 0 || Date.now() >= deadlineMs) break;
      if (killFile && existsSync(killFile)) {
        try {
          writeFileSync(killFile, "1");
        } catch {
          // older kernel or gone: fall back to signalling each pid
        }
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
      await Bun.sleep(20);
    }
    this.final = {
      oomKilled: this.oomKilled(),
      peakMemoryBytes: this.peakMemoryBytes(),
      cpuUsageSeconds: this.cpuUsageSeconds(),
    };
    for (const dir of [...this.dirs].reverse()) {
      for (;;) {
        try {
          rmdirSync(dir);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === "ENOENT" || code !== "EBUSY" || Date.now() >= deadlineMs) break;
          await Bun.sleep(20);
        }
      }
    }
  }
}

/**
 * Creates job `name`'s group under the studio-runner parent(s) and sets its limits: memory (v1
 * memory.limit_in_bytes and memory.memsw.limit_in_bytes where writable, so swap cannot dodge the
 * cap; v2 memory.max, memory.swap.max=0 and memory.oom.group=1 where present), CPU (cfs quota
 * of cpus × 100 ms per 100 ms period) and processes (pids.max, where the pids controller is ours).
 * An empty leftover group of the same name is replaced.
 * Throws CgroupError; on failure nothing is left behind.
 */
export function createJobCgroup(support: CgroupSupport, name: string, limits: CgroupLimits = {}): JobCgroup {
  if (support.version === "none") throw new CgroupError(`cgroups unavailable (${support.reason})`, "");
  const safeName =
    name
      .replace(/[^A-Za-z0-9._-]/g, "_")
      .replace(/^\.+/, "_")
      .slice(0, 200) || "job";
  if (limits.memoryBytes !== undefined && !(Number.isFinite(limits.memoryBytes) && limits.memoryBytes > 0))
    throw new CgroupError(`invalid memory limit ${limits.memoryBytes} bytes`, "");
  if (limits.cpus !== undefined && !(Number.isFinite(limits.cpus) && limits.cpus > 0))
    throw new CgroupError(`invalid CPU limit ${limits.cpus} cpus`, "");
  if (limits.pidsMax !== undefined && !(Number.isInteger(limits.pidsMax) && limits.pidsMax > 0))
    throw new CgroupError(`invalid pids limit ${limits.pidsMax}`, "");

  const dirs = jobDirs(support, safeName);
  const created: string[] = [];
  try {
    for (const dir of dirs.all) {
      if (existsSync(dir)) {
        try {
          rmdirSync(dir);
        } catch (e) {
          throw new CgroupError("a cgroup of that name exists and cannot be removed", dir, e);
        }
      }
      try {
        mkdirSync(dir);
      } catch (e) {
        throw new CgroupError("cannot create the job's cgroup", dir, e);
      }
      created.push(dir);
    }
    const tryWrite = (path: string, value: string) => {
      try {
        writeFileSync(path, value);
      } catch {
        // optional knob: missing (kernel config, no swap accounting) or not writable
      }
    };
    if (limits.memoryBytes !== undefined) {
      const bytes = String(Math.floor(limits.memoryBytes));
      if (support.version === 2) {
        writeValue(join(dirs.memory, "memory.max"), bytes, "set the memory limit");
        if (existsSync(join(dirs.memory, "memory.swap.max"))) tryWrite(join(dirs.memory, "memory.swap.max"), "0");
        if (existsSync(join(dirs.memory, "memory.oom.group"))) tryWrite(join(dirs.memory, "memory.oom.group"), "1");
      } else {
        writeValue(join(dirs.memory, "memory.limit_in_bytes"), bytes, "set the memory limit");
        if (existsSync(join(dirs.memory, "memory.memsw.limit_in_bytes")))
          tryWrite(join(dirs.memory, "memory.memsw.limit_in_bytes"), bytes);
      }
    }
    if (limits.pidsMax !== undefined && dirs.pids)
      writeValue(join(dirs.pids, "pids.max"), String(limits.pidsMax), "set the pids limit");
    if (limits.cpus !== undefined && dirs.cpu) {
      const quotaUs = Math.max(MIN_CPU_QUOTA_US, Math.round(limits.cpus * CPU_PERIOD_US));
      if (support.version === 2)
        writeValue(join(dirs.cpu, "cpu.max"), `${quotaUs} ${CPU_PERIOD_US}`, "set the CPU limit");
      else {
        writeValue(join(dirs.cpu, "cpu.cfs_period_us"), String(CPU_PERIOD_US), "set the CPU period");
        writeValue(join(dirs.cpu, "cpu.cfs_quota_us"), String(quotaUs), "set the CPU quota");
      }
    }
  } catch (e) {
    for (const dir of created.reverse()) {
      try {
        rmdirSync(dir);
      } catch {
        // best effort
      }
    }
    throw e;
  }
  return new JobCgroup(support.version, safeName, dirs);
}

/** Start time of process `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined when it is
 * gone. */
function startTicks(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

const JOB_GROUP_NAME = /^job-(\d+)-(\d+)-\d+-p(\d+)$/;

/** The inode of this process's pid namespace: pids in a group name mean something only in that namespace. */
function pidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "0";
  } catch {
    return "0";
  }
}

/**
 * The name of this runner's `serial`-th job group:
 * `job-<runner pid>-<runner start time>-<serial>-p<pid namespace>`, so that a later runner can
 * tell that the group's owner is gone (the pid alone may be reused; a runner in another pid
 * namespace sharing the cgroup parent is never judged by a pid it cannot see).
 */
export function jobGroupName(serial: number): string {
  return `job-${process.pid}-${startTicks(process.pid) ?? 0}-${serial}-p${pidNamespace()}`;
}

/** Whether the runner that made group `name` (see jobGroupName) has exited; false for names of another form or pid
 * namespace. */
function ownerGone(name: string): boolean {
  const m = JOB_GROUP_NAME.exec(name);
  if (!m || m[3] !== pidNamespace() || m[3] === "0") return false;
  const pid = Number(m[1]);
  return pid !== process.pid && startTicks(pid) !== m[2];
}

/**
 * Empties and removes the job groups whose runner has exited (crashed, killed, restarted) while
 * its jobs still ran: what is left in them — a job, or the `setsid` grandchild of one — is
 * SIGKILLed. Groups of live runners (other runners on this machine share the parent) and groups
 * of unknown form are left alone. Returns the names of the groups emptied. Never throws.
 */
export async function killOrphanedCgroups(
  support: CgroupSupport,
  options: { timeoutMs?: number } = {},
): Promise<string[]> {
  if (support.version === "none") return [];
  const names = new Set<string>();
  for (const parent of parentDirsOf(support))
    for (const name of readdirSafe(parent)) if (ownerGone(name)) names.add(name);
  const emptied: string[] = [];
  for (const name of names) {
    const group = new JobCgroup(support.version, name, jobDirs(support, name));
    if (group.pids().length) emptied.push(name);
    await group.destroy({ timeoutMs: options.timeoutMs });
  }
  return emptied;
}

function parentDirsOf(support: Exclude<CgroupSupport, { version: "none" }>): string[] {
  return support.version === 2
    ? [support.parentDir]
    : [...new Set(Object.values(support.parentDirs).filter((d): d is string => !!d))];
}

/**
 * Removes job groups left behind by a runner that crashed: those that are empty and at least
 * `minAgeMs` old (so a group another runner on this machine has just created is left alone).
 * Groups that still hold processes are listed in `busy` and left as they are. Never throws.
 */
export function reapStaleCgroups(
  support: CgroupSupport,
  options: { minAgeMs?: number } = {},
): { removed: string[]; busy: string[] } {
  const removed: string[] = [];
  const busy: string[] = [];
  if (support.version === "none") return { removed, busy };
  const minAgeMs = options.minAgeMs ?? 60_000;
  const parents = parentDirsOf(support);
  const names = new Set<string>();
  for (const parent of parents) {
    try {
      for (const e of readdirSync(parent, { withFileTypes: true })) if (e.isDirectory()) names.add(e.name);
    } catch {
      // parent gone: nothing to reap there
    }
  }
  for (const name of names) {
    const dirs = parents.map((p) => join(p, name)).filter((d) => existsSync(d));
    if (dirs.some((d) => pidsIn(d).length > 0 || readdirSafe(d).length > 0)) {
      busy.push(name);
      continue;
    }
    const ageMs = Math.min(...dirs.map((d) => Date.now() - (statSafeMs(d) ?? 0)));
    if (ageMs < minAgeMs) continue;
    let ok = true;
    for (const d of dirs) {
      try {
        rmdirSync(d);
      } catch {
        ok = false;
      }
    }
    (ok ? removed : busy).push(name);
  }
  return { removed, busy };
}

/** Child groups inside a cgroup directory (a job that made its own sub-groups is not empty). */
function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

function statSafeMs(dir: string): number | undefined {
  try {
    const s = statSync(dir);
    return Math.max(s.mtimeMs, s.ctimeMs);
  } catch {
    return undefined;
  }
}
