// Covers src/gpu/allocator.ts GpuAllocator: focused cases for whole cards, sharing, best fit,
// health and refresh, the periodic refresh of src/gpu/watch.ts, and a seeded property test of random requests and releases.
import { describe, expect, test } from "bun:test";
import { GpuAllocator, type GpuAllocation, type GpuRequest } from "../../src/gpu/allocator.ts";
import type { GpuDevice, Inventory } from "../../src/gpu/inventory.ts";
import { startGpuWatch } from "../../src/gpu/watch.ts";
import { syntheticCard } from "../helpers/synthetic-gpus.ts";

const GiB = 2 ** 30;

const card = syntheticCard;

const req = (gpus: number, gpuMemGiB = 0): GpuRequest => ({ gpus, gpuMemBytes: gpuMemGiB * GiB });

describe("GpuAllocator: whole cards", () => {
  test("hands out whole cards until none is left, and takes them back", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    const x = a.allocate(req(1))!;
    const y = a.allocate(req(1))!;
    expect(x.uuids).toHaveLength(1);
    expect(y.uuids).toHaveLength(1);
    expect(x.uuids[0]).not.toBe(y.uuids[0]);
    expect(a.allocate(req(1))).toBeUndefined();
    expect(a.freeCards).toBe(0);
    x.release();
    expect(a.freeCards).toBe(1);
    expect(a.allocate(req(1))!.uuids).toEqual(x.uuids);
  });

  test("a request for no GPUs gets an empty allocation and takes nothing", () => {
    const a = new GpuAllocator([card(0, 80)]);
    const none = a.allocate(req(0, 40))!;
    expect(none.uuids).toEqual([]);
    none.release();
    expect(a.freeCards).toBe(1);
    expect(a.activeAllocations).toBe(0);
  });

  test("several cards at once, or nothing", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80), card(2, 80)]);
    const two = a.allocate(req(2))!;
    expect(new Set(two.uuids).size).toBe(2);
    expect(a.allocate(req(2))).toBeUndefined();
    expect(a.freeCards).toBe(1);
    two.release();
    expect(a.allocate(req(3))!.uuids).toHaveLength(3);
  });

  test("best fit: the smallest cards that satisfy gpuMem", () => {
    const a = new GpuAllocator([card(0, 141), card(1, 24), card(2, 80), card(3, 16)]);
    expect(a.allocate(req(1, 20))!.uuids).toEqual([card(1, 24).uuid]);
    expect(a.allocate(req(1))!.uuids).toEqual([card(3, 16).uuid]);
    expect(a.allocate(req(1, 100))!.uuids).toEqual([card(0, 141).uuid]);
    expect(a.allocate(req(1, 100))).toBeUndefined();
  });

  test("release is idempotent", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    const x = a.allocate(req(1))!;
    const y = a.allocate(req(1))!;
    x.release();
    x.release();
    expect(a.freeCards).toBe(1);
    expect(a.activeAllocations).toBe(1);
    y.release();
    expect(a.freeCards).toBe(2);
  });

  test("fractional gpus round up; slotsPerCard maps the Go runner's slots onto cards", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    expect(a.cardsFor(req(0.5))).toBe(1);
    const slots = new GpuAllocator([card(0, 80), card(1, 80)], { slotsPerCard: 4 });
    expect(slots.cardsFor(req(4))).toBe(1);
    expect(slots.cardsFor(req(5))).toBe(2);
    expect(slots.allocate(req(8))!.uuids).toHaveLength(2);
    expect(() => new GpuAllocator([], { slotsPerCard: 0 })).toThrow(RangeError);
  });
});

