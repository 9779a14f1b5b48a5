// Experiments left running by a runner that was killed (SIGKILL, OOM, power loss of the runner
// only): each attempt directory records its owner; a starting runner stops the orphans it finds
// and removes their directories, so a requeued experiment never runs twice at once.

import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { isProcessAlive } from "../exec/pid.ts";
import { descendants } from "../exec/process-tree.ts";

export type AttemptOwner = { host: string; runnerPid: number; runnerId: string; jobPid?: number };

const OWNER_FILE = "runner.json";

export async function recordOwner(attemptDir: string, owner: AttemptOwner): Promise<void> {
  await writeFile(join(attemptDir, OWNER_FILE), JSON.stringify(owner));
}

function processGroupOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return undefined;
  }
}

/** Kill the process groups of attempts whose runner is gone; returns how many were stopped. */
export async function reapOrphans(
  workingDir: string,
  self: { runnerId: string; keepDirectories?: boolean },
  log: (m: string) => void,
): Promise<number> {
  const root = join(workingDir, "studio-runner");
  if (!existsSync(root)) return 0;
  let reaped = 0;
  for (const key of await readdir(root).catch(() => [] as string[])) {
    for (const attempt of await readdir(join(root, key)).catch(() => [] as string[])) {
      const dir = join(root, key, attempt);
      let owner: AttemptOwner;
      try {
        owner = JSON.parse(await readFile(join(dir, OWNER_FILE), "utf8"));
      } catch {
        continue;
      }
      if (owner.host !== hostname() || owner.runnerId === self.runnerId) continue;
      if (owner.runnerPid !== process.pid && isProcessAlive(owner.runnerPid)) continue;
      if (owner.jobPid && processGroupOf(owner.jobPid) === owner.jobPid) {
        const tree = descendants(owner.jobPid);
        for (const pid of [owner.jobPid, ...tree]) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
        try {
          process.kill(-owner.jobPid, "SIGKILL");
        } catch {
          // gone
        }
        log(`stopped orphaned experiment ${key} (pid ${owner.jobPid}) left by runner pid ${owner.runnerPid}`);
        reaped++;
      }
      if (!self.keepDirectories) await rm(dir, { recursive: true, force: true });
    }
  }
  return reaped;
}
