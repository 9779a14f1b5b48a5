// The bubblewrap sandbox for venv jobs (`--sandbox bwrap`): the command line that runs a job with the
// system read-only, only its attempt directory writable, a private /tmp and /dev, its own PID, IPC
// and UTS namespaces (and network namespace in loopback mode), no capabilities, the runner's secrets
// hidden, and GPU device nodes only when GPUs were allocated; plus finding and probing bwrap.
//
// Environment: bwrap leaves the environment alone (no --clearenv). The runner already builds the
// job's environment explicitly and passes it to spawn, so that is exactly what the job sees.
//
// Stopping: bwrap (the process the runner spawns, leader of the job's process group) is the only
// process of the sandbox left in that group (--new-session puts the job in a session of its own,
// so TIOCSTI cannot reach the runner's terminal). Killing bwrap kills the whole sandbox: with
// --die-with-parent the namespace's init gets SIGKILL when bwrap dies, and the kernel kills every
// process of a PID namespace when its init dies. bwrap does not forward signals, so a SIGTERM to
// bwrap ends the job at once without grace; a graceful stop signals bwrap's descendants (the job),
// not bwrap. A job killed by a signal makes bwrap exit 128+signal (137 for SIGKILL).

import { spawn } from "node:child_process";
import { accessSync, constants, readdirSync, realpathSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, normalize, sep } from "node:path";
import { PermanentError } from "../errors.ts";

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
  /** Bind /dev/nvidia* and /dev/dri; without, the sandbox has only bwrap's minimal /dev. */
  gpuDevices: boolean;
  /** The job's working directory inside the sandbox (normally inside experimentDir). */
  cwd: string;
};

/** What bwrapArgv needs to know about the host's file system; injectable so the argv is testable. */
export type SandboxHost = {
  /** The canonical path and kind of an existing path; undefined when it does not exist. */
  lookup(path: string): { real: string; kind: "dir" | "file" } | undefined;
  /** GPU device paths to bind: /dev/nvidia*, /dev/nvidia-caps, /dev/dri, those that exist. */
  gpuDeviceNodes(): string[];
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

/** Runs `bwrap --ro-bind / / --unshare-pid true` once; the reason it fails, or undefined when it works. */
export function probeBwrap(path: string, timeoutMs = 10_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    let stderr = "";
    const child = spawn(path, ["--ro-bind", "/", "/", "--unshare-pid", "true"], { stdio: ["ignore", "ignore", "pipe"] });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(`${path} --unshare-pid true did not finish within ${timeoutMs} ms`);
    }, timeoutMs);
    child.stderr!.on("data", (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString("utf8");
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve(`cannot run ${path}: ${e.message}`);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(undefined);
      const why = stderr.trim() || (signal ? `killed by ${signal}` : `exit code ${code}`);
      resolve(`${path} cannot create namespaces here (user namespaces disabled or not permitted?): ${why}`);
    });
  });
}

/** findBwrap + probeBwrap for startup: the bwrap path, or SandboxUnavailableError. */
export async function requireBwrap(env: Record<string, string | undefined>): Promise<string> {
  const path = findBwrap(env);
  if (!path) throw new SandboxUnavailableError("bwrap (bubblewrap) is not on the PATH; install it (apt-get install bubblewrap) or run without --sandbox");
  const reason = await probeBwrap(path);
  if (reason) throw new SandboxUnavailableError(reason);
  return path;
}

/** Fresh inside the sandbox: hidden paths under these are already invisible. */
const PRIVATE_ROOTS = ["/tmp", "/dev", "/proc"];

const within = (path: string, root: string) => path === root || path.startsWith(root === sep ? root : root + sep);
const depth = (path: string) => (path === sep ? 0 : path.split(sep).length - 1);

/**
 * The argv that runs `command` in the sandbox. Only `host` is consulted (realpath, file or
 * directory, GPU nodes); everything else follows from the options. Mounts are ordered parents
 * first, so an experiment directory inside a hidden working directory, or a venv inside a hidden
 * cache directory, is bound on top of the hiding tmpfs. For the same path, writable beats
 * read-only beats hidden.
 */
export function bwrapArgv(options: SandboxOptions, command: string[], host: SandboxHost = hostFileSystem): string[] {
  if (command.length === 0) throw new Error("bwrapArgv: empty command");
  const absolute = (what: string, path: string) => {
    if (!isAbsolute(path)) throw new Error(`bwrapArgv: ${what} must be an absolute path: ${JSON.stringify(path)}`);
    return normalize(path);
  };
  const canonical = (what: string, path: string) => host.lookup(absolute(what, path));

  type Mount = { path: string; rank: number; args: string[] };
  const mounts: Mount[] = [];
  const remountRo: string[] = [];
  for (const p of options.hiddenPaths) {
    const found = canonical("hidden path", p);
    if (!found) continue; // nothing to hide
    if (found.real === sep) throw new Error("bwrapArgv: cannot hide /");
    if (PRIVATE_ROOTS.some((r) => within(found.real, r))) continue;
    if (found.kind === "dir") {
      mounts.push({ path: found.real, rank: 0, args: ["--perms", "0111", "--tmpfs", found.real] });
      remountRo.push(found.real);
    } else {
      mounts.push({ path: found.real, rank: 0, args: ["--ro-bind", "/dev/null", found.real] });
    }
  }
  for (const p of options.readOnlyPaths) {
    const found = canonical("read-only path", p);
    if (!found) throw new Error(`bwrapArgv: read-only path does not exist: ${p}`);
    mounts.push({ path: found.real, rank: 1, args: ["--ro-bind", found.real, found.real] });
  }
  const experiment = canonical("experimentDir", options.experimentDir);
  if (!experiment || experiment.kind !== "dir") throw new Error(`bwrapArgv: experimentDir is not a directory: ${options.experimentDir}`);
  if (experiment.real === sep) throw new Error("bwrapArgv: experimentDir cannot be /");
  mounts.push({ path: experiment.real, rank: 2, args: ["--bind", experiment.real, experiment.real] });

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

  const argv = [options.bwrapPath, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"];
  for (const m of deduped) argv.push(...m.args);
  for (const p of remountRo) if (keptHidden.has(p)) argv.push("--remount-ro", p);
  if (options.gpuDevices) for (const node of host.gpuDeviceNodes()) argv.push("--dev-bind", node, node);
  argv.push("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try");
  if (options.network === "loopback") argv.push("--unshare-net");
  // As root bwrap would keep every capability (the job could unmount what hides the secrets).
  argv.push("--cap-drop", "ALL", "--die-with-parent", "--new-session");
  argv.push("--chdir", absolute("cwd", options.cwd), "--", ...command);
  return argv;
}
