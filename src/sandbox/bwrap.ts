// The bubblewrap sandbox for venv jobs (`--sandbox bwrap`, and `auto` where it works): the command
// line that runs a job with the system read-only, only its attempt directory writable, a private
// /tmp, /dev/shm and /dev, its own PID, IPC and UTS namespaces (and network namespace in loopback
// mode), no capabilities, no new privileges, no further user namespaces, the runner's secrets
// hidden, and only the allocated GPUs' device nodes; plus finding and probing bwrap.
//
// Runner as root (a JobUser is given): two stages, because bwrap run by an unprivileged uid cannot
// reach paths under directories that uid may not search (bwrap resolves every bind source by
// name): /root/.pyenv, a 0700 working or cache directory. Stage 1 is bwrap run by root without a
// user namespace: it builds the file-system view (hiding, binding back, covering every directory
// the job user could not search with an empty tmpfs and recreating the path below it), keeps only
// CAP_SETUID/CAP_SETGID, and runs setpriv, which drops to the job user with no_new_privs and execs
// stage 2: bwrap run by the job user, which creates the user namespace (uid/gid mapped 1:1, so the
// job's files and processes belong to the job user on the host), the PID/IPC/UTS/network
// namespaces, a fresh /proc, forbids further user namespaces and drops every capability.
// Runner not root: one stage, the same options, run by the runner's own uid.
//
// Environment: launchers get only LAUNCHER_ENV (../exec/launcher-env.ts). With envArgsFd the last
// bwrap clears its environment and reads `--setenv NAME VALUE` pairs (NUL-separated) from that file
// descriptor, so the job's environment never appears on any command line or in a launcher's
// environment.
//
// Stopping: bwrap (the process the runner spawns, leader of the job's process group) and the
// stage-2 bwrap are the only processes of the sandbox in that group (--new-session puts the job in
// a session of its own, so TIOCSTI cannot reach the runner's terminal). Killing the group kills
// the sandbox: with --die-with-parent the namespace's init gets SIGKILL when its bwrap dies, and
// the kernel kills every process of a PID namespace when its init dies. bwrap does not forward
// signals, so a graceful stop signals the job's processes, not the launchers (process-tree.ts).
// A job killed by a signal makes bwrap exit 128+signal (137 for SIGKILL).

import { spawn } from "node:child_process";
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, isAbsolute, join, normalize, sep } from "node:path";
import { PermanentError } from "../errors.ts";
import { LAUNCHER_ENV } from "../exec/launcher-env.ts";
import { asJobUser, type JobUser } from "./job-user.ts";

export type SandboxNetwork = "shared" | "loopback";

export type SandboxOptions = {
  bwrapPath: string;
  /** The attempt directory (workspace, artifacts, output): the only writable host directory. */
  experimentDir: string;
  /** Bound read-only even where a hidden path covers them: the venv, the interpreter's prefix, caches. */
  readOnlyPaths: string[];
  /** Made invisible: directories get an empty tmpfs (mode 0111, read-only), files get /dev/null. */
  hiddenPaths: string[];
  /** "shared": the host's network; "loopback": a network namespace of its own with only lo. */
  network: SandboxNetwork;
  /**
   * GPU device nodes: false, none (bwrap's minimal /dev); a list of card minor numbers, only
   * /dev/nvidia<minor> of those cards plus the driver's control nodes (nvidiactl, nvidia-uvm,
   * nvidia-uvm-tools, nvidia-modeset, nvidia-caps); true, every /dev/nvidia* and /dev/dri.
   */
  gpuDevices: boolean | number[];
  /** The job's working directory inside the sandbox (normally inside experimentDir). */
  cwd: string;
  /** Runner is root: the job runs as this user (two stages, see the header). */
  jobUser?: JobUser;
  /** setpriv for the drop to jobUser (default /usr/bin/setpriv). */
  setprivPath?: string;
  /** The last bwrap starts with an empty environment plus the `--setenv` pairs read from this fd (see bwrapEnvArgs). */
  envArgsFd?: number;
  /** One stage (no jobUser): `--unshare-user --disable-userns`, no further user namespaces in the job (a runner that
   * is not root). */
  disableUserns?: boolean;
};

/** What bwrapArgv needs to know about the host's file system; injectable so the argv is testable. */
export type SandboxHost = {
  /** The canonical path and kind of an existing path; undefined when it does not exist. */
  lookup(path: string): { real: string; kind: "dir" | "file" } | undefined;
  /** GPU device paths to bind: /dev/nvidia*, /dev/nvidia-caps, /dev/dri, those that exist. */
  gpuDeviceNodes(): string[];
  /** Whether `user` may search (traverse) the existing directory `dir`; absent: always. */
  searchable?(dir: string, user: JobUser): boolean;
};

