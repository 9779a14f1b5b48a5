// Periodic GPU refresh: re-reads the inventory every refreshIntervalMs and hands it to the
// allocator, so that a card that starts reporting uncorrected ECC errors is taken out of service.

import type { GpuAllocator } from "./allocator.ts";
import { readInventory, type Inventory } from "./inventory.ts";

export type GpuWatchOptions = {
  allocator: GpuAllocator;
  refreshIntervalMs: number;
  log: {
    info(message: string, fields?: Record<string, unknown>): void;
    warn(message: string, fields?: Record<string, unknown>): void;
  };
  /** Injectable for tests; defaults to readInventory(process.env). */
  read?: () => Inventory;
};

export type GpuWatch = { refreshNow(): void; stop(): void };

export function startGpuWatch(options: GpuWatchOptions): GpuWatch {
  const read = options.read ?? (() => readInventory(process.env));
  let failing = false;
  const refreshNow = () => {
    let inv: Inventory;
    try {
      inv = read();
    } catch (e) {
      inv = { nvml: e instanceof Error ? e.message : String(e) } as Inventory;
    }
    if (inv.nvml !== "ok") {
      // A failed read keeps the last known cards: one bad poll should not empty the machine.
      if (!failing) options.log.warn("GPU refresh failed; keeping the last inventory", { reason: inv.nvml });
      failing = true;
      return;
    }
    if (failing) options.log.info("GPU refresh works again");
    failing = false;
    const { newlyOutOfService, vanished } = options.allocator.refresh(inv.devices);
    for (const d of newlyOutOfService) {
      options.log.warn("GPU taken out of service: uncorrected ECC errors", {
        index: d.index,
        uuid: d.uuid,
        eccUncorrected: d.eccUncorrected,
      });
    }
    for (const uuid of vanished) options.log.warn("GPU no longer reported by NVML; out of service", { uuid });
  };
  const timer = setInterval(refreshNow, options.refreshIntervalMs);
  timer.unref();
  return { refreshNow, stop: () => clearInterval(timer) };
}
