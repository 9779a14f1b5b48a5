// Accounting of the machine's CPUs, RAM, disk and GPUs: a request is taken only when its needs
// fit what is still free, and its reservation is released when the attempt ends.

import type { Resources } from "../request/model.ts";
import { formatBytes } from "../config/units.ts";

export type Capacity = { cpus: number; ramBytes: number; hddBytes: number; gpus: number };

export type Reservation = { readonly needs: Capacity; release(): void };

export class ResourcePool {
  private used: Capacity = { cpus: 0, ramBytes: 0, hddBytes: 0, gpus: 0 };
  private running = 0;

  constructor(readonly capacity: Capacity) {}

  /** What a request asks for, with zero cpus counted as one. */
  static needsOf(r: Resources): Capacity {
    return { cpus: Math.max(1, Math.ceil(r.cpus)), ramBytes: r.ramBytes, hddBytes: r.hddBytes, gpus: Math.ceil(r.gpus) };
  }

  /** Why the request can never run here, even on an idle runner; undefined if it can. */
  neverFits(r: Resources): string | undefined {
    const n = ResourcePool.needsOf(r);
    const c = this.capacity;
    if (n.cpus > c.cpus) return `needs ${n.cpus} cpus, runner has ${c.cpus}`;
    if (n.ramBytes > c.ramBytes) return `needs ${formatBytes(n.ramBytes)} RAM, runner has ${formatBytes(c.ramBytes)}`;
    if (n.hddBytes > c.hddBytes) return `needs ${formatBytes(n.hddBytes)} disk, runner has ${formatBytes(c.hddBytes)}`;
    if (n.gpus > c.gpus) return `needs ${n.gpus} GPUs, runner has ${c.gpus}`;
    return undefined;
  }

  fitsNow(r: Resources): boolean {
    const n = ResourcePool.needsOf(r);
    return (
      this.used.cpus + n.cpus <= this.capacity.cpus &&
      this.used.ramBytes + n.ramBytes <= this.capacity.ramBytes &&
      this.used.hddBytes + n.hddBytes <= this.capacity.hddBytes &&
      this.used.gpus + n.gpus <= this.capacity.gpus
    );
  }

  reserve(r: Resources): Reservation | undefined {
    if (!this.fitsNow(r)) return undefined;
    const needs = ResourcePool.needsOf(r);
    this.add(needs, 1);
    let released = false;
    return {
      needs,
      release: () => {
        if (released) return;
        released = true;
        this.add(needs, -1);
      },
    };
  }

  get busy(): boolean {
    return this.running > 0;
  }

  get free(): Capacity {
    return {
      cpus: this.capacity.cpus - this.used.cpus,
      ramBytes: this.capacity.ramBytes - this.used.ramBytes,
      hddBytes: this.capacity.hddBytes - this.used.hddBytes,
      gpus: this.capacity.gpus - this.used.gpus,
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