export const hostFileSystem: SandboxHost = {
  lookup(path) {
    try {
      const real = realpathSync(path);
      return { real, kind: statSync(real).isDirectory() ? "dir" : "file" };
    } catch {
      return undefined;
    }
  },
  gpuDeviceNodes() {
    let names: string[] = [];
    try {
      names = readdirSync("/dev");
    } catch {
      return [];
    }
    return names
      .filter((n) => n.startsWith("nvidia") || n === "dri")
      .sort()
      .map((n) => `/dev/${n}`);
  },
  searchable(dir, user) {
    try {
      const st = statSync(dir);
      const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
      return (st.mode & bit) !== 0;
    } catch {
      return false;
    }
  },
};

/** `--sandbox bwrap` was asked for but bubblewrap is missing or does not work here: refuse to start. */
export class SandboxUnavailableError extends PermanentError {
  constructor(readonly reason: string) {
    super(`--sandbox bwrap: ${reason}`, { field: "sandbox" });
  }
}

/** The first executable `bwrap` on the PATH of `env`. */
export function findBwrap(env: Record<string, string | undefined>): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    const candidate = join(dir, "bwrap");
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs `argv` with the launchers' environment; the reason it fails, or undefined when it exits 0. */
function runProbe(argv: string[], what: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let stderr = "";
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: LAUNCHER_ENV });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(`${what} did not finish within ${timeoutMs} ms`);
    }, timeoutMs);
    child.stderr!.on("data", (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString("utf8");
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve(`cannot run ${argv[0]}: ${e.message}`);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(undefined);
      const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${code}`);
      resolve(`${what} cannot create namespaces here (user namespaces disabled or not permitted?): ${why}`);
    });
  });
}

/** Runs `bwrap --ro-bind / / --unshare-pid true` once; the reason it fails, or undefined when it works. */
export function probeBwrap(path: string, timeoutMs = 10_000): Promise<string | undefined> {
  return runProbe([path, "--ro-bind", "/", "/", "--unshare-pid", "true"], `${path} --unshare-pid true`, timeoutMs);
}

/**
 * Runs `true` exactly as a job would be run (both stages as `jobUser` when given, user namespace,
 * fresh /proc, the network mode): the reason it fails, or undefined when jobs can be sandboxed here.
 */
export async function probeSandbox(
  bwrapPath: string,
  options: { jobUser?: JobUser; network?: SandboxNetwork; setprivPath?: string; timeoutMs?: number } = {},
): Promise<string | undefined> {
  const quick = await probeBwrap(bwrapPath, options.timeoutMs);
  if (quick) return quick;
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), "studio-runner-probe-"));
    if (options.jobUser) chownSync(dir, options.jobUser.uid, options.jobUser.gid);
    const argv = bwrapArgv(
      {
        bwrapPath,
        experimentDir: dir,
        readOnlyPaths: [],
        hiddenPaths: [],
        network: options.network ?? "shared",
        gpuDevices: false,
        cwd: dir,
        jobUser: options.jobUser,
        setprivPath: options.setprivPath,
      },
      ["/bin/sh", "-c", "exit 0"],
    );
    const who = options.jobUser ? ` as job user ${options.jobUser.label}` : "";
    return await runProbe(argv, `a sandboxed job${who}`, options.timeoutMs ?? 10_000);
  } catch (err) {
    return `cannot prepare the sandbox probe: ${(err as Error).message}`;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** findBwrap + probeSandbox for startup: the bwrap path, or SandboxUnavailableError. */
export async function requireBwrap(
  env: Record<string, string | undefined>,
  options: { jobUser?: JobUser; network?: SandboxNetwork; setprivPath?: string } = {},
): Promise<string> {
  const path = findBwrap(env);
  if (!path)
    throw new SandboxUnavailableError(
      "bwrap (bubblewrap) is not on the PATH; install it (apt-get install bubblewrap) or run without --sandbox",
    );
  const reason = await probeSandbox(path, options);
  if (reason) throw new SandboxUnavailableError(reason);
  return path;
}

/**
 * The job's environment as bwrap arguments for --args: NUL-separated `--setenv NAME VALUE`.
 * Names with "=" or NUL and values with NUL cannot be environment entries and are left out.
 */
export function bwrapEnvArgs(env: Record<string, string>): Buffer {
  const parts: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name || name.includes("=") || name.includes("\0") || value.includes("\0")) continue;
    parts.push("--setenv", name, value);
  }
  return Buffer.from(parts.map((p) => `${p}\0`).join(""), "utf8");
}

/** Fresh inside the sandbox: hidden paths under these are already invisible. */
const PRIVATE_ROOTS = ["/tmp", "/dev", "/proc"];

/** Device nodes of the NVIDIA driver that every CUDA job needs besides its cards' /dev/nvidiaN. */
const GPU_CONTROL_NODES = ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps"];

const within = (path: string, root: string) => path === root || path.startsWith(root === sep ? root : root + sep);
const depth = (path: string) => (path === sep ? 0 : path.split(sep).length - 1);

/** The directories from the first below / down to the parent of `path`. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let p = dirname(path); p !== sep; p = dirname(p)) out.unshift(p);
  return out;
}

/** The GPU device nodes to bind for `gpuDevices`. */
function gpuNodes(gpuDevices: SandboxOptions["gpuDevices"], host: SandboxHost): string[] {
  if (gpuDevices === false) return [];
  const present = host.gpuDeviceNodes();
  if (gpuDevices === true) return present;
  if (!gpuDevices.length) return [];
  const cards = new Set(gpuDevices.map((m) => `/dev/nvidia${m}`));
  const control = new Set(GPU_CONTROL_NODES.map((n) => `/dev/${n}`));
  return present.filter((p) => cards.has(p) || control.has(p));
}

/**
 * The argv that runs `command` in the sandbox. Only `host` is consulted (realpath, file or
 * directory, GPU nodes, searchable directories); everything else follows from the options. Mounts
 * are ordered parents first, so an experiment directory inside a hidden working directory, or a
 * venv inside a hidden cache directory, is bound on top of the hiding tmpfs. For the same path,
 * writable beats read-only beats hidden.
 */
export function bwrapArgv(options: SandboxOptions, command: string[], host: SandboxHost = hostFileSystem): string[] {
  if (command.length === 0) throw new Error("bwrapArgv: empty command");
  const absolute = (what: string, path: string) => {
    if (!isAbsolute(path)) throw new Error(`bwrapArgv: ${what} must be an absolute path: ${JSON.stringify(path)}`);
    return normalize(path);
  };
  const canonical = (what: string, path: string) => host.lookup(absolute(what, path));
  const user = options.jobUser;

  // rank: 0 hidden, 1 read-only, 2 writable; -1 a directory stage 1 creates for a bind below a tmpfs.
  type Mount = { path: string; rank: number; args: string[] };
  const mounts: Mount[] = [];
  const remountRo: string[] = [];
  const hideDir = (path: string) => {
    mounts.push({ path, rank: 0, args: ["--perms", "0111", "--tmpfs", path] });
    remountRo.push(path);
  };
  for (const p of options.hiddenPaths) {
    const found = canonical("hidden path", p);
    if (!found) continue; // nothing to hide
    if (found.real === sep) throw new Error("bwrapArgv: cannot hide /");
    if (PRIVATE_ROOTS.some((r) => within(found.real, r))) continue;
    if (found.kind === "dir") hideDir(found.real);
    else mounts.push({ path: found.real, rank: 0, args: ["--ro-bind", "/dev/null", found.real] });
  }
  for (const p of options.readOnlyPaths) {
    const found = canonical("read-only path", p);
    if (!found) throw new Error(`bwrapArgv: read-only path does not exist: ${p}`);
    mounts.push({ path: found.real, rank: 1, args: ["--ro-bind", found.real, found.real] });
  }
  const experiment = canonical("experimentDir", options.experimentDir);
  if (experiment?.kind !== "dir")
    throw new Error(`bwrapArgv: experimentDir is not a directory: ${options.experimentDir}`);
  if (experiment.real === sep) throw new Error("bwrapArgv: experimentDir cannot be /");
  mounts.push({ path: experiment.real, rank: 2, args: ["--bind", experiment.real, experiment.real] });

  // A hidden path inside a hidden directory is invisible already, unless a bind in between brings
  // its surroundings back.
  {
    const hiddenDirs = mounts.filter((m) => m.rank === 0 && m.args.includes("--tmpfs")).map((m) => m.path);
    const binds = mounts.filter((m) => m.rank > 0).map((m) => m.path);
    const covered = (m: Mount) =>
      m.rank === 0 &&
      hiddenDirs.some(
        (d) => d !== m.path && within(m.path, d) && !binds.some((b) => b !== d && within(b, d) && within(m.path, b)),
      );
    for (let i = mounts.length - 1; i >= 0; i--) {
      if (!covered(mounts[i]!)) continue;
      const [gone] = mounts.splice(i, 1);
      const r = remountRo.indexOf(gone!.path);
      if (r >= 0) remountRo.splice(r, 1);
    }
  }

  // The job user must be able to walk to every bound path. Where it could not search a directory
  // on the way, that directory is covered by an empty tmpfs (it could see nothing below it anyway)
  // and the path below is recreated there, searchable but not listable (0711; bwrap would create it 0700).
  if (user) {
    const binds = mounts.filter((m) => m.rank > 0).map((m) => m.path);
    const hiddenDirs = new Set(mounts.filter((m) => m.rank === 0 && m.args.includes("--tmpfs")).map((m) => m.path));
    const bound = new Set(binds);
    const created = new Set<string>();
    for (const target of binds) {
      let inTmpfs = false;
      for (const dir of ancestors(target)) {
        if (bound.has(dir)) {
          inTmpfs = false; // a host directory again from here
        } else if (hiddenDirs.has(dir) || PRIVATE_ROOTS.includes(dir)) {
          inTmpfs = true;
        } else if (inTmpfs) {
          if (!created.has(dir)) mounts.push({ path: dir, rank: -1, args: ["--perms", "0711", "--dir", dir] });
          created.add(dir);
        } else if (host.searchable && !host.searchable(dir, user)) {
          hideDir(dir);
          hiddenDirs.add(dir);
          inTmpfs = true;
        }
      }
    }
  }

  // Parents first; for the same path the stronger grant last. Stable for everything else.
  const ordered = mounts
    .map((m, i) => ({ m, i }))
    .sort((a, b) => depth(a.m.path) - depth(b.m.path) || (a.m.path === b.m.path ? a.m.rank - b.m.rank : 0) || a.i - b.i)
    .map(({ m }) => m);
  const seen = new Set<string>();
  const deduped: Mount[] = [];
  for (let i = ordered.length - 1; i >= 0; i--) {
    const m = ordered[i]!;
    if (seen.has(m.path)) continue; // a stronger grant for this path comes later
    seen.add(m.path);
    deduped.unshift(m);
  }
  const keptHidden = new Set(deduped.filter((m) => m.rank === 0).map((m) => m.path));
  const gpu = gpuNodes(options.gpuDevices, host);
  const cwd = absolute("cwd", options.cwd);
  const envArgs = options.envArgsFd !== undefined ? ["--clearenv", "--args", String(options.envArgsFd)] : [];
  const namespaces = [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(options.network === "loopback" ? ["--unshare-net"] : []),
  ];

  if (!user) {
    const argv = [options.bwrapPath, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"];
    for (const m of deduped) argv.push(...m.args);
    for (const p of remountRo) if (keptHidden.has(p)) argv.push("--remount-ro", p);
    for (const node of gpu) argv.push("--dev-bind", node, node);
    argv.push(...(options.disableUserns ? ["--unshare-user", "--disable-userns"] : []), ...namespaces);
    // As root bwrap would keep every capability (the job could unmount what hides the secrets).
    argv.push("--cap-drop", "ALL", "--die-with-parent", "--new-session", ...envArgs);
    argv.push("--chdir", cwd, "--", ...command);
    return argv;
  }

  // Stage 1, root: the file-system view. The host's /proc is bound (read-write, not remounted) so
  // that stage 2 may mount a fresh one for its PID namespace (the kernel wants a fully visible proc).
  const outer = [
    options.bwrapPath,
    "--ro-bind",
    "/",
    "/",
    "--dev-bind",
    "/proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "1777",
    "--tmpfs",
    "/dev/shm",
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
  ];
  for (const m of deduped) outer.push(...m.args);
  for (const p of remountRo) if (keptHidden.has(p)) outer.push("--remount-ro", p);
  for (const node of gpu) outer.push("--dev-bind", node, node);
  outer.push("--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--die-with-parent", "--");
  // Stage 2, the job user: namespaces, fresh /proc, no capabilities, no further user namespaces.
  const inner = [
    options.bwrapPath,
    "--unshare-user",
    "--uid",
    String(user.uid),
    "--gid",
    String(user.gid),
    "--disable-userns",
    "--dev-bind",
    "/",
    "/",
    "--proc",
    "/proc",
  ];
  inner.push(
    ...namespaces,
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
    ...envArgs,
    "--chdir",
    cwd,
    "--",
    ...command,
  );
  return [...outer, ...asJobUser(user, inner, options.setprivPath ?? "/usr/bin/setpriv", { noNewPrivs: true })];
}
