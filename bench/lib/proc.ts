// Readings of a process from /proc: resident memory now and at its peak, and CPU time used.

import { readFileSync } from "node:fs";

const CLOCK_TICKS_PER_S = 100;

export type MemoryReading = { rssKiB: number; hwmKiB: number };

export function memoryOf(pid: number): MemoryReading | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return {
      rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0),
      hwmKiB: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0),
    };
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds the process used so far (its own threads, not its children). */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

export const kibToMB = (kib: number) => (kib * 1024) / 1e6;

/** Samples a process's RSS every intervalMs; peak() also takes the kernel's high-water mark. */
export class RssSampler {
  private peakKiB = 0;
  private hwmKiB = 0;
  /** [ms since start, RSS KiB] every sample, kept only when asked (BENCH_TRACE). */
  readonly timeline: Array<[number, number]> = [];
  readonly startedAt = Date.now();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly pid: number,
    intervalMs = 100,
    private readonly keepTimeline = false,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const m = memoryOf(this.pid);
    if (!m) return;
    this.peakKiB = Math.max(this.peakKiB, m.rssKiB);
    if (this.keepTimeline) this.timeline.push([Date.now() - this.startedAt, m.rssKiB]);
    this.hwmKiB = Math.max(this.hwmKiB, m.hwmKiB);
  }

  /** Peak resident memory in MB (10^6 bytes), the larger of sampled RSS and VmHWM. */
  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return kibToMB(Math.max(this.peakKiB, this.hwmKiB));
  }
}

/** The 1-minute load average, to note how busy the machine was. */
export function loadAverage(): number {
  try {
    return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  } catch {
    return NaN;
  }
}
