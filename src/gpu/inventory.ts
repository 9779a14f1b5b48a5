// The runner's own GPU inventory: what NVML sees, narrowed by CUDA_VISIBLE_DEVICES /
// NVIDIA_VISIBLE_DEVICES when the runner itself was started with one, each card marked healthy
// or not. Without NVML the inventory is empty and says why.

import { loadNvml, NvmlUnavailableError, type NvmlDeviceInfo, type NvmlReading } from "./nvml.ts";

export type GpuDevice = NvmlDeviceInfo & {
  /** false when the card has uncorrected ECC errors; such a card is never handed out. */
  healthy: boolean;
};

export type VisibleDevicesSource = "CUDA_VISIBLE_DEVICES" | "NVIDIA_VISIBLE_DEVICES";

/** The outcome of applying a visible-devices variable to what NVML sees. */
export type VisibleSelection<T> = {
  /** The variable that was applied; undefined when neither is set (every device is visible). */
  source: VisibleDevicesSource | undefined;
  value: string | undefined;
  devices: T[];
  /** Entries that matched no device, or came after one that did not (CUDA ignores those too). */
  unmatched: string[];
  /** NVIDIA_VISIBLE_DEVICES taken as already applied by the container runtime (see below). */
  appliedByRuntime: boolean;
};

export type Inventory = {
  devices: GpuDevice[];
  /** "ok", or why NVML could not be used (library missing, driver not loaded …). */
  nvml: "ok" | string;
  /** The library that was loaded; undefined when none could be. */
  libraryPath: string | undefined;
  /** false only when no NVML library could be loaded at all (a CPU machine, or no driver). */
  libraryFound: boolean;
  visible: VisibleSelection<GpuDevice>;
  /** Devices that could not be read, cards left out and why, unmatched visible-device entries. */
  problems: string[];
};

/** Reads NVML; injectable so the inventory logic can be tested without a GPU. */
export type DeviceSource = (env: Record<string, string | undefined>) => { libraryPath: string; reading: NvmlReading };

export const nvmlSource: DeviceSource = (env) => {
  const lib = loadNvml(env);
  return { libraryPath: lib.path, reading: lib.read() };
};

/** A card is healthy unless NVML reports uncorrected (volatile) ECC errors on it. */
export function isHealthy(d: NvmlDeviceInfo): boolean {
  return !(d.eccUncorrected !== undefined && d.eccUncorrected > 0);
}

/**
 * Whether the allocator may hand the card out: healthy and not in MIG mode (a MIG card is only
 * usable through its MIG instances, which this runner does not schedule).
 */
export function isSchedulable(d: GpuDevice): boolean {
  return d.healthy && d.migEnabled !== true;
}

export function readInventory(
  env: Record<string, string | undefined> = process.env,
  source: DeviceSource = nvmlSource,
): Inventory {
  let read: ReturnType<DeviceSource>;
  try {
    read = source(env);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    return {
      devices: [],
      nvml: reason,
      libraryPath: undefined,
      libraryFound: !(e instanceof NvmlUnavailableError),
      visible: { source: undefined, value: undefined, devices: [], unmatched: [], appliedByRuntime: false },
      problems: [],
    };
  }
  const all: GpuDevice[] = read.reading.devices.map((d) => ({ ...d, healthy: isHealthy(d) }));
  const visible = filterVisibleDevices(all, env);
  const problems = [...read.reading.problems];
  if (visible.appliedByRuntime)
    problems.push(
      `${visible.source}=${visible.value} names host indexes; the container runtime already applied it, ` +
        `all ${all.length} devices NVML sees are used`,
    );
  if (visible.unmatched.length)
    problems.push(`${visible.source}=${visible.value}: no device for ${visible.unmatched.join(", ")}`);
  for (const d of visible.devices) {
    if (!d.healthy)
      problems.push(`GPU ${d.index} ${d.uuid} has ${d.eccUncorrected} uncorrected ECC errors; out of service`);
    else if (d.migEnabled)
      problems.push(`GPU ${d.index} ${d.uuid} is in MIG mode; MIG instances are not scheduled, the card is left out`);
  }
  return { devices: visible.devices, nvml: "ok", libraryPath: read.libraryPath, libraryFound: true, visible, problems };
}

/**
 * Why the runner should refuse to start, or undefined. GPUs are "expected" when the NVML library
 * is installed (a driver is there) or a visible-devices variable names devices; then finding no
 * usable card is an error unless cpuOnly is set. No library and no variable means a CPU machine.
 */
