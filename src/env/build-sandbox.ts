// How an environment build (python -m venv, pip install) is launched: its fixed environment (PATH,
// LANG, a private HOME and the operator's pip settings; nothing from the request, no runner
// secrets), the user it runs as (--job-user when the runner is root) and, when the runner
// sandboxes experiments, the bubblewrap sandbox around it: network shared (pip needs its index),
// only the venv being built writable, the runner's secrets, config, queue, working dir and caches
// (other venvs included) hidden, no capabilities, no nested user namespaces.
//
// A root runner cannot simply hand bwrap to the job user (bwrap resolves every bind source as the
// user that runs it, and /root is 0700): the build uses the jobs' two-stage launch from
// ../sandbox/bwrap.ts (root builds the view and keeps only CAP_SETUID/CAP_SETGID, setpriv drops to
// the job user, an unprivileged bwrap gives it its own user namespace with none nested).

import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, join, sep } from "node:path";
import { bwrapArgv, hostFileSystem } from "../sandbox/bwrap.ts";
import { asJobUser, type JobUser } from "../sandbox/job-user.ts";
import { LAUNCHER_ENV } from "../exec/launcher-env.ts";

export type BuildIsolation = {
  /** The runner's bubblewrap sandbox (present whenever experiments are sandboxed). */
  sandbox?: { bwrapPath: string; hiddenPaths: string[] };
  /** Set when the runner is root: builds run as this user. */
  jobUser?: JobUser;
};

/** Variables of the runner's own environment that configure pip's access to its index. */
const PASSED =
  /^(PIP_[A-Z0-9_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE)$/;

/**
 * The environment of a build: PATH, LANG, HOME, the operator's pip and proxy settings, and
 * settings the runner imposes (no shared wheel/http cache, no prompts, no version check).
 */
export function buildEnv(runnerEnv: Record<string, string | undefined>, home: string): Record<string, string> {
  const env: Record<string, string> = { ...LAUNCHER_ENV, HOME: home };
  for (const [k, v] of Object.entries(runnerEnv)) if (v !== undefined && PASSED.test(k)) env[k] = v;
  env.PIP_NO_CACHE_DIR = "1";
  delete env.PIP_CACHE_DIR;
  env.PIP_DISABLE_PIP_VERSION_CHECK = "1";
  env.PIP_NO_INPUT = "1";
  return env;
}

/** Absolute paths named in pip's settings (find-links, constraints, certificates, file: indexes, the config file). */
export function pipSettingPaths(env: Record<string, string | undefined>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (!v || !PASSED.test(k)) continue;
    for (let word of v.split(/\s+/)) {
      if (word.startsWith("file://")) word = decodeURIComponent(word.slice("file://".length));
      if (isAbsolute(word) && existsSync(word)) out.push(word);
    }
  }
  return [...new Set(out)];
}

/** The ancestors of `path` (canonical) that `user` cannot enter, outermost first. */
export function blockedAncestors(user: JobUser, path: string): string[] {
  const out: string[] = [];
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return out;
  }
  const parts = real.split(sep).filter(Boolean);
  for (let i = 1; i < parts.length; i++) {
    const dir = sep + parts.slice(0, i).join(sep);
    if (!hostFileSystem.searchable!(dir, user)) out.push(dir);
  }
  return out;
}

/** Whether `user` can reach every one of `paths` without a mount namespace. */
export function reachable(user: JobUser, paths: string[]): boolean {
  return paths.every((p) => blockedAncestors(user, p).length === 0);
}

/**
 * Runs argv in the build's sandbox (see the header): the jobs' own launch (bwrapArgv: two stages as
 * the job user when the runner is root, one stage with its own user namespace otherwise), with the
 * network shared, no GPUs and `buildDir` the only writable path.
 */
export function buildArgv(
  iso: BuildIsolation,
  o: { buildDir: string; readOnlyPaths: string[]; runAsJobUser: boolean },
  command: string[],
): string[] {
  // The runner may run with umask 077; the venv must be readable by the jobs that use it.
  const inner = ["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", ...command];
  const user = o.runAsJobUser ? iso.jobUser : undefined;
  if (!iso.sandbox) return asJobUser(user, inner);
  return bwrapArgv(
    {
      bwrapPath: iso.sandbox.bwrapPath,
      experimentDir: o.buildDir,
      readOnlyPaths: o.readOnlyPaths.filter((p) => existsSync(p)),
      hiddenPaths: iso.sandbox.hiddenPaths,
      network: "shared",
      gpuDevices: false,
      cwd: o.buildDir,
      jobUser: user,
      disableUserns: !user,
    },
    inner,
  );
}

export type BuildResult = { code: number; output: string };

/** Runs a build step to completion (its environment exactly `env`, no input). */
export function runBuildStep(argv: string[], o: { env: Record<string, string>; cwd: string }): Promise<BuildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: o.cwd, env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (output.length > 4_000_000) output = output.slice(-2_000_000);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }));
  });
}

/** The interpreter's installation prefix (bound read-only into the build): <prefix>/bin/python. */
export function interpreterPrefixes(path: string): string[] {
  const out = [dirname(dirname(path))];
  try {
    out.push(dirname(dirname(realpathSync(path))));
  } catch {
    // the interpreter vanished; the build will say so
  }
  return [...new Set(out)].filter((p) => p !== sep && p !== join(sep, "usr") && existsSync(p));
}
