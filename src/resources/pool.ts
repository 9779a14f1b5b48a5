// Accounting of the machine's CPUs, RAM, disk and GPUs: a request is taken only when its needs
// fit what is still free, and its reservation is released when the attempt ends. With a
// GpuAllocator, GPUs are real cards (named by UUID in the reservation); without one, a count.

import type { Resources } from "../request/model.ts";
import { formatBytes } from "../config/units.ts";
import type { GpuAllocation, GpuAllocator, GpuRequest } from "../gpu/allocator.ts";

export type Capacity = { cpus: number; ramBytes: number; hddBytes: number; gpus: number };

export type Reservation = {
  readonly needs: Capacity;
  /** The cards handed to the attempt, for CUDA_VISIBLE_DEVICES; empty when it has none. */
  readonly gpuUuids: string[];
  release(): void;
};

/** The pool's accounting at one moment, for observers (metrics, the status page). */
export type PoolSnapshot = { capacity: Capacity; used: Capacity; free: Capacity; reservations: number };

/** The working directory's free space, checked again before work is taken, and the floor kept free. */
export type DiskFloor = { freeBytes: () => number; floorBytes: number };

export class ResourcePool {
  private used: Capacity = { cpus: 0, ramBytes: 0, hddBytes: 0, gpus: 0 };
  private running = 0;

  /**
   * With a GPU allocator every GPU decision is the allocator's (cards, memory, sharing, health)
   * and capacity.gpus is informational; without one, GPUs are counted against capacity.gpus.
   */
  constructor(
    readonly capacity: Capacity,
    readonly gpuAllocator?: GpuAllocator,
    private readonly disk?: DiskFloor,
  ) {}

  /** Taking `hddBytes` more of today's free space would still leave the floor free. */
  private diskFloorHolds(hddBytes: number): boolean {
    if (!this.disk || this.disk.floorBytes <= 0) return true;
    return this.disk.freeBytes() - hddBytes >= this.disk.floorBytes;
  }

  private static gpuRequest(r: Resources): GpuRequest {
    return { gpus: r.gpus, gpuMemBytes: r.gpuMemBytes };
  }

  /** What a request asks for, with zero cpus counted as one. */
  static needsOf(r: Resources): Capacity {
    return {
      cpus: Math.max(1, Math.ceil(r.cpus)),
      ramBytes: r.ramBytes,
      hddBytes: r.hddBytes,
      gpus: Math.ceil(r.gpus),
    };
  }

  /** Why the request can never run here, even on an idle runner; undefined if it can. */
  neverFits(r: Resources): string | undefined {
    const n = ResourcePool.needsOf(r);
    const c = this.capacity;
    if (n.cpus > c.cpus) return `needs ${n.cpus} cpus, runner has ${c.cpus}`;
    if (n.ramBytes > c.ramBytes) return `needs ${formatBytes(n.ramBytes)} RAM, runner has ${formatBytes(c.ramBytes)}`;
    if (n.hddBytes > c.hddBytes) return `needs ${formatBytes(n.hddBytes)} disk, runner has ${formatBytes(c.hddBytes)}`;
    if (this.gpuAllocator) return this.gpuAllocator.neverFits(ResourcePool.gpuRequest(r));
    if (n.gpus > c.gpus) return `needs ${n.gpus} GPUs, runner has ${c.gpus}`;
    return undefined;
  }

  fitsNow(r: Resources): boolean {
    const n = ResourcePool.needsOf(r);
    return (
      this.used.cpus + n.cpus <= this.capacity.cpus &&
      this.used.ramBytes + n.ramBytes <= this.capacity.ramBytes &&
      this.used.hddBytes + n.hddBytes <= this.capacity.hddBytes &&
      this.diskFloorHolds(n.hddBytes) &&
      (this.gpuAllocator
        ? this.gpuAllocator.canAllocate(ResourcePool.gpuRequest(r))
        : this.used.gpus + n.gpus <= this.capacity.gpus)
    );
  }

  /**
   * Whether `r` fits now and still leaves room for `held` (a request waiting for resources to
   * free up). GPUs are counted as whole cards here, so shared cards are judged conservatively.
   */
  fitsAlongside(r: Resources, held: Resources): boolean {
    if (!this.fitsNow(r)) return false;
    const n = ResourcePool.needsOf(r);
    const h = ResourcePool.needsOf(held);
    const free = this.free;
    if (
      n.cpus + h.cpus > free.cpus ||
      n.ramBytes + h.ramBytes > free.ramBytes ||
      n.hddBytes + h.hddBytes > free.hddBytes
    )
      return false;
    const cards = (x: Resources) =>
      this.gpuAllocator ? this.gpuAllocator.cardsFor(ResourcePool.gpuRequest(x)) : Math.ceil(x.gpus);
    const needCards = cards(r) + cards(held);
    return needCards === 0 || cards(r) === 0 || needCards <= free.gpus;
  }

  reserve(r: Resources): Reservation | undefined {
    if (!this.fitsNow(r)) return undefined;
    const needs = ResourcePool.needsOf(r);
    let gpus: GpuAllocation | undefined;
    if (this.gpuAllocator) {
      gpus = this.gpuAllocator.allocate(ResourcePool.gpuRequest(r));
      if (!gpus) return undefined;
    }
    this.add(needs, 1);
    let released = false;
    return {
      needs,
      gpuUuids: gpus ? [...gpus.uuids] : [],
      release: () => {
        if (released) return;
        released = true;
        try {
          gpus?.release();
        } finally {
          this.add(needs, -1);
        }
      },
    };
  }

  get busy(): boolean {
    return this.running > 0;
  }

  /** A read-only copy of the accounting: capacity, what is reserved, what is free, reservations held. */
  snapshot(): PoolSnapshot {
    return { capacity: { ...this.capacity }, used: { ...this.used }, free: this.free, reservations: this.running };
  }

  get free(): Capacity {
    return {
      cpus: this.capacity.cpus - this.used.cpus,
      ramBytes: this.capacity.ramBytes - this.used.ramBytes,
      hddBytes: this.capacity.hddBytes - this.used.hddBytes,
      gpus: this.gpuAllocator ? this.gpuAllocator.freeCards : this.capacity.gpus - this.used.gpus,
    };
  }

  private add(n: Capacity, sign: 1 | -1) {
    this.used = {
      cpus: this.used.cpus + sign * n.cpus,
      ramBytes: this.used.ramBytes + sign * n.ramBytes,
      hddBytes: this.used.hddBytes + sign * n.hddBytes,
      gpus: this.used.gpus + sign * n.gpus,
    };
    this.running += sign;
  }
}
