// The attempt directory as the job user finds it: a private HOME and TMPDIR of its own, the attempt
// directory and every artifact directory (workspace, data, modeldir, output, _results …) owned by
// the job user, so it may write, rename or replace what is its own (the runner's uploads never
// follow what the job left there). Files the runner wrote before the job starts (the mapping, the
// log in output/) stay root's: the job can read or remove them, not write into them. The runner's
// owner records are not here. Ownership is changed without following links (lchown), before the
// job starts.

import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { JobUser } from "./job-user.ts";

/** Names inside the attempt directory (dot-names: not artifact labels). */
export const JOB_HOME = ".job-home";
export const JOB_TMP = ".job-tmp";

/** Labels whose directory holds a file the runner writes (the experiment's log): the directory is the job's, the
 * files in it stay root's. */
const RUNNER_FILES_LABELS = new Set(["output"]);

export type JobDirs = { home: string; tmp: string };

/** `path` and everything below it owned by `user`; links are re-owned, never followed. */
function chownTree(path: string, user: JobUser): void {
  lchownSync(path, user.uid, user.gid);
  if (!lstatSync(path).isDirectory()) return;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chownTree(child, user);
    else lchownSync(child, user.uid, user.gid);
  }
}

/**
 * Creates HOME and TMPDIR in the attempt directory and hands the job's parts to `user` (when the
 * runner is root and jobs run as someone else); `readable` are runner files the job must read.
 */
export function prepareJobDirs(
  attemptDir: string,
  dirs: Record<string, string>,
  user: JobUser | undefined,
  readable: string[] = [],
): JobDirs {
  const home = join(attemptDir, JOB_HOME);
  const tmp = join(attemptDir, JOB_TMP);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  if (!user) return { home, tmp };
  chownSync(attemptDir, user.uid, user.gid);
  for (const [label, dir] of Object.entries(dirs)) {
    mkdirSync(dir, { recursive: true });
    if (RUNNER_FILES_LABELS.has(label)) lchownSync(dir, user.uid, user.gid);
    else chownTree(dir, user);
  }
  chownSync(home, user.uid, user.gid);
  chownSync(tmp, user.uid, user.gid);
  for (const file of readable) {
    try {
      chmodSync(file, 0o644);
    } catch {
      // not there: nothing to read
    }
  }
  return { home, tmp };
}
