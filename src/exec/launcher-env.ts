// The environment of the runner's launchers (bwrap, setpriv, the cgroup /bin/sh wrapper, the
// env loader, apptainer, pip's own launch): fixed and minimal, so nothing from a request
// (LD_PRELOAD, LD_AUDIT, PYTHONPATH, PIP_* in config.env …) reaches a process that runs with the
// runner's privileges or outside the sandbox. The experiment's environment reaches only the
// experiment: through bwrap's --args file descriptor (see bwrapEnvArgs in ../sandbox/bwrap.ts), or,
// without a sandbox, through envLoaderArgv below.

export const LAUNCHER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export const LAUNCHER_ENV: Record<string, string> = Object.freeze({ PATH: LAUNCHER_PATH, LANG: "C.UTF-8" }) as Record<
  string,
  string
>;

/** The file descriptor the job's environment is handed over on (the child's fd 3). */
export const JOB_ENV_FD = 3;

/** Names a POSIX shell can export. */
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `value` as one single-quoted shell word. */
const quote = (value: string) => `'${value.replaceAll("'", `'\\''`)}'`;

/**
 * The shell text envLoaderArgv evaluates: the launchers' variables unset, then one export per
 * variable. Names a shell cannot export and values holding NUL are left out (listed in `skipped`).
 */
export function shellEnvScript(env: Record<string, string>): { script: string; skipped: string[] } {
  const lines = [`unset ${Object.keys(LAUNCHER_ENV).join(" ")}`];
  const skipped: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!SHELL_NAME.test(name) || value.includes("\0")) {
      skipped.push(name);
      continue;
    }
    lines.push(`export ${name}=${quote(value)}`);
  }
  return { script: `${lines.join("\n")}\n`, skipped };
}

/**
 * `command` started by a tiny /bin/sh loader that reads the job's environment (shellEnvScript) from
 * fd JOB_ENV_FD, closes it and execs the command: the loader itself starts with LAUNCHER_ENV, and
 * the environment is on no command line.
 */
export function envLoaderArgv(command: string[]): string[] {
  return [
    "/bin/sh",
    "-c",
    `eval "$(/bin/cat <&${JOB_ENV_FD})" && exec ${JOB_ENV_FD}<&- && exec "$@"`,
    "studio-runner-env",
    ...command,
  ];
}
