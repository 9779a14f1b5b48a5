// NVML (libnvidia-ml.so.1) through bun:ffi: finds and loads the library once, then reads every
// device's identity, memory, utilization, ECC and MIG state inside an init/shutdown session.
// Every failing call becomes an NvmlError naming the function and NVML's own error string.

import { dlopen, FFIType, type Pointer } from "bun:ffi";

/** Environment variable naming the NVML library to load instead of searching the usual places. */
export const NVML_LIBRARY_ENV = "STUDIO_RUNNER_NVML_LIBRARY";

export const NVML_SUCCESS = 0;
export const NVML_ERROR_NOT_SUPPORTED = 3;
const NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1;
const NVML_VOLATILE_ECC = 0;
const NVML_DEVICE_MIG_ENABLE = 1;
const UUID_BUFFER_BYTES = 96; // NVML_DEVICE_UUID_V2_BUFFER_SIZE
const NAME_BUFFER_BYTES = 96; // NVML_DEVICE_NAME_V2_BUFFER_SIZE

// nvmlPciInfo_t (v3): char busIdLegacy[16]; u32 domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]
const PCI_INFO_BYTES = 68;
const PCI_BUS_ID_OFFSET = 36;
const PCI_BUS_ID_BYTES = 32;
// nvmlMemory_t: u64 total, free, used
const MEMORY_INFO_BYTES = 24;
// nvmlUtilization_t: u32 gpu, memory
const UTILIZATION_BYTES = 8;

/** The places tried, in order, when no override is given; the bare name lets the loader search first. */
export const NVML_SEARCH_PATHS = [
  "libnvidia-ml.so.1",
  "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
  "/usr/lib64/libnvidia-ml.so.1",
  "/usr/lib/libnvidia-ml.so.1",
  "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
  "/usr/local/nvidia/lib/libnvidia-ml.so.1",
  "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
  "/usr/lib/wsl/lib/libnvidia-ml.so.1",
];

