// Experiments left running by a runner that was killed (SIGKILL, OOM, power loss of the runner
// only): each attempt has an owner record in <working-dir>/studio-runner/.owners/ (0700, files 0600,
// written only by the runner, never inside the job-writable attempt directory); a starting runner
// stops the orphans whose records it finds and removes their directories, so a requeued experiment
// never runs twice at once. A pid is killed only while it is the process that was recorded (same
// boot, same start time, still its own process group leader): a pid the kernel has given to another
// process since, or one a job wrote into a file of its own, is never touched.

import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { bootId, isProcessAlive, isSameProcess, processGroupOf, processStartTicks } from "../exec/pid.ts";
import { descendants } from "../exec/process-tree.ts";
import { replacePrivateFile } from "../fs/private-files.ts";

/** What an attempt tells recordOwner: the job's pid once it is spawned. */
export type AttemptOwner = { host: string; runnerPid: number; runnerId: string; jobPid?: number };

/** A recorded process: its pid and when it started (clock ticks after boot, /proc/<pid>/stat field 22). */
type RecordedProcess = { pid: number; startTicks?: number };

/** What is on disk. */
type OwnerRecord = {
  version: 2;
  host: string;
  bootId: string;
  runnerId: string;
  runner: RecordedProcess;
  /** The job's launcher, leader of its own process group (spawned detached). */
  job?: RecordedProcess & { pgid?: number };
  key: string;
  attempt: string;
};

const OWNERS = ".owners";
const KEY = /^[A-Za-z0-9][A-Za-z0-9._:@+=,-]{0,254}$/;
const ATTEMPT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** <working-dir>/studio-runner for an attempt directory <working-dir>/studio-runner/<key>/<attempt>. */
const rootOf = (attemptDir: string) => dirname(dirname(attemptDir));

/** The record's file: a digest of key and attempt (a key may be as long as a file name may). */
function recordPath(root: string, key: string, attempt: string): string {
  return join(root, OWNERS, `${createHash("sha256").update(`${key}/${attempt}`).digest("hex").slice(0, 40)}.json`);
}

function ensureOwnersDir(root: string): string {
  const dir = join(root, OWNERS);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return dir;
}

const runnerStartTicks = processStartTicks(process.pid);

/**
 * Write (or update, once the job is spawned) the owner record of an attempt. Call it right after
 * spawning: the job's start time is read before anything is awaited, while the pid is surely its.
 * The key's directory gets the traversal bits of <working-dir>/studio-runner (0711 where a job user
 * must reach its attempt directory, else 0700).
 */
export async function recordOwner(attemptDir: string, owner: AttemptOwner): Promise<void> {
  const jobStart = owner.jobPid !== undefined ? processStartTicks(owner.jobPid) : undefined;
  const jobGroup = owner.jobPid !== undefined ? processGroupOf(owner.jobPid) : undefined;
  const root = rootOf(attemptDir);
  const key = basename(dirname(attemptDir));
  const attempt = basename(attemptDir);
  ensureOwnersDir(root);
  try {
    chmodSync(dirname(attemptDir), statSync(root).mode & 0o711);
  } catch {
    // the attempt's own directory layout reports its faults
  }
  const record: OwnerRecord = {
    version: 2,
    host: owner.host,
    bootId: bootId(),
    runnerId: owner.runnerId,
    runner: {
      pid: owner.runnerPid,
      startTicks: owner.runnerPid === process.pid ? runnerStartTicks : processStartTicks(owner.runnerPid),
    },
    job: owner.jobPid !== undefined ? { pid: owner.jobPid, startTicks: jobStart, pgid: jobGroup } : undefined,
    key,
    attempt,
  };
  replacePrivateFile(recordPath(root, key, attempt), JSON.stringify(record));
}

/** The attempt is over: its record goes (its directory is the attempt's to remove). */
export async function forgetOwner(attemptDir: string): Promise<void> {
  rmSync(recordPath(rootOf(attemptDir), basename(dirname(attemptDir)), basename(attemptDir)), { force: true });
}

function readRecord(file: string): OwnerRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(file, "utf8")) as OwnerRecord;
    if (
      r?.version !== 2 ||
      typeof r.key !== "string" ||
      !KEY.test(r.key) ||
      typeof r.attempt !== "string" ||
      !ATTEMPT.test(r.attempt)
    )
      return undefined;
    if (!Number.isInteger(r.runner?.pid)) return undefined;
    return r;
  } catch {
    return undefined;
  }
}

/** The recorded runner still runs (same pid, same start time, same boot). */
function ownerAlive(r: OwnerRecord): boolean {
  if (!isProcessAlive(r.runner.pid)) return false;
  if (r.runner.startTicks === undefined) return true; // cannot tell: assume it is the owner
  return isSameProcess(r.runner.pid, r.runner.startTicks, r.bootId);
}

/** Kill the recorded job's process group and its descendants, only while the pid is still that job. */
function stopJob(job: NonNullable<OwnerRecord["job"]>, recordedBoot: string): boolean {
  if (!isSameProcess(job.pid, job.startTicks, recordedBoot)) return false;
  if (processGroupOf(job.pid) !== job.pid || (job.pgid !== undefined && job.pgid !== job.pid)) return false;
  for (const pid of [job.pid, ...descendants(job.pid)]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  try {
    process.kill(-job.pid, "SIGKILL");
  } catch {
    // gone
  }
  return true;
}

/** Kill the process groups of attempts whose runner is gone; returns how many were stopped. */
export async function reapOrphans(
  workingDir: string,
  self: { runnerId: string; keepDirectories?: boolean },
  log: (m: string) => void,
): Promise<number> {
  const root = join(workingDir, "studio-runner");
  let files: string[];
  try {
    files = readdirSync(join(root, OWNERS)).filter((f) => f.endsWith(".json"));
  } catch {
    return 0;
  }
  let reaped = 0;
  for (const name of files) {
    const file = join(root, OWNERS, name);
    const owner = readRecord(file);
    if (!owner) {
      rmSync(file, { force: true });
      continue;
    }
    if (owner.host !== hostname() || owner.runnerId === self.runnerId) continue;
    if (owner.bootId === bootId() && ownerAlive(owner)) continue;
    if (owner.job && stopJob(owner.job, owner.bootId)) {
      log(`stopped orphaned experiment ${owner.key} (pid ${owner.job.pid}) left by runner pid ${owner.runner.pid}`);
      reaped++;
    }
    if (!self.keepDirectories) await rm(join(root, owner.key, owner.attempt), { recursive: true, force: true });
    rmSync(file, { force: true });
  }
  return reaped;
}
