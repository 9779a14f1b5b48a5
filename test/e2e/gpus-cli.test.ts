// `studio-runner gpus` from the compiled binary: on a CPU machine NVML is missing, so the
// inventory is empty with a clear reason and exit code 0; against the stand-in NVML (when a C
// compiler is there) the FFI layouts and CUDA_VISIBLE_DEVICES filtering work inside the binary.

import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { NVML_SEARCH_PATHS } from "../../src/gpu/nvml.ts";
import { buildFakeNvml } from "../helpers/fake-nvml/build.ts";
import { runBinary } from "../helpers/e2e.ts";

const hasRealNvml = NVML_SEARCH_PATHS.some((p) => p.startsWith("/") && existsSync(p));

describe("studio-runner gpus", () => {
  test.skipIf(hasRealNvml)("NVML missing: --json gives devices [] and the reason, exit 0", () => {
    const r = runBinary(["gpus", "--json"], { timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.devices).toEqual([]);
    expect(out.nvml).toContain("libnvidia-ml.so.1 not found");
  });

  test("an override path that does not exist is named in the reason; the table says CPU-only", () => {
    const env = { STUDIO_RUNNER_NVML_LIBRARY: "/nonexistent/libnvidia-ml.so.1" };
    const json = runBinary(["gpus", "--json"], { env, timeoutMs: 60_000 });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      devices: [],
      nvml: expect.stringContaining("/nonexistent/libnvidia-ml.so.1"),
    });
    const table = runBinary(["gpus"], { env, timeoutMs: 60_000 });
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("NVML unavailable");
    expect(table.stdout).toContain("CPU-only");
  });

  const fake = buildFakeNvml();
  // The stand-in checks the ABI only; the real check is `studio-runner gpus` on an H200.
  test.skipIf(!fake)("against the stand-in NVML: both devices, and CUDA_VISIBLE_DEVICES narrows them", () => {
    const all = runBinary(["gpus", "--json"], { env: { STUDIO_RUNNER_NVML_LIBRARY: fake! }, timeoutMs: 60_000 });
    expect(all.code).toBe(0);
    const out = JSON.parse(all.stdout);
    expect(out.nvml).toBe("ok");
    expect(out.devices.map((d: any) => [d.index, d.uuid, d.pciBusId, d.healthy])).toEqual([
      [0, "GPU-11111111-2222-3333-4444-555555555555", "00000000:19:00.0", true],
      [1, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "00000000:3B:00.0", false],
    ]);
    expect(out.devices[1]).toMatchObject({ eccUncorrected: 2, utilizationGpuPct: null, migEnabled: null });

    const one = runBinary(["gpus", "--json"], {
      env: { STUDIO_RUNNER_NVML_LIBRARY: fake!, CUDA_VISIBLE_DEVICES: "GPU-1111" },
      timeoutMs: 60_000,
    });
    expect(JSON.parse(one.stdout).devices.map((d: any) => d.index)).toEqual([0]);
    const none = runBinary(["gpus", "--json"], {
      env: { STUDIO_RUNNER_NVML_LIBRARY: fake!, CUDA_VISIBLE_DEVICES: "-1", NVIDIA_VISIBLE_DEVICES: "all" },
      timeoutMs: 60_000,
    });
    expect(JSON.parse(none.stdout).devices).toEqual([]);

    const table = runBinary(["gpus"], { env: { STUDIO_RUNNER_NVML_LIBRARY: fake! }, timeoutMs: 60_000 });
    expect(table.stdout).toContain("Fake NVIDIA H200");
    expect(table.stdout).toContain("out of service (ECC)");
  });
});
