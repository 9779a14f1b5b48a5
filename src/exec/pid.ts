// Whether a process id is alive on this machine (EPERM means it exists but is not ours), and who a
// pid is: its start time (so a pid the kernel gave to another process is told apart) and group.

import { readFileSync } from "node:fs";

export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Alive and not a zombie (a killed process whose parent has not reaped it yet is not running). */
export function isProcessRunning(pid: number): boolean {
  if (!isProcessAlive(pid)) return false;
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== "Z";
}

/**
 * The fields of /proc/<pid>/stat after the command name ("(comm)" may hold spaces and parentheses,
 * so the text is cut at the last ")"): index 0 is field 3 (state), so field N is at index N - 3.
 */
function statFields(pid: number): string[] | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat
      .slice(stat.lastIndexOf(")") + 2)
      .trim()
      .split(" ");
  } catch {
    return undefined;
  }
}

/** When the process started, in clock ticks after boot (/proc/<pid>/stat field 22); undefined when it is gone. */
export function processStartTicks(pid: number): number | undefined {
  const v = statFields(pid)?.[22 - 3];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** The process group of a pid (/proc/<pid>/stat field 5); undefined when it is gone. */
export function processGroupOf(pid: number): number | undefined {
  const v = statFields(pid)?.[5 - 3];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** This boot's id: start times count from boot, so a record of another boot names no live process. */
export function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}

/** The pid is the process that was recorded: alive, same boot, same start time. */
export function isSameProcess(
  pid: number,
  startTicks: number | undefined,
  recordedBootId: string | undefined,
): boolean {
  if (startTicks === undefined || recordedBootId === undefined || recordedBootId !== bootId()) return false;
  return processStartTicks(pid) === startTicks;
}
