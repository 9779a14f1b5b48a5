// Covers src/gpu/inventory.ts (visible-devices filtering, health, the NVML-missing path, the
// start-up decision) and src/gpu/nvml.ts's FFI layouts against a stand-in NVML built with cc.
import { describe, expect, test } from "bun:test";
import {
  filterVisibleDevices,
  gpuStartupProblem,
  parseVisibleList,
  readInventory,
  type DeviceSource,
  type GpuDevice,
} from "../../src/gpu/inventory.ts";
import {
  loadNvml,
  NVML_LIBRARY_ENV,
  NvmlError,
  NvmlUnavailableError,
  type NvmlDeviceInfo,
} from "../../src/gpu/nvml.ts";
import { buildFakeNvml, fakeNvmlControls } from "../helpers/fake-nvml/build.ts";

const GiB = 2 ** 30;
const UUIDS = [
  "GPU-3f2a1b4c-0000-1111-2222-333333333333",
  "GPU-3f9e8d7c-4444-5555-6666-777777777777",
  "GPU-a1b2c3d4-8888-9999-aaaa-bbbbbbbbbbbb",
  "GPU-ffeeddcc-cccc-dddd-eeee-ffffffffffff",
];

function info(index: number, extra: Partial<NvmlDeviceInfo> = {}): NvmlDeviceInfo {
  return {
    index,
    uuid: UUIDS[index]!,
    name: "NVIDIA H200",
    pciBusId: `00000000:${(0x19 + index).toString(16).toUpperCase()}:00.0`,
    memTotalBytes: 141 * GiB,
    memFreeBytes: 140 * GiB,
    utilizationGpuPct: 0,
    eccUncorrected: 0,
    migEnabled: false,
    ...extra,
  };
}

const four = () => [0, 1, 2, 3].map((i) => ({ ...info(i), healthy: true }) as GpuDevice);
const visible = (env: Record<string, string | undefined>) => filterVisibleDevices(four(), env);
const indexes = (env: Record<string, string | undefined>) => visible(env).devices.map((d) => d.index);

describe("filterVisibleDevices", () => {
  test("unset: every device", () => {
    expect(indexes({})).toEqual([0, 1, 2, 3]);
    expect(visible({}).source).toBeUndefined();
  });

  test("indexes, in the variable's order, repeated ones once", () => {
    expect(indexes({ CUDA_VISIBLE_DEVICES: "2,0" })).toEqual([2, 0]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: " 1 , 3 " })).toEqual([1, 3]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "1,1,2" })).toEqual([1, 2]);
  });

  test("full UUIDs, without the GPU- prefix, any case, and unique prefixes", () => {
    expect(indexes({ CUDA_VISIBLE_DEVICES: UUIDS[2]! })).toEqual([2]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: UUIDS[3]!.slice(4).toUpperCase() })).toEqual([3]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "GPU-a1b2" })).toEqual([2]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "ffee,GPU-3f2" })).toEqual([3, 0]);
  });

  test("an ambiguous or unknown entry ends the list, as in CUDA", () => {
    const amb = visible({ CUDA_VISIBLE_DEVICES: "2,GPU-3f,0" });
    expect(amb.devices.map((d) => d.index)).toEqual([2]);
    expect(amb.unmatched).toEqual(["GPU-3f", "0"]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "1,7,2" })).toEqual([1]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "0,-1,1" })).toEqual([0]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "MIG-1234,0" })).toEqual([]);
  });

  test("all, none, void, empty and -1", () => {
    expect(indexes({ CUDA_VISIBLE_DEVICES: "all" })).toEqual([0, 1, 2, 3]);
    expect(indexes({ NVIDIA_VISIBLE_DEVICES: "ALL" })).toEqual([0, 1, 2, 3]);
    for (const v of ["none", "void", "", " ", "-1"]) {
      expect(indexes({ CUDA_VISIBLE_DEVICES: v })).toEqual([]);
      expect(indexes({ NVIDIA_VISIBLE_DEVICES: v })).toEqual([]);
    }
    expect(parseVisibleList("0,,1")).toEqual(["0", "1"]);
  });

  test("CUDA_VISIBLE_DEVICES wins over NVIDIA_VISIBLE_DEVICES", () => {
    const both = visible({ CUDA_VISIBLE_DEVICES: "1", NVIDIA_VISIBLE_DEVICES: "all" });
    expect(both.source).toBe("CUDA_VISIBLE_DEVICES");
    expect(both.devices.map((d) => d.index)).toEqual([1]);
    expect(indexes({ CUDA_VISIBLE_DEVICES: "", NVIDIA_VISIBLE_DEVICES: "all" })).toEqual([]);
    const nvidia = visible({ NVIDIA_VISIBLE_DEVICES: `${UUIDS[3]},0` });
    expect(nvidia.source).toBe("NVIDIA_VISIBLE_DEVICES");
    expect(nvidia.devices.map((d) => d.index)).toEqual([3, 0]);
  });

  test("NVIDIA_VISIBLE_DEVICES with host indexes inside a container: already applied by the runtime", () => {
    // `docker run --gpus device=3`: the variable says 3, NVML in the container sees one card, index 0.
    const inContainer = [{ ...info(0, { uuid: UUIDS[3]! }), healthy: true } as GpuDevice];
    const sel = filterVisibleDevices(inContainer, { NVIDIA_VISIBLE_DEVICES: "3" });
    expect(sel.devices.map((d) => d.uuid)).toEqual([UUIDS[3]]);
    expect(sel.appliedByRuntime).toBe(true);
    // Not for CUDA_VISIBLE_DEVICES, and not when the counts differ.
    expect(filterVisibleDevices(inContainer, { CUDA_VISIBLE_DEVICES: "3" }).devices).toEqual([]);
    expect(indexes({ NVIDIA_VISIBLE_DEVICES: "1,7" })).toEqual([1]);
    expect(visible({ NVIDIA_VISIBLE_DEVICES: "1,7" }).appliedByRuntime).toBe(false);
  });
});