describe("GpuAllocator: sharing", () => {
  test("off by default: a card with an allocation is not handed out again", () => {
    const a = new GpuAllocator([card(0, 80)]);
    a.allocate(req(1, 10))!;
    expect(a.allocate(req(1, 10))).toBeUndefined();
  });

  test("on: single-card requests share while their gpuMem fits", () => {
    const a = new GpuAllocator([card(0, 80)], { shareCards: true });
    const x = a.allocate(req(1, 40))!;
    const y = a.allocate(req(1, 30))!;
    expect(x.shared && y.shared).toBe(true);
    expect(y.uuids).toEqual(x.uuids);
    expect(a.allocate(req(1, 11))).toBeUndefined();
    const z = a.allocate(req(1, 10))!;
    expect(z.uuids).toEqual(x.uuids);
    expect(a.state[0]!.sharedBytes).toBe(80 * GiB);
    // No whole-card request while anything shares the card.
    expect(a.allocate(req(1))).toBeUndefined();
    x.release();
    y.release();
    z.release();
    expect(a.allocate(req(1))!.shared).toBe(false);
  });

  test("on: requests without gpuMem, or for several cards, still take whole cards", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)], { shareCards: true });
    const whole = a.allocate(req(1))!;
    expect(whole.shared).toBe(false);
    expect(a.allocate(req(1, 1))!.uuids).not.toEqual(whole.uuids);
    expect(a.allocate(req(2, 1))).toBeUndefined();
  });

  test("on: best fit prefers the card left with the least unclaimed memory", () => {
    const a = new GpuAllocator([card(0, 141), card(1, 80), card(2, 40)], { shareCards: true });
    const x = a.allocate(req(1, 35))!;
    expect(x.uuids).toEqual([card(2, 40).uuid]);
    const y = a.allocate(req(1, 50))!;
    expect(y.uuids).toEqual([card(1, 80).uuid]);
    // 5 GiB fits exactly on the 40 GiB card already shared.
    expect(a.allocate(req(1, 5))!.uuids).toEqual([card(2, 40).uuid]);
  });

  test("per-call option overrides the default", () => {
    const a = new GpuAllocator([card(0, 80)]);
    a.allocate(req(1, 10), { shareCards: true })!;
    expect(a.canAllocate(req(1, 10), { shareCards: true })).toBe(true);
    expect(a.canAllocate(req(1, 10))).toBe(false);
  });
});

describe("GpuAllocator: health and refresh", () => {
  test("unhealthy and MIG cards are never handed out and do not count", () => {
    const a = new GpuAllocator([
      card(0, 80, { healthy: false, eccUncorrected: 3 }),
      card(1, 80, { migEnabled: true }),
      card(2, 80),
    ]);
    expect(a.totalCards).toBe(1);
    expect(a.allocate(req(1))!.uuids).toEqual([card(2, 80).uuid]);
    expect(a.allocate(req(1))).toBeUndefined();
    expect(a.neverFits(req(2))).toBe("needs 2 GPUs, runner has 1");
  });

  test("a card going bad is taken out of service; its allocation is released normally", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    const x = a.allocate(req(1))!;
    const bad = card(x.uuids[0] === card(0, 80).uuid ? 0 : 1, 80, { healthy: false, eccUncorrected: 1 });
    const good = card(bad.index === 0 ? 1 : 0, 80);
    const r = a.refresh([bad, good]);
    expect(r.newlyOutOfService.map((d) => d.uuid)).toEqual([bad.uuid]);
    expect(a.totalCards).toBe(1);
    x.release();
    expect(a.freeCards).toBe(1);
    expect(a.allocate(req(1))!.uuids).toEqual([good.uuid]);
    // Sticky: reported healthy again, it stays out until the runner restarts.
    a.refresh([card(bad.index, 80), good]);
    expect(a.totalCards).toBe(1);
  });

  test("refresh keeps allocations; vanished cards are kept until released", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    const x = a.allocate(req(2))!;
    const r = a.refresh([card(0, 80)]);
    expect(r.vanished).toEqual([card(1, 80).uuid]);
    expect(a.totalCards).toBe(1);
    expect(a.freeCards).toBe(0);
    x.release();
    expect(a.freeCards).toBe(1);
    expect(a.state.map((c) => c.uuid)).toEqual([card(0, 80).uuid]);
    a.refresh([card(0, 80), card(1, 80), card(2, 24)]);
    expect(a.totalCards).toBe(3);
  });

  test("neverFits names the GPU memory problem", () => {
    const a = new GpuAllocator([card(0, 24), card(1, 80)]);
    expect(a.neverFits(req(1, 80))).toBeUndefined();
    expect(a.neverFits(req(2, 40))).toContain("40.0GiB each");
    expect(a.neverFits(req(2, 40))).toContain("largest 80.0GiB");
    expect(a.neverFits(req(0, 999))).toBeUndefined();
  });
});

describe("startGpuWatch", () => {
  const inventory = (devices: GpuDevice[], nvml = "ok"): Inventory => ({
    devices,
    nvml,
    libraryPath: "x",
    libraryFound: true,
    visible: { source: undefined, value: undefined, devices, unmatched: [], appliedByRuntime: false },
    problems: [],
  });

  test("a card with new ECC errors is taken out of service and logged once; failed reads keep the cards", () => {
    const a = new GpuAllocator([card(0, 80), card(1, 80)]);
    let next = inventory([card(0, 80), card(1, 80, { healthy: false, eccUncorrected: 1 })]);
    const warnings: string[] = [];
    const log = { info: () => {}, warn: (m: string) => warnings.push(m) };
    const w = startGpuWatch({ allocator: a, refreshIntervalMs: 60_000, log, read: () => next });
    try {
      w.refreshNow();
      expect(a.totalCards).toBe(1);
      w.refreshNow();
      expect(warnings.filter((m) => m.includes("ECC"))).toHaveLength(1);
      next = inventory([], "nvmlInit_v2 failed: GPU is lost");
      w.refreshNow();
      w.refreshNow();
      expect(a.totalCards).toBe(1);
      expect(warnings.filter((m) => m.includes("refresh failed"))).toHaveLength(1);
    } finally {
      w.stop();
    }
  });
});