export function gpuStartupProblem(
  inv: Inventory,
  cpuOnly: boolean,
  env: Record<string, string | undefined> = process.env,
): string | undefined {
  if (cpuOnly) return undefined;
  if (inv.devices.some(isSchedulable)) return undefined;
  const { source, value } = visibleDevicesVariable(env);
  const named = source !== undefined && parseVisibleList(value!) !== "none";
  if (!named && !inv.libraryFound) return undefined;
  const why =
    inv.nvml !== "ok"
      ? `NVML: ${inv.nvml}`
      : inv.devices.length
        ? "no healthy card outside MIG mode"
        : "NVML sees no GPU";
  const where = named ? ` (${source}=${value})` : "";
  return `GPUs were expected but none is usable${where}: ${why}; start with --cpu-only to run CPU work only`;
}

/** The variable that decides visibility: CUDA_VISIBLE_DEVICES wins over NVIDIA_VISIBLE_DEVICES. */
export function visibleDevicesVariable(env: Record<string, string | undefined>): {
  source: VisibleDevicesSource | undefined;
  value: string | undefined;
} {
  if (env.CUDA_VISIBLE_DEVICES !== undefined)
    return { source: "CUDA_VISIBLE_DEVICES", value: env.CUDA_VISIBLE_DEVICES };
  if (env.NVIDIA_VISIBLE_DEVICES !== undefined)
    return { source: "NVIDIA_VISIBLE_DEVICES", value: env.NVIDIA_VISIBLE_DEVICES };
  return { source: undefined, value: undefined };
}

/** "all", "none", or the entries of a comma list (trimmed, empty entries dropped). */
export function parseVisibleList(value: string): "all" | "none" | string[] {
  const v = value.trim().toLowerCase();
  if (v === "all") return "all";
  if (v === "" || v === "none" || v === "void" || v === "-1") return "none";
  return value
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
}

/**
 * The devices a visible-devices variable lets the runner use, in the variable's order. Entries are
 * NVML indexes (PCI bus order, the order CUDA_DEVICE_ORDER=PCI_BUS_ID gives) or UUIDs, with or
 * without the "GPU-" prefix, or any prefix of a UUID that names exactly one device. As CUDA does,
 * the list ends at the first entry that names no device (e.g. "-1", an unknown index, a MIG id);
 * the entries from there on are reported as unmatched. Repeated devices count once.
 *
 * NVIDIA_VISIBLE_DEVICES is the container runtime's variable: inside a container started with
 * `--gpus device=3` it says "3" while NVML sees that one card as index 0. So when its list does
 * not match but NVML sees exactly as many devices as it names, the runtime has already applied it
 * and every device NVML sees is used (appliedByRuntime). CUDA_VISIBLE_DEVICES is always matched
 * against what NVML sees, as CUDA inside the container does.
 */
export function filterVisibleDevices<T extends { index: number; uuid: string }>(
  devices: T[],
  env: Record<string, string | undefined>,
): VisibleSelection<T> {
  const { source, value } = visibleDevicesVariable(env);
  const result = (picked: T[], unmatched: string[] = [], appliedByRuntime = false): VisibleSelection<T> => ({
    source,
    value,
    devices: picked,
    unmatched,
    appliedByRuntime,
  });
  if (source === undefined) return result([...devices]);
  const list = parseVisibleList(value!);
  if (list === "all") return result([...devices]);
  if (list === "none") return result([]);
  const picked: T[] = [];
  for (let i = 0; i < list.length; i++) {
    const d = matchEntry(devices, list[i]!);
    if (!d) {
      if (source === "NVIDIA_VISIBLE_DEVICES" && new Set(list).size === devices.length)
        return result([...devices], [], true);
      return result(picked, list.slice(i));
    }
    if (!picked.includes(d)) picked.push(d);
  }
  return result(picked);
}

function matchEntry<T extends { index: number; uuid: string }>(devices: T[], entry: string): T | undefined {
  if (/^\d+$/.test(entry)) return devices.find((d) => d.index === Number(entry));
  const lower = entry.toLowerCase();
  if (lower.startsWith("mig-")) return undefined;
  const wanted = lower.startsWith("gpu-") ? lower : `gpu-${lower}`;
  const hits = devices.filter((d) => d.uuid.toLowerCase().startsWith(wanted));
  return hits.length === 1 ? hits[0] : undefined;
}

/** A one-line summary for the runner's log. */
export function describeInventory(inv: Inventory): string {
  if (inv.nvml !== "ok") return `no GPUs (NVML unavailable: ${inv.nvml}); running CPU-only`;
  const usable = inv.devices.filter(isSchedulable).length;
  const filter = inv.visible.source ? ` (${inv.visible.source}=${inv.visible.value})` : "";
  return (
    `${inv.devices.length} GPUs${filter}, ${usable} usable: ` +
    `${inv.devices.map((d) => `${d.index}:${d.name}:${d.uuid}`).join(", ") || "none"}`
  );
}
