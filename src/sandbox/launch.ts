// How a venv job is launched: the command line (bwrap in two or one stages, or, without a sandbox,
// setpriv and the env loader), the environment its first process gets (always LAUNCHER_ENV) and the
// job's environment as the payload for fd 3. The cgroup wrapper, when there is one, goes around the
// argv in execute(); it runs with LAUNCHER_ENV as well.

import { readFileSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { envLoaderArgv, JOB_ENV_FD, shellEnvScript } from "../exec/launcher-env.ts";
import { bwrapArgv, bwrapEnvArgs, type SandboxNetwork } from "./bwrap.ts";
import { asJobUser, type JobUser } from "./job-user.ts";

export type SandboxSettings = {
  bwrapPath: string;
  network: SandboxNetwork;
  hiddenPaths: string[];
  /** Runner is root: jobs run as this user. */
  jobUser?: JobUser;
  /** GPU uuid → the minor number of its /dev/nvidiaN. */
  gpuMinors?: Record<string, number>;
};

export type Launch = { argv: string[]; payload: Buffer; notes: string[] };

/**
 * The interpreter prefixes a venv's python needs (bound read-only in the sandbox: the runner's home
 * is hidden, and /root/.pyenv with it): where its python really is, and pyvenv.cfg's `home`.
 */
export function interpreterPrefixes(venvDir: string, python: string): string[] {
  const out = new Set<string>();
  const add = (binary: string) => {
    try {
      const prefix = dirname(dirname(realpathSync(binary)));
      if (prefix !== "/" && !prefix.startsWith(`${venvDir}/`) && prefix !== venvDir) out.add(prefix);
    } catch {
      // not there
    }
  };
  add(python);
  try {
    const home = /^home\s*=\s*(.+)$/m.exec(readFileSync(join(venvDir, "pyvenv.cfg"), "utf8"))?.[1]?.trim();
    if (home) add(join(home, "python3"));
  } catch {
    // no pyvenv.cfg
  }
  return [...out];
}

/** The launch of `command` (a venv's python and its arguments) with the job environment `env`. */
export function venvJobLaunch(input: {
  command: string[];
  env: Record<string, string>;
  attemptDir: string;
  cwd: string;
  venvDir: string;
  sandbox?: SandboxSettings;
  /** Without a sandbox: the user jobs run as (only with an explicit --job-user). */
  jobUser?: JobUser;
  gpuUuids: string[];
}): Launch {
  const notes: string[] = [];
  const sb = input.sandbox;
  if (!sb) {
    const { script, skipped } = shellEnvScript(input.env);
    if (skipped.length)
      notes.push(`warning: not passed to the experiment (not a shell variable name): ${skipped.join(", ")}`);
    return {
      argv: asJobUser(input.jobUser, envLoaderArgv(input.command)),
      payload: Buffer.from(script, "utf8"),
      notes,
    };
  }
  let gpuDevices: number[] | false = false;
  if (input.gpuUuids.length) {
    gpuDevices = [];
    for (const uuid of input.gpuUuids) {
      const minor = sb.gpuMinors?.[uuid];
      if (minor === undefined)
        notes.push(`warning: no device node known for GPU ${uuid}; it is not available in the sandbox`);
      else gpuDevices.push(minor);
    }
  }
  const argv = bwrapArgv(
    {
      bwrapPath: sb.bwrapPath,
      experimentDir: input.attemptDir,
      readOnlyPaths: [input.venvDir, ...interpreterPrefixes(input.venvDir, input.command[0]!)],
      hiddenPaths: sb.hiddenPaths,
      network: sb.network,
      gpuDevices,
      cwd: input.cwd,
      jobUser: sb.jobUser,
      disableUserns: !sb.jobUser,
      envArgsFd: JOB_ENV_FD,
    },
    input.command,
  );
  return { argv, payload: bwrapEnvArgs(input.env), notes };
}