/** mulberry32: small seeded PRNG so a failing run can be replayed from its seed. */
function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}

type Held = { id: number; alloc: GpuAllocation; req: GpuRequest; share: boolean };

type Stats = { ops: number; whole: number; shared: number; refused: number; refreshes: number };

function propertyRun(seed: number, operations: number, stats: Stats): void {
  const rnd = prng(seed);
  const sizes = [16, 24, 40, 80, 141];
  let devices: GpuDevice[] = Array.from({ length: rnd.int(9) }, (_, i) =>
    card(
      i,
      rnd.pick(sizes),
      rnd.next() < 0.1 ? { healthy: false, eccUncorrected: 1 } : rnd.next() < 0.05 ? { migEnabled: true } : {},
    ),
  );
  const shareDefault = rnd.next() < 0.5;
  const a = new GpuAllocator(devices, { shareCards: shareDefault });
  const outOfService = new Set(devices.filter((d) => !d.healthy).map((d) => d.uuid));
  let held: Held[] = [];
  let nextId = 1;
  let nextCardIndex = devices.length;
  let ops = 0;

  const usable = () => devices.filter((d) => d.healthy && !d.migEnabled && !outOfService.has(d.uuid));
  /** Independent model of what every card holds, from the allocations the test still holds. */
  const model = () => {
    const m = new Map<string, { whole: number; shared: number; sharedBytes: number }>();
    for (const h of held) {
      if (h.alloc.uuids.length === 0) continue;
      for (const u of h.alloc.uuids) {
        const e = m.get(u) ?? { whole: 0, shared: 0, sharedBytes: 0 };
        if (h.alloc.shared) {
          e.shared++;
          e.sharedBytes += h.req.gpuMemBytes;
        } else e.whole++;
        m.set(u, e);
      }
    }
    return m;
  };
  const memOf = new Map<string, number>();
  for (const d of devices) memOf.set(d.uuid, d.memTotalBytes);

  const checkInvariants = () => {
    const m = model();
    let busyCards = 0;
    for (const [uuid, e] of m) {
      busyCards++;
      expect(e.whole).toBeLessThanOrEqual(1);
      if (e.whole) expect(e.shared).toBe(0);
      expect(e.sharedBytes).toBeLessThanOrEqual(memOf.get(uuid)!);
    }
    expect(busyCards).toBeLessThanOrEqual(memOf.size);
    // The allocator's own view agrees with the model.
    const state = a.state;
    for (const c of state) {
      const e = m.get(c.uuid) ?? { whole: 0, shared: 0, sharedBytes: 0 };
      expect(c.wholeBy !== undefined ? 1 : 0).toBe(e.whole);
      expect(c.sharedCount).toBe(e.shared);
      expect(c.sharedBytes).toBe(e.sharedBytes);
      expect(c.sharedBytes).toBeLessThanOrEqual(c.memTotalBytes);
    }
    for (const uuid of m.keys()) expect(state.some((c) => c.uuid === uuid)).toBe(true);
    expect(a.activeAllocations).toBe(held.filter((h) => h.alloc.uuids.length > 0).length);
    expect(a.freeCards).toBe(usable().filter((d) => !m.has(d.uuid)).length);
  };

  while (ops < operations) {
    const roll = rnd.next();
    if (roll < 0.5) {
      const gpus = rnd.pick([0, 1, 1, 1, 2, 3, 4, 0.5]);
      const gpuMemBytes = rnd.next() < 0.3 ? 0 : rnd.pick([1, 5, 10, 20, 40, 70, 80, 100, 141, 160]) * GiB;
      const share = rnd.next() < 0.2 ? !shareDefault : shareDefault;
      const r = { gpus, gpuMemBytes };
      const can = a.canAllocate(r, { shareCards: share });
      const alloc = a.allocate(r, { shareCards: share });
      expect(alloc !== undefined).toBe(can);
      const n = Math.ceil(gpus);
      const m = model();
      const eligible = usable().filter((d) => d.memTotalBytes >= gpuMemBytes);
      if (alloc) {
        expect(alloc.uuids).toHaveLength(n);
        expect(new Set(alloc.uuids).size).toBe(n);
        for (const u of alloc.uuids) expect(eligible.some((d) => d.uuid === u)).toBe(true);
        if (alloc.shared) {
          expect(share && n === 1 && gpuMemBytes > 0).toBe(true);
          const e = m.get(alloc.uuids[0]!);
          expect(e?.whole ?? 0).toBe(0);
          // Best fit: no other card would have been left with less unclaimed memory.
          const spare = (d: GpuDevice) => d.memTotalBytes - (m.get(d.uuid)?.sharedBytes ?? 0) - gpuMemBytes;
          const chosen = eligible.find((d) => d.uuid === alloc.uuids[0])!;
          for (const d of eligible)
            if (!m.get(d.uuid)?.whole && spare(d) >= 0) expect(spare(chosen)).toBeLessThanOrEqual(spare(d));
        } else if (n > 0) {
          for (const u of alloc.uuids) expect(m.has(u)).toBe(false);
          // Best fit: the chosen cards are the n smallest idle eligible ones.
          const idle = eligible
            .filter((d) => !m.has(d.uuid))
            .map((d) => d.memTotalBytes)
            .sort((x, y) => x - y);
          const chosenMem = alloc.uuids.reduce((s, u) => s + memOf.get(u)!, 0);
          expect(chosenMem).toBe(idle.slice(0, n).reduce((s, b) => s + b, 0));
        }
        held.push({ id: nextId++, alloc, req: r, share });
        if (alloc.shared) stats.shared++;
        else if (n > 0) stats.whole++;
      } else {
        stats.refused++;
        // Refused only when no placement exists.
        if (share && n === 1 && gpuMemBytes > 0) {
          for (const d of eligible) {
            const e = m.get(d.uuid);
            expect(!e?.whole && (e?.sharedBytes ?? 0) + gpuMemBytes <= d.memTotalBytes).toBe(false);
          }
        } else {
          expect(eligible.filter((d) => !m.has(d.uuid)).length).toBeLessThan(n);
        }
      }
    } else if (roll < 0.92) {
      if (held.length) {
        const h = held[rnd.int(held.length)]!;
        h.alloc.release();
        if (rnd.next() < 0.3) h.alloc.release();
        held = held.filter((x) => x !== h);
      }
    } else {
      // Refresh: a card goes bad, vanishes, or comes back.
      const kind = rnd.int(3);
      if (kind === 0 && devices.length) {
        const i = rnd.int(devices.length);
        devices = devices.map((d, j) => (j === i ? { ...d, healthy: false, eccUncorrected: 1 } : d));
        outOfService.add(devices[i]!.uuid);
      } else if (kind === 1 && devices.length) {
        devices = devices.filter((_, j) => j !== rnd.int(devices.length));
      } else {
        // A new physical card: a UUID never seen before in this run.
        const d = card(nextCardIndex++, rnd.pick(sizes));
        memOf.set(d.uuid, d.memTotalBytes);
        devices = [...devices, d];
      }
      a.refresh(devices);
      stats.refreshes++;
    }
    ops++;
    checkInvariants();
  }
  for (const h of held) h.alloc.release();
  held = [];
  checkInvariants();
  expect(a.activeAllocations).toBe(0);
  for (const c of a.state) {
    expect(c.wholeBy).toBeUndefined();
    expect(c.sharedCount).toBe(0);
  }
  expect(a.freeCards).toBe(a.totalCards);
  stats.ops += ops;
}

describe("GpuAllocator property", () => {
  test("random requests, releases and refreshes never overcommit a card or the machine, and end all free", () => {
    // CI runs fixed seeds (a red build must be reproducible); elsewhere each run explores new ones.
    const base = process.env.GPU_PROPERTY_SEED
      ? Number(process.env.GPU_PROPERTY_SEED)
      : process.env.CI
        ? 20261128
        : Date.now() % 1_000_000_007;
    const stats: Stats = { ops: 0, whole: 0, shared: 0, refused: 0, refreshes: 0 };
    for (let run = 0; run < 40; run++) {
      const seed = base + run;
      try {
        propertyRun(seed, 500, stats);
      } catch (e) {
        throw new Error(
          `property failed with seed ${seed} (replay: GPU_PROPERTY_SEED=${seed}): ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
    expect(stats.ops).toBeGreaterThanOrEqual(10_000);
    // The mix really exercised every path.
    expect(stats.whole).toBeGreaterThan(500);
    expect(stats.shared).toBeGreaterThan(200);
    expect(stats.refused).toBeGreaterThan(500);
    expect(stats.refreshes).toBeGreaterThan(200);
    console.log(`gpu allocator property: seeds ${base}..${base + 39}`, stats);
  });
});
