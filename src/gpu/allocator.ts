// Hands GPU cards to experiments and takes them back: whole cards by default, shared cards by
// gpuMem when sharing is switched on, best fit, idempotent release, cards with ECC faults out of
// service. Pure bookkeeping over a device list; it never talks to NVML itself.
//
// Semantics of what studioml clients send (after src/request/parse.ts):
// - `gpus` (studioml's card count; parse.ts takes max(gpus, gpuCount), so `gpuCount` is read the
//   same way) is the number of slots wanted. Slots become cards as ceil(gpus / slotsPerCard).
//   slotsPerCard defaults to 1, so one slot is one whole card. The Go runner's convention gives a
//   card several slots by model (a big card counts as several); a runner that must honour such
//   requests sets slotsPerCard for its (uniform) cards, otherwise a request for 4 "slots" asks
//   for 4 cards here and is told it can never fit on a smaller machine. Fractions round up.
// - `gpuMem` (gpuMemBytes) is the memory needed on each card handed out. 0 means "any card".
//   A card whose total memory is below it is never chosen. For whole cards it only filters; the
//   runner does not police what the experiment then uses.
// - Sharing (opt-in): a request for exactly one card with gpuMem > 0 may land on a card that
//   other shared requests already use, when the gpuMem of all of them fits the card's total
//   memory. Requests for several cards, or without gpuMem, always take whole cards. A card that
//   has any allocation is never handed out whole. Sharing is cooperative: frameworks must be told
//   to grow memory instead of grabbing the whole card.
// - Best fit: whole cards are taken smallest-memory first (the least spare memory overall); a
//   shared request goes to the card that leaves the least memory unclaimed, preferring cards
//   already shared so that empty cards stay whole.
// - Out of service: unhealthy (uncorrected ECC), MIG-mode, and vanished cards are never handed
//   out; allocations already on them are released normally. Once unhealthy, a card stays out of
//   service until the runner restarts.

import { formatBytes } from "../config/units.ts";
import { isSchedulable, type GpuDevice } from "./inventory.ts";

export type GpuRequest = { gpus: number; gpuMemBytes: number };

export type GpuAllocOptions = {
  /** Let single-card requests with gpuMem > 0 share a card. */
  shareCards: boolean;
  /** Request slots per card (the Go runner's slot convention); 1 means one slot is one card. */
  slotsPerCard: number;
};

export type GpuAllocation = {
  readonly uuids: string[];
  /** true when the card(s) may be shared with other experiments. */
  readonly shared: boolean;
  release(): void;
};

/** What one card holds now, as a snapshot. */
export type GpuCardState = {
  uuid: string;
  index: number;
  memTotalBytes: number;
  inService: boolean;
  /** The allocation that has the card whole, if any. */
  wholeBy: number | undefined;
  /** gpuMem claimed by the shared allocations on the card, summed. */
  sharedBytes: number;
  sharedCount: number;
  /** GPU utilisation in percent at the last NVML read; undefined where NVML does not report it. */
  utilizationGpuPct: number | undefined;
};

type Card = {
  device: GpuDevice;
  present: boolean;
  outOfService: boolean;
  wholeBy: number | undefined;
  shared: Map<number, number>;
};

type Plan = { cards: Card[]; shared: boolean };

export class GpuAllocator {
  private readonly cards = new Map<string, Card>();
  private readonly defaults: GpuAllocOptions;
  private nextId = 1;
  private active = 0;

  constructor(devices: GpuDevice[], defaults: Partial<GpuAllocOptions> = {}) {
    this.defaults = { shareCards: false, slotsPerCard: 1, ...defaults };
    if (!(this.defaults.slotsPerCard >= 1))
      throw new RangeError(`slotsPerCard must be at least 1, got ${this.defaults.slotsPerCard}`);
    this.refresh(devices);
  }

  /** Cards a request needs: its slots divided by slots per card, rounded up; 0 for none. */
  cardsFor(req: GpuRequest, slotsPerCard = this.defaults.slotsPerCard): number {
    return req.gpus > 0 ? Math.ceil(req.gpus / slotsPerCard) : 0;
  }

  /** Why the request could not be placed even with every card free; undefined if it could. */
  neverFits(req: GpuRequest): string | undefined {
    const n = this.cardsFor(req);
    if (n === 0) return undefined;
    const usable = this.inService();
    if (n > usable.length) return `needs ${n} GPUs, runner has ${usable.length}`;
    const big = usable.filter((c) => c.device.memTotalBytes >= req.gpuMemBytes);
    if (big.length < n) {
      const largest = Math.max(0, ...usable.map((c) => c.device.memTotalBytes));
      return (
        `needs ${n} GPUs with ${formatBytes(req.gpuMemBytes)} each, ` +
        `runner has ${big.length} such (largest ${formatBytes(largest)})`
      );
    }
    return undefined;
  }

  canAllocate(req: GpuRequest, options: Partial<GpuAllocOptions> = {}): boolean {
    return this.plan(req, { ...this.defaults, ...options }) !== undefined;
  }