describe("readInventory with an injected device source", () => {
  const source =
    (devices: NvmlDeviceInfo[], problems: string[] = []): DeviceSource =>
    () => ({ libraryPath: "/fake/libnvidia-ml.so.1", reading: { devices, problems } });

  test("marks ECC cards unhealthy, notes MIG cards, applies the filter", () => {
    const inv = readInventory(
      { CUDA_VISIBLE_DEVICES: "0,1,2" },
      source([info(0), info(1, { eccUncorrected: 4 }), info(2, { migEnabled: true }), info(3)]),
    );
    expect(inv.nvml).toBe("ok");
    expect(inv.devices.map((d) => [d.index, d.healthy])).toEqual([
      [0, true],
      [1, false],
      [2, true],
    ]);
    expect(inv.problems.join("\n")).toContain("4 uncorrected ECC errors");
    expect(inv.problems.join("\n")).toContain("MIG mode");
    expect(gpuStartupProblem(inv, false, {})).toBeUndefined();
  });

  test("unknown ECC (NOT_SUPPORTED) is healthy", () => {
    const inv = readInventory(
      {},
      source([info(0, { eccUncorrected: undefined, migEnabled: undefined, utilizationGpuPct: undefined })]),
    );
    expect(inv.devices[0]!.healthy).toBe(true);
  });

  test("unmatched visible-device entries are reported", () => {
    const inv = readInventory({ NVIDIA_VISIBLE_DEVICES: "0,9" }, source([info(0)]));
    expect(inv.devices).toHaveLength(1);
    expect(inv.problems).toEqual(["NVIDIA_VISIBLE_DEVICES=0,9: no device for 9"]);
  });

  test("a failing source gives no devices and the reason", () => {
    const inv = readInventory({}, () => {
      throw new NvmlError("nvmlInit_v2", 9, "Driver Not Loaded");
    });
    expect(inv.devices).toEqual([]);
    expect(inv.nvml).toContain("nvmlInit_v2");
    expect(inv.nvml).toContain("Driver Not Loaded");
    expect(inv.libraryFound).toBe(true);
  });
});

