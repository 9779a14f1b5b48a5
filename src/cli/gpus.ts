// `studio-runner gpus [--json]`: the GPU inventory this runner would use, after
// CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES. Exits 0 even without NVML (then it says why).

import { defineCommand } from "citty";
import { formatBytes } from "../config/units.ts";
import { isSchedulable, readInventory, type GpuDevice, type Inventory } from "../gpu/inventory.ts";

export const gpusCommand = defineCommand({
  meta: {
    name: "gpus",
    description: "List the GPUs this runner can use (NVML), after CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES",
  },
  args: { json: { type: "boolean", description: "Print the inventory as JSON: {nvml, devices: [...]}" } },
  run({ args }) {
    const inv = readInventory(process.env);
    process.stdout.write(args.json ? `${JSON.stringify(inventoryJson(inv), null, 2)}\n` : inventoryTable(inv));
  },
});

export function inventoryJson(inv: Inventory) {
  return {
    nvml: inv.nvml,
    library: inv.libraryPath ?? null,
    visibleDevices: inv.visible.source
      ? { variable: inv.visible.source, value: inv.visible.value, unmatched: inv.visible.unmatched }
      : null,
    problems: inv.problems,
    devices: inv.devices.map((d) => ({
      index: d.index,
      uuid: d.uuid,
      name: d.name,
      pciBusId: d.pciBusId,
      memTotalBytes: d.memTotalBytes,
      memFreeBytes: d.memFreeBytes,
      utilizationGpuPct: d.utilizationGpuPct ?? null,
      eccUncorrected: d.eccUncorrected ?? null,
      migEnabled: d.migEnabled ?? null,
      healthy: d.healthy,
      schedulable: isSchedulable(d),
    })),
  };
}

export function inventoryTable(inv: Inventory): string {
  if (inv.nvml !== "ok") return `NVML unavailable: ${inv.nvml}\nNo GPUs: this runner would work CPU-only.\n`;
  const lines = [`NVML: ok (${inv.libraryPath})`];
  if (inv.visible.source) lines.push(`${inv.visible.source}=${inv.visible.value}`);
  const header = ["IDX", "UUID", "NAME", "PCI BUS ID", "MEM TOTAL", "MEM FREE", "UTIL", "ECC UNCORR", "MIG", "STATE"];
  const rows = inv.devices.map((d) => [
    String(d.index),
    d.uuid,
    d.name,
    d.pciBusId,
    formatBytes(d.memTotalBytes),
    formatBytes(d.memFreeBytes),
    d.utilizationGpuPct === undefined ? "n/a" : `${d.utilizationGpuPct}%`,
    d.eccUncorrected === undefined ? "n/a" : String(d.eccUncorrected),
    d.migEnabled === undefined ? "n/a" : d.migEnabled ? "on" : "off",
    state(d),
  ]);
  if (rows.length === 0) lines.push("No GPUs visible.");
  else {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [header, ...rows])
      lines.push(
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      );
  }
  for (const p of inv.problems) lines.push(`note: ${p}`);
  return `${lines.join("\n")}\n`;
}

function state(d: GpuDevice): string {
  if (!d.healthy) return "out of service (ECC)";
  if (d.migEnabled) return "left out (MIG)";
  return "usable";
}