  allocate(req: GpuRequest, options: Partial<GpuAllocOptions> = {}): GpuAllocation | undefined {
    const plan = this.plan(req, { ...this.defaults, ...options });
    if (!plan) return undefined;
    if (plan.cards.length === 0) return { uuids: [], shared: false, release: () => {} };
    const id = this.nextId++;
    for (const c of plan.cards) {
      if (plan.shared) c.shared.set(id, req.gpuMemBytes);
      else c.wholeBy = id;
    }
    this.active++;
    const held = [...plan.cards];
    let released = false;
    return {
      uuids: held.map((c) => c.device.uuid),
      shared: plan.shared,
      release: () => {
        if (released) return;
        released = true;
        for (const c of held) {
          if (c.wholeBy === id) c.wholeBy = undefined;
          c.shared.delete(id);
          // A card NVML no longer reports is forgotten once nothing holds it.
          if (!c.present && isIdle(c) && this.cards.get(c.device.uuid) === c) this.cards.delete(c.device.uuid);
        }
        this.active--;
      },
    };
  }

  /**
   * Take a new device list (from a periodic NVML read) without losing allocations. Cards are
   * matched by UUID; missing ones are kept, out of service, until their allocations end.
   * Returns the cards that went out of service with this refresh.
   */
  refresh(devices: GpuDevice[]): { newlyOutOfService: GpuDevice[]; vanished: string[] } {
    const seen = new Set<string>();
    const newlyOutOfService: GpuDevice[] = [];
    for (const d of devices) {
      seen.add(d.uuid);
      const c = this.cards.get(d.uuid);
      if (!c) {
        this.cards.set(d.uuid, {
          device: d,
          present: true,
          outOfService: !d.healthy,
          wholeBy: undefined,
          shared: new Map(),
        });
        if (!d.healthy) newlyOutOfService.push(d);
        continue;
      }
      c.device = d;
      c.present = true;
      if (!d.healthy && !c.outOfService) {
        c.outOfService = true;
        newlyOutOfService.push(d);
      }
    }
    const vanished: string[] = [];
    for (const [uuid, c] of this.cards) {
      if (seen.has(uuid)) continue;
      if (c.present) vanished.push(uuid);
      c.present = false;
      if (c.wholeBy === undefined && c.shared.size === 0) this.cards.delete(uuid);
    }
    return { newlyOutOfService, vanished };
  }

  /** Cards that can be handed out (present, healthy, not MIG), busy or not. */
  get totalCards(): number {
    return this.inService().length;
  }

  /** Cards in service with no allocation at all. */
  get freeCards(): number {
    return this.inService().filter(isIdle).length;
  }

  /** Allocations not yet released (allocations of zero cards are not counted). */
  get activeAllocations(): number {
    return this.active;
  }

  get state(): GpuCardState[] {
    return [...this.cards.values()]
      .sort((a, b) => a.device.index - b.device.index)
      .map((c) => ({
        uuid: c.device.uuid,
        index: c.device.index,
        memTotalBytes: c.device.memTotalBytes,
        inService: inService(c),
        wholeBy: c.wholeBy,
        sharedBytes: sharedBytes(c),
        sharedCount: c.shared.size,
        utilizationGpuPct: c.device.utilizationGpuPct,
      }));
  }

  private inService(): Card[] {
    return [...this.cards.values()].filter(inService);
  }

  private plan(req: GpuRequest, options: GpuAllocOptions): Plan | undefined {
    const n = this.cardsFor(req, options.slotsPerCard);
    if (n === 0) return { cards: [], shared: false };
    const mem = Math.max(0, req.gpuMemBytes);
    const candidates = this.inService().filter((c) => c.device.memTotalBytes >= mem);
    if (options.shareCards && n === 1 && mem > 0) {
      // Least unclaimed memory left; on a tie, a card already shared, then the lower index.
      const rank = (c: Card) => [
        c.device.memTotalBytes - sharedBytes(c) - mem,
        c.shared.size > 0 ? 0 : 1,
        c.device.index,
      ];
      let best: Card | undefined;
      for (const c of candidates) {
        if (c.wholeBy !== undefined || rank(c)[0]! < 0) continue;
        if (!best || lexLess(rank(c), rank(best))) best = c;
      }
      return best ? { cards: [best], shared: true } : undefined;
    }
    const idle = candidates
      .filter(isIdle)
      .sort((a, b) => a.device.memTotalBytes - b.device.memTotalBytes || a.device.index - b.device.index);
    if (idle.length < n) return undefined;
    return { cards: idle.slice(0, n), shared: false };
  }
}

function lexLess(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

function inService(c: Card): boolean {
  return c.present && !c.outOfService && isSchedulable(c.device);
}

function isIdle(c: Card): boolean {
  return c.wholeBy === undefined && c.shared.size === 0;
}

function sharedBytes(c: Card): number {
  let sum = 0;
  for (const b of c.shared.values()) sum += b;
  return sum;
}
