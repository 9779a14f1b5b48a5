// What this machine has: CPUs, memory and free disk, bounded by the --max-* settings, and the
// GPU cards of the inventory that can be handed out.

import { statfsSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import type { Capacity } from "./pool.ts";
import { isSchedulable, type GpuDevice } from "../gpu/inventory.ts";

/** Free space for unprivileged use in the filesystem holding dir; 0 when it cannot be read. */
export function freeDiskBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return 0;
  }
}

/** gpus counts the inventory's schedulable cards (healthy, not in MIG mode); 0 without one. */
export function machineCapacity(
  limits: { maxCores: number; maxMemBytes: number; maxDiskBytes: number; workingDir: string },
  gpuInventory?: { devices: GpuDevice[] },
): Capacity {
  const cpus = availableParallelism();
  const ram = totalmem();
  const disk = freeDiskBytes(limits.workingDir);
  return {
    cpus: limits.maxCores > 0 ? limits.maxCores : cpus,
    ramBytes: limits.maxMemBytes > 0 ? limits.maxMemBytes : ram,
    hddBytes: limits.maxDiskBytes > 0 ? limits.maxDiskBytes : disk,
    gpus: gpuInventory ? gpuInventory.devices.filter(isSchedulable).length : 0,
  };
}
