// Covers src/resources/pool.ts ResourcePool: fit checks, reservation accounting, never-fits reasons,
// GPU cards through a GpuAllocator; and machineCapacity's GPU count.
import { describe, expect, test } from "bun:test";
import type { Resources } from "../../src/request/model.ts";
import { ResourcePool } from "../../src/resources/pool.ts";
import { machineCapacity } from "../../src/resources/machine.ts";
import { GpuAllocator } from "../../src/gpu/allocator.ts";
import { syntheticCard } from "../helpers/synthetic-gpus.ts";

const GiB = 2 ** 30;

const needs = (r: Partial<Resources> = {}): Resources => ({
  cpus: 1,
  ramBytes: 0,
  hddBytes: 0,
  gpus: 0,
  gpuMemBytes: 0,
  ...r,
});

const machine = () => new ResourcePool({ cpus: 4, ramBytes: 8 * GiB, hddBytes: 100 * GiB, gpus: 2 });

describe("ResourcePool.needsOf", () => {
  test("zero cpus counts as one; fractions round up", () => {
    expect(ResourcePool.needsOf(needs({ cpus: 0 })).cpus).toBe(1);
    expect(ResourcePool.needsOf(needs({ cpus: 1.2 })).cpus).toBe(2);
    expect(ResourcePool.needsOf(needs({ gpus: 0.5 })).gpus).toBe(1);
    expect(ResourcePool.needsOf(needs({ cpus: 3, ramBytes: 5, hddBytes: 7, gpus: 1 }))).toEqual({
      cpus: 3,
      ramBytes: 5,
      hddBytes: 7,
      gpus: 1,
    });
  });
});

describe("ResourcePool accounting", () => {
  test("a fresh pool is idle and entirely free", () => {
    const p = machine();
    expect(p.busy).toBe(false);
    expect(p.free).toEqual({ cpus: 4, ramBytes: 8 * GiB, hddBytes: 100 * GiB, gpus: 2 });
  });

  test("reserve takes resources, release gives them back", () => {
    const p = machine();
    const r = p.reserve(needs({ cpus: 2, ramBytes: 3 * GiB, hddBytes: 10 * GiB, gpus: 1 }));
    expect(r).toBeDefined();
    expect(r!.needs).toEqual({ cpus: 2, ramBytes: 3 * GiB, hddBytes: 10 * GiB, gpus: 1 });
    expect(p.busy).toBe(true);
    expect(p.free).toEqual({ cpus: 2, ramBytes: 5 * GiB, hddBytes: 90 * GiB, gpus: 1 });
    r!.release();
    expect(p.busy).toBe(false);
    expect(p.free).toEqual(p.capacity);
  });

  test("release is idempotent", () => {
    const p = machine();
    const a = p.reserve(needs({ cpus: 2 }))!;
    const b = p.reserve(needs({ cpus: 1 }))!;
    a.release();
    a.release();
    a.release();
    expect(p.free.cpus).toBe(3);
    expect(p.busy).toBe(true);
    b.release();
    expect(p.free.cpus).toBe(4);
    expect(p.busy).toBe(false);
  });

  test("fitsNow follows what is still free, for every resource", () => {
    const p = machine();
    p.reserve(needs({ cpus: 3, ramBytes: 6 * GiB, hddBytes: 90 * GiB, gpus: 2 }));
    expect(p.fitsNow(needs({ cpus: 1 }))).toBe(true);
    expect(p.fitsNow(needs({ cpus: 2 }))).toBe(false);
    expect(p.fitsNow(needs({ ramBytes: 2 * GiB }))).toBe(true);
    expect(p.fitsNow(needs({ ramBytes: 2 * GiB + 1 }))).toBe(false);
    expect(p.fitsNow(needs({ hddBytes: 10 * GiB }))).toBe(true);
    expect(p.fitsNow(needs({ hddBytes: 11 * GiB }))).toBe(false);
    expect(p.fitsNow(needs({ gpus: 1 }))).toBe(false);
  });

  test("zero-cpu requests each take one cpu", () => {
    const p = machine();
    const held = [];
    for (let i = 0; i < 4; i++) {
      const r = p.reserve(needs({ cpus: 0 }));
      expect(r).toBeDefined();
      held.push(r!);
    }
    expect(p.free.cpus).toBe(0);
    expect(p.fitsNow(needs({ cpus: 0 }))).toBe(false);
    expect(p.reserve(needs({ cpus: 0 }))).toBeUndefined();
    held[0]!.release();
    expect(p.fitsNow(needs({ cpus: 0 }))).toBe(true);
  });

  test("a reservation that does not fit takes nothing", () => {
    const p = machine();
    expect(p.reserve(needs({ cpus: 2, ramBytes: 9 * GiB }))).toBeUndefined();
    expect(p.free).toEqual(p.capacity);
    expect(p.busy).toBe(false);
  });

  test("exact fit is allowed", () => {
    const p = machine();
    expect(p.reserve(needs({ cpus: 4, ramBytes: 8 * GiB, hddBytes: 100 * GiB, gpus: 2 }))).toBeDefined();
    expect(p.free).toEqual({ cpus: 0, ramBytes: 0, hddBytes: 0, gpus: 0 });
  });
});