describe("NVML missing (CPU machine)", () => {
  test("an absent library: empty inventory, a clear reason, CPU-only allowed", () => {
    const inv = readInventory({ [NVML_LIBRARY_ENV]: "/nonexistent/libnvidia-ml.so.1" });
    expect(inv.devices).toEqual([]);
    expect(inv.nvml).toContain("NVML library not found");
    expect(inv.nvml).toContain("/nonexistent/libnvidia-ml.so.1");
    expect(inv.libraryFound).toBe(false);
    expect(() => loadNvml({ [NVML_LIBRARY_ENV]: "/nonexistent/libnvidia-ml.so.1" })).toThrow(NvmlUnavailableError);
    expect(gpuStartupProblem(inv, false, {})).toBeUndefined();
  });

  test("GPUs named by CUDA_VISIBLE_DEVICES but no NVML: refuse unless --cpu-only", () => {
    const env = { [NVML_LIBRARY_ENV]: "/nonexistent/libnvidia-ml.so.1", CUDA_VISIBLE_DEVICES: "0" };
    const inv = readInventory(env);
    const problem = gpuStartupProblem(inv, false, env);
    expect(problem).toContain("CUDA_VISIBLE_DEVICES=0");
    expect(problem).toContain("--cpu-only");
    expect(gpuStartupProblem(inv, true, env)).toBeUndefined();
    expect(gpuStartupProblem(inv, false, { CUDA_VISIBLE_DEVICES: "none" })).toBeUndefined();
  });

  test("a library that loads but fails: GPUs were expected", () => {
    const inv = readInventory({}, () => {
      throw new NvmlError("nvmlInit_v2", 9, "Driver Not Loaded");
    });
    expect(gpuStartupProblem(inv, false, {})).toContain("Driver Not Loaded");
    expect(gpuStartupProblem(inv, true, {})).toBeUndefined();
  });

  test("the default search on this machine", () => {
    const inv = readInventory({});
    // On a GPU machine this is "ok"; on CPU CI it must be the clear not-found reason.
    if (inv.nvml !== "ok") expect(inv.nvml).toMatch(/NVML library/);
  });
});

// The stand-in library (test/helpers/fake-nvml) checks the ABI only: argument types, buffer
// sizes and struct offsets. It says nothing about real GPUs; that check runs on an H200.
const fake = buildFakeNvml();
describe.skipIf(!fake)("NVML through bun:ffi against the stand-in libnvidia-ml.so.1", () => {
  test("reads both synthetic devices with the right layouts", () => {
    const inv = readInventory({ [NVML_LIBRARY_ENV]: fake! });
    expect(inv.nvml).toBe("ok");
    expect(inv.libraryPath).toBe(fake!);
    expect(inv.devices).toEqual([
      {
        index: 0,
        uuid: "GPU-11111111-2222-3333-4444-555555555555",
        name: "Fake NVIDIA H200",
        pciBusId: "00000000:19:00.0",
        memTotalBytes: 150754820096,
        memFreeBytes: 150000000000,
        utilizationGpuPct: 7,
        eccUncorrected: 0,
        migEnabled: false,
        healthy: true,
      },
      {
        index: 1,
        uuid: "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        name: "Fake NVIDIA H200 (ECC)",
        pciBusId: "00000000:3B:00.0",
        memTotalBytes: 150754820096,
        memFreeBytes: 100000000000,
        utilizationGpuPct: undefined,
        eccUncorrected: 2,
        migEnabled: undefined,
        healthy: false,
      },
    ]);
  });

  test("sessions shut down: repeated reads keep working; the filter applies", () => {
    for (let i = 0; i < 3; i++) expect(readInventory({ [NVML_LIBRARY_ENV]: fake! }).devices).toHaveLength(2);
    expect(fakeNvmlControls(fake!).openSessions()).toBe(0);
    const one = readInventory({ [NVML_LIBRARY_ENV]: fake!, CUDA_VISIBLE_DEVICES: "GPU-aaaa" });
    expect(one.devices.map((d) => d.index)).toEqual([1]);
  });

  test("a failing nvmlInit_v2 becomes a typed error with NVML's string", () => {
    const lib = loadNvml({ [NVML_LIBRARY_ENV]: fake! });
    const controls = fakeNvmlControls(fake!);
    controls.setInitFail(true);
    try {
      let err: unknown;
      try {
        lib.read();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NvmlError);
      expect((err as NvmlError).fn).toBe("nvmlInit_v2");
      expect((err as NvmlError).code).toBe(9);
      expect((err as NvmlError).message).toContain("Driver Not Loaded");
    } finally {
      controls.setInitFail(false);
    }
    expect(lib.read().devices).toHaveLength(2);
    expect(controls.openSessions()).toBe(0);
  });
});
