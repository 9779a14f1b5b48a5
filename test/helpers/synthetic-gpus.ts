// Synthetic GPU cards for allocator and pool tests: healthy, empty, with distinct UUIDs and bus ids.

import type { GpuDevice } from "../../src/gpu/inventory.ts";

const GiB = 1024 ** 3;

export function syntheticCard(index: number, memGiB: number, extra: Partial<GpuDevice> = {}): GpuDevice {
  const hex = index.toString(16).padStart(8, "0");
  return {
    index,
    uuid: `GPU-${hex}-0000-0000-0000-000000000000`,
    name: `Synthetic ${memGiB}GiB`,
    pciBusId: `00000000:${(index + 16).toString(16).toUpperCase()}:00.0`,
    memTotalBytes: memGiB * GiB,
    memFreeBytes: memGiB * GiB,
    utilizationGpuPct: 0,
    eccUncorrected: 0,
    migEnabled: false,
    healthy: true,
    ...extra,
  };
}
