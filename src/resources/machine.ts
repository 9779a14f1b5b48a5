// What this machine has: CPUs, memory and free disk, bounded by the --max-* settings.

import { statfsSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import type { Capacity } from "./pool.ts";

export function machineCapacity(limits: { maxCores: number; maxMemBytes: number; maxDiskBytes: number; workingDir: string }): Capacity {
  const cpus = availableParallelism();
  const ram = totalmem();
  let disk = 0;
  try {
    const s = statfsSync(limits.workingDir);
    disk = Number(s.bavail) * Number(s.bsize);
  } catch {
    disk = 0;
  }
  return {
    cpus: limits.maxCores > 0 ? limits.maxCores : cpus,
    ramBytes: limits.maxMemBytes > 0 ? limits.maxMemBytes : ram,
    hddBytes: limits.maxDiskBytes > 0 ? limits.maxDiskBytes : disk,
    gpus: 0,
  };
}
