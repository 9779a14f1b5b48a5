// Who experiments and environment builds run as. A runner that is root never hands a job uid 0:
// launchers drop to --job-user (default nobody, 65534:65534) with setpriv before bwrap creates the
// job's user namespace, so the job's files and processes belong to that uid on the host too. A
// runner that is not root runs jobs as itself (it has nothing higher to drop from).

import { readFileSync } from "node:fs";
import { PermanentError } from "../errors.ts";

export type JobUser = { uid: number; gid: number; label: string };

export const DEFAULT_JOB_USER = "65534:65534";

/** --job-user cannot be resolved: the runner refuses to start. */
export class JobUserError extends PermanentError {
  constructor(message: string) {
    super(message, { field: "job-user" });
  }
}

/** The uid/gid jobs run as, or undefined when the runner is not root (jobs run as the runner). */
export function resolveJobUser(
  setting: string | undefined,
  euid: number = process.geteuid?.() ?? -1,
  passwd = "/etc/passwd",
): JobUser | undefined {
  if (euid !== 0) return undefined;
  const text = (setting ?? "").trim() || DEFAULT_JOB_USER;
  const numeric = /^(\d+)(?::(\d+))?$/.exec(text);
  let user: JobUser;
  if (numeric) {
    const uid = Number(numeric[1]);
    user = { uid, gid: numeric[2] !== undefined ? Number(numeric[2]) : uid, label: text };
  } else {
    let lines: string[] = [];
    try {
      lines = readFileSync(passwd, "utf8").split("\n");
    } catch (err) {
      throw new JobUserError(`--job-user ${JSON.stringify(text)}: cannot read ${passwd}: ${(err as Error).message}`);
    }
    const entry = lines.map((l) => l.split(":")).find((f) => f[0] === text);
    if (!entry || entry.length < 4)
      throw new JobUserError(`--job-user ${JSON.stringify(text)}: no such user in ${passwd}`);
    user = { uid: Number(entry[2]), gid: Number(entry[3]), label: `${text} (${entry[2]}:${entry[3]})` };
  }
  if (user.uid === 0 || user.gid === 0)
    throw new JobUserError(`--job-user ${JSON.stringify(text)}: jobs never run as root (uid or gid 0)`);
  return user;
}

/**
 * `argv` started as `user` (setpriv: real and effective ids, no supplementary groups; with
 * noNewPrivs also no_new_privs, so nothing below can gain privileges by exec); unchanged without a user.
 */
export function asJobUser(
  user: JobUser | undefined,
  argv: string[],
  setprivPath = "/usr/bin/setpriv",
  options: { noNewPrivs?: boolean } = {},
): string[] {
  if (!user) return argv;
  return [
    setprivPath,
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    "--clear-groups",
    ...(options.noNewPrivs ? ["--no-new-privs"] : []),
    "--",
    ...argv,
  ];
}
