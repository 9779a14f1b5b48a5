// Which /dev/nvidiaN belongs to which card: the sandbox binds only the allocated cards' device
// nodes. N is the card's "Device Minor" from /proc/driver/nvidia/gpus/<PCI bus id>/information;
// where the driver does not say (no such file), NVML's index is used, which is the minor number on
// every ordinary single-driver machine (and said so in the start-up log).

import { readFileSync } from "node:fs";
import { join } from "node:path";

export type GpuCard = { uuid: string; index: number; pciBusId: string };

/** NVML's bus id ("00000000:3B:00.0") as the driver's /proc names it ("0000:3b:00.0"). */
export function procBusId(pciBusId: string): string {
  const m = /^(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])$/.exec(pciBusId.trim());
  if (!m) return pciBusId.toLowerCase();
  const domain = (m[1] ?? "0").slice(-4).padStart(4, "0");
  return `${domain}:${m[2]!.padStart(2, "0")}:${m[3]!.padStart(2, "0")}.${m[4]}`.toLowerCase();
}

/** The "Device Minor" of the card at `pciBusId`, or undefined when the driver's file does not say. */
export function deviceMinor(pciBusId: string, procRoot = "/proc/driver/nvidia/gpus"): number | undefined {
  try {
    const text = readFileSync(join(procRoot, procBusId(pciBusId), "information"), "utf8");
    const m = /^Device Minor:\s*(\d+)\s*$/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Card uuid → minor number for every card, and the cards whose minor is NVML's index (unconfirmed). */
export function gpuMinors(cards: GpuCard[], procRoot?: string): { minors: Record<string, number>; guessed: string[] } {
  const minors: Record<string, number> = {};
  const guessed: string[] = [];
  for (const c of cards) {
    const minor = deviceMinor(c.pciBusId, procRoot);
    if (minor !== undefined) minors[c.uuid] = minor;
    else {
      minors[c.uuid] = c.index;
      guessed.push(c.uuid);
    }
  }
  return { minors, guessed };
}
