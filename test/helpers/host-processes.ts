// What tests read about host processes from outside any sandbox: which pids carry a marker in
// their command line (a job's own report of its pid is never trusted).

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Pids of host processes whose command line holds `marker`. */
export function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(marker)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/** An unrelated host process (`sleep 600`), leader of its own process group. */
export function detachedSleep(): number {
  const child = spawn("sleep", ["600"], { detached: true, stdio: "ignore" });
  child.unref();
  return child.pid!;
}

/** The pid of a process that has already exited. */
export async function deadPid(): Promise<number> {
  const child = spawn("true", [], { stdio: "ignore" });
  await new Promise((r) => child.on("exit", r));
  return child.pid!;
}
