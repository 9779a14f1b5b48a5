// The runner's own directories: made 0700 (0711 where a job user must pass through to its attempt
// directory or venv) and refused at start when another uid owns them or other users may write
// them (src/fs/private-files.ts). Everything else the runner writes is private through the umask
// (077) that `run` and `submit` set first.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, sharedParentWarning } from "../fs/private-files.ts";

/** The umask of every process of the runner: nothing it writes is readable by other users. */
export const RUNNER_UMASK = 0o077;

export type RunnerDirs = {
  workingDir: string;
  cacheDir: string;
  queueRoot: string;
  /** The runner is root and jobs run as a job user: the paths to their attempt directories and venvs must be
   * traversable (0711). */
  jobUserTraverses: boolean;
};

/** The root of attempt directories, owner records and the replay record: <working-dir>/studio-runner. */
export const runnerWorkRoot = (workingDir: string) => join(workingDir, "studio-runner");

/** Check and make every directory the runner keeps its own; throws PrivateDirError (refuse to start). */
export function prepareRunnerDirs(d: RunnerDirs, log: { info(m: string): void; warn(m: string): void }): void {
  const pass = d.jobUserTraverses ? 0o711 : 0o700;
  mkdirSync(d.workingDir, { recursive: true });
  const shared = sharedParentWarning(d.workingDir, "--working-dir");
  if (shared) log.warn(shared);
  const info = (m: string) => log.info(m);
  // The working dir may be the shared $TMPDIR: only the runner's subdirectory is checked.
  ensurePrivateDir(runnerWorkRoot(d.workingDir), {
    mode: pass,
    label: "--working-dir's studio-runner directory",
    log: info,
  });
  ensurePrivateDir(d.cacheDir, { mode: pass, label: "--cache-dir", followSymlink: true, log: info });
  ensurePrivateDir(join(d.cacheDir, "venvs"), { mode: pass, label: "the venv cache", log: info });
  ensurePrivateDir(join(d.cacheDir, "artifacts"), { mode: 0o700, label: "the artifact cache", log: info });
  ensurePrivateDir(d.queueRoot, { mode: 0o700, label: "--queue-root", followSymlink: true, log: info });
}