/** A call into NVML returned something other than NVML_SUCCESS. */
export class NvmlError extends Error {
  constructor(
    readonly fn: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${fn} failed: ${detail} (NVML error ${code})`);
    this.name = "NvmlError";
  }
}

/** The NVML library could not be loaded from any of the places tried. */
export class NvmlUnavailableError extends Error {
  constructor(
    message: string,
    readonly tried: string[],
  ) {
    super(message);
    this.name = "NvmlUnavailableError";
  }
}

/** One device as NVML reports it; undefined where NVML says the field is not supported. */
export type NvmlDeviceInfo = {
  index: number;
  uuid: string;
  name: string;
  pciBusId: string;
  memTotalBytes: number;
  memFreeBytes: number;
  utilizationGpuPct: number | undefined;
  eccUncorrected: number | undefined;
  migEnabled: boolean | undefined;
};

/** What one session saw: the devices read, and why any index could not be read. */
export type NvmlReading = { devices: NvmlDeviceInfo[]; problems: string[] };

const symbols = {
  nvmlInit_v2: { args: [], returns: FFIType.i32 },
  nvmlShutdown: { args: [], returns: FFIType.i32 },
  nvmlErrorString: { args: [FFIType.i32], returns: FFIType.cstring },
  nvmlDeviceGetCount_v2: { args: [FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetHandleByIndex_v2: { args: [FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetUUID: { args: [FFIType.ptr, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  nvmlDeviceGetName: { args: [FFIType.ptr, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  nvmlDeviceGetPciInfo_v3: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetMemoryInfo: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetUtilizationRates: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetTotalEccErrors: { args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  nvmlDeviceGetMigMode: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
} as const;

type NvmlSymbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** A loaded NVML library. Each read() is its own init → read → shutdown session. */
export class NvmlLibrary {
  constructor(
    readonly path: string,
    private readonly fns: NvmlSymbols,
  ) {}

  /** NVML's text for a return code. */
  errorString(code: number): string {
    try {
      const s = this.fns.nvmlErrorString(code);
      return s ? String(s) : `unknown error`;
    } catch {
      return "unknown error";
    }
  }

  private check(fn: string, code: number): void {
    if (code !== NVML_SUCCESS) throw new NvmlError(fn, code, this.errorString(code));
  }

  /** undefined for NOT_SUPPORTED, a thrown NvmlError for any other failure. */
  private optional(fn: string, code: number): boolean {
    if (code === NVML_ERROR_NOT_SUPPORTED) return false;
    this.check(fn, code);
    return true;
  }

  /** Every device NVML knows. Throws NvmlError when the session itself cannot start. */
  read(): NvmlReading {
    this.check("nvmlInit_v2", this.fns.nvmlInit_v2());
    try {
      const countBuf = new Uint32Array(1);
      this.check("nvmlDeviceGetCount_v2", this.fns.nvmlDeviceGetCount_v2(countBuf));
      const devices: NvmlDeviceInfo[] = [];
      const problems: string[] = [];
      for (let index = 0; index < countBuf[0]!; index++) {
        try {
          devices.push(this.readDevice(index));
        } catch (e) {
          problems.push(`GPU ${index}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      return { devices, problems };
    } finally {
      this.fns.nvmlShutdown();
    }
  }

  private readDevice(index: number): NvmlDeviceInfo {
    const f = this.fns;
    const handleBuf = new BigUint64Array(1);
    this.check("nvmlDeviceGetHandleByIndex_v2", f.nvmlDeviceGetHandleByIndex_v2(index, handleBuf));
    const handle = Number(handleBuf[0]) as Pointer;

    const uuidBuf = new Uint8Array(UUID_BUFFER_BYTES);
    this.check("nvmlDeviceGetUUID", f.nvmlDeviceGetUUID(handle, uuidBuf, UUID_BUFFER_BYTES));
    const nameBuf = new Uint8Array(NAME_BUFFER_BYTES);
    this.check("nvmlDeviceGetName", f.nvmlDeviceGetName(handle, nameBuf, NAME_BUFFER_BYTES));

    const pciBuf = new Uint8Array(PCI_INFO_BYTES);
    this.check("nvmlDeviceGetPciInfo_v3", f.nvmlDeviceGetPciInfo_v3(handle, pciBuf));
    const pciBusId = cString(pciBuf.subarray(PCI_BUS_ID_OFFSET, PCI_BUS_ID_OFFSET + PCI_BUS_ID_BYTES));

    const memBuf = new BigUint64Array(MEMORY_INFO_BYTES / 8);
    this.check("nvmlDeviceGetMemoryInfo", f.nvmlDeviceGetMemoryInfo(handle, memBuf));

    const utilBuf = new Uint32Array(UTILIZATION_BYTES / 4);
    const hasUtil = this.optional("nvmlDeviceGetUtilizationRates", f.nvmlDeviceGetUtilizationRates(handle, utilBuf));

    const eccBuf = new BigUint64Array(1);
    const hasEcc = this.optional(
      "nvmlDeviceGetTotalEccErrors",
      f.nvmlDeviceGetTotalEccErrors(handle, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, eccBuf),
    );

    const migCurrent = new Uint32Array(1);
    const migPending = new Uint32Array(1);
    const hasMig = this.optional("nvmlDeviceGetMigMode", f.nvmlDeviceGetMigMode(handle, migCurrent, migPending));

    return {
      index,
      uuid: cString(uuidBuf),
      name: cString(nameBuf),
      pciBusId,
      memTotalBytes: Number(memBuf[0]),
      memFreeBytes: Number(memBuf[1]),
      utilizationGpuPct: hasUtil ? utilBuf[0] : undefined,
      eccUncorrected: hasEcc ? Number(eccBuf[0]) : undefined,
      migEnabled: hasMig ? migCurrent[0] === NVML_DEVICE_MIG_ENABLE : undefined,
    };
  }
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)).trim();
}

let loaded: { key: string; library: NvmlLibrary } | undefined;

/**
 * Load NVML: the override path alone when the environment names one, otherwise the first of
 * NVML_SEARCH_PATHS that loads. The library stays loaded for the life of the process.
 */
export function loadNvml(env: Record<string, string | undefined> = process.env): NvmlLibrary {
  const override = env[NVML_LIBRARY_ENV]?.trim();
  const candidates = override ? [override] : NVML_SEARCH_PATHS;
  const key = candidates.join("\n");
  if (loaded?.key === key) return loaded.library;
  if (process.platform !== "linux")
    throw new NvmlUnavailableError(`NVML is only looked for on Linux (this is ${process.platform})`, []);
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      const lib = dlopen(path, symbols);
      const library = new NvmlLibrary(path, lib.symbols);
      loaded = { key, library };
      return library;
    } catch (e) {
      failures.push(`${path}: ${firstLine(e)}`);
    }
  }
  // "No such file" everywhere means no driver; any other failure (wrong architecture, a symbol
  // missing from an old driver) is the one worth reporting.
  const real = failures.find((f) => !/No such file|cannot open shared object/i.test(f));
  const message = real
    ? `NVML library could not be loaded: ${real}`
    : override
      ? `NVML library not found at ${NVML_LIBRARY_ENV}=${override}`
      : `NVML library libnvidia-ml.so.1 not found (no NVIDIA driver?); tried ${candidates.join(", ")}`;
  throw new NvmlUnavailableError(message, candidates);
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
}
