// Noticing new RabbitMQ work promptly without spinning: per queue, the ready count this runner
// left behind after its last look (lowered as others take messages). A count above it, or a new
// queue, is new work; messages this runner looked at and gave back never wake it.

import type { AdminChannel } from "./admin-channel.ts";
import type { QueueDiscovery } from "./queue-discovery.ts";

export type WatchOptions = {
  admin: AdminChannel;
  discovery: QueueDiscovery;
  isUp: () => boolean;
  pollIntervalMs: number;
  /** The broker says the queue does not exist. */
  onMissing: (queue: string) => void;
};

const MISSING_QUEUE_RECHECK_MS = 5_000;

export class NewWorkWatch {
  private readonly floors = new Map<string, number>();
  private readonly missingUntil = new Map<string, number>();
  private readonly wakers = new Set<() => void>();

  constructor(private readonly options: WatchOptions) {}

  /** After a look at queue: the ready messages left there, those given back included. */
  lookedAt(queue: string, ready: number): void {
    this.floors.set(queue, ready);
  }

  /** Do not ask about this queue for a while. */
  missing(queue: string): void {
    this.missingUntil.set(queue, Date.now() + MISSING_QUEUE_RECHECK_MS);
  }

  /** Resolves on new work, after timeoutMs, on abort, or on wakeAll(). */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let finished = false;
      let pollTimer: ReturnType<typeof setTimeout> | undefined;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        clearTimeout(pollTimer);
        signal?.removeEventListener("abort", finish);
        this.wakers.delete(finish);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.wakers.add(finish);
      signal?.addEventListener("abort", finish, { once: true });
      if (signal?.aborted) return finish();
      const poll = async () => {
        if (finished) return;
        const found = await this.newWorkVisible().catch(() => false);
        if (found) finish();
        else if (!finished) pollTimer = setTimeout(poll, this.options.pollIntervalMs);
      };
      pollTimer = setTimeout(poll, 0);
    });
  }

  /** Wake every waiter (reconnected, closing). */
  wakeAll(): void {
    for (const wake of [...this.wakers]) wake();
  }

  private async newWorkVisible(): Promise<boolean> {
    if (!this.options.isUp()) return false;
    const { discovery, admin } = this.options;
    if (discovery.stale) {
      const before = discovery.known ? new Set(discovery.known) : undefined;
      const names = await discovery.refresh();
      if (before && names.some((n) => !before.has(n))) return true;
    }
    const now = Date.now();
    for (const queue of new Set([...(discovery.known ?? []), ...this.floors.keys()])) {
      if ((this.missingUntil.get(queue) ?? 0) > now) continue;
      const state = await admin.queueState(queue);
      if (state === "missing") {
        this.options.onMissing(queue);
        continue;
      }
      if (state === "unknown") continue;
      const floor = this.floors.get(queue);
      if (floor !== undefined && state.ready > floor) return true;
      this.floors.set(queue, Math.min(floor ?? state.ready, state.ready));
    }
    return false;
  }
}