describe("ResourcePool.neverFits", () => {
  test("undefined when an idle runner could take it", () => {
    const p = machine();
    expect(p.neverFits(needs({ cpus: 4, ramBytes: 8 * GiB, hddBytes: 100 * GiB, gpus: 2 }))).toBeUndefined();
    p.reserve(needs({ cpus: 4 }));
    // Being busy now does not make it "never".
    expect(p.neverFits(needs({ cpus: 4 }))).toBeUndefined();
  });

  test("each reason names the resource and both amounts", () => {
    const p = machine();
    const cpu = p.neverFits(needs({ cpus: 8 }));
    expect(cpu).toContain("cpus");
    expect(cpu).toContain("8");
    expect(cpu).toContain("4");
    const ram = p.neverFits(needs({ ramBytes: 16 * GiB }));
    expect(ram).toContain("RAM");
    expect(ram).toContain("16.0GiB");
    expect(ram).toContain("8.0GiB");
    const disk = p.neverFits(needs({ hddBytes: 200 * GiB }));
    expect(disk).toContain("disk");
    expect(disk).toContain("200.0GiB");
    const gpu = p.neverFits(needs({ gpus: 3 }));
    expect(gpu).toContain("GPUs");
    expect(gpu).toContain("3");
  });

  test("a cpu-only runner never fits a GPU request", () => {
    const p = new ResourcePool({ cpus: 16, ramBytes: 64 * GiB, hddBytes: 500 * GiB, gpus: 0 });
    expect(p.neverFits(needs({ gpus: 1 }))).toContain("GPUs");
  });

  test("a zero-cpu request never fits a runner with no cpus to hand out", () => {
    const p = new ResourcePool({ cpus: 0, ramBytes: GiB, hddBytes: GiB, gpus: 0 });
    expect(p.neverFits(needs({ cpus: 0 }))).toContain("cpus");
  });
});

describe("ResourcePool with a GPU allocator", () => {
  const card = syntheticCard;
  const gpuMachine = (share = false) =>
    new ResourcePool(
      { cpus: 8, ramBytes: 32 * GiB, hddBytes: 100 * GiB, gpus: 2 },
      new GpuAllocator([card(0, 80), card(1, 24)], { shareCards: share }),
    );

  test("a reservation names its cards; release hands them back", () => {
    const p = gpuMachine();
    const r = p.reserve(needs({ gpus: 1, gpuMemBytes: 40 * GiB }))!;
    expect(r.gpuUuids).toEqual([card(0, 80).uuid]);
    expect(p.free.gpus).toBe(1);
    expect(p.fitsNow(needs({ gpus: 1, gpuMemBytes: 40 * GiB }))).toBe(false);
    expect(p.fitsNow(needs({ gpus: 1 }))).toBe(true);
    r.release();
    r.release();
    expect(p.free.gpus).toBe(2);
    expect(p.busy).toBe(false);
    expect(p.gpuAllocator!.activeAllocations).toBe(0);
  });

  test("CPU-only requests get no cards", () => {
    const p = gpuMachine();
    const r = p.reserve(needs({ cpus: 2 }))!;
    expect(r.gpuUuids).toEqual([]);
    expect(p.free.gpus).toBe(2);
  });

  test("a CPU shortage takes no GPU", () => {
    const p = gpuMachine();
    expect(p.reserve(needs({ cpus: 9, gpus: 1 }))).toBeUndefined();
    expect(p.free.gpus).toBe(2);
  });

  test("neverFits asks the allocator: card count and GPU memory", () => {
    const p = gpuMachine();
    expect(p.neverFits(needs({ gpus: 3 }))).toBe("needs 3 GPUs, runner has 2");
    expect(p.neverFits(needs({ gpus: 2, gpuMemBytes: 40 * GiB }))).toContain("GPU");
    expect(p.neverFits(needs({ gpus: 2, gpuMemBytes: 20 * GiB }))).toBeUndefined();
  });

  test("sharing lets two experiments onto one card when their gpuMem fits", () => {
    const p = gpuMachine(true);
    const a = p.reserve(needs({ gpus: 1, gpuMemBytes: 50 * GiB }))!;
    const b = p.reserve(needs({ gpus: 1, gpuMemBytes: 30 * GiB }))!;
    expect(b.gpuUuids).toEqual(a.gpuUuids);
    expect(p.reserve(needs({ gpus: 1, gpuMemBytes: 30 * GiB }))).toBeUndefined();
    const c = p.reserve(needs({ gpus: 1, gpuMemBytes: 20 * GiB }))!;
    expect(c.gpuUuids).toEqual([card(1, 24).uuid]);
    for (const r of [a, b, c]) r.release();
    expect(p.free.gpus).toBe(2);
  });

  test("machineCapacity counts the inventory's usable cards", () => {
    const limits = { maxCores: 1, maxMemBytes: GiB, maxDiskBytes: GiB, workingDir: "/" };
    expect(machineCapacity(limits).gpus).toBe(0);
    expect(
      machineCapacity(limits, {
        devices: [card(0, 80), card(1, 80, { healthy: false }), card(2, 80, { migEnabled: true })],
      }).gpus,
    ).toBe(1);
  });
});
