// This runner's unsettled deliveries, and what it settled while it could not reach the broker:
// what a message that comes back to this runner should meet.

import type { RabbitDelivery, SettledHow } from "./delivery.ts";

const REMEMBER_MS = 6 * 3600_000;
const REMEMBER_MAX = 10_000;

const copyKey = (queue: string, copyIdentity: string) => `${queue}\n${copyIdentity}`;

export class HoldRegistry {
  private readonly live = new Set<RabbitDelivery>();
  private readonly settled = new Map<string, { how: SettledHow; untilMs: number }>();

  add(delivery: RabbitDelivery): void {
    this.live.add(delivery);
  }

  remove(delivery: RabbitDelivery): void {
    this.live.delete(delivery);
  }

  /** An unsettled delivery of this copy that lost its channel (its attempt still runs). */
  detachedCopy(queue: string, copyIdentity: string): RabbitDelivery | undefined {
    for (const d of this.live)
      if (!d.isAttached && d.queue === queue && d.facts.copyIdentity === copyIdentity) return d;
    return undefined;
  }

  inQueue(queue: string): RabbitDelivery[] {
    return [...this.live].filter((d) => d.queue === queue);
  }

  queues(): string[] {
    return [...new Set([...this.live].map((d) => d.queue))];
  }

  queuesWithDetached(): string[] {
    return [...new Set([...this.live].filter((d) => !d.isAttached && !d.revoked.aborted).map((d) => d.queue))];
  }

  rememberSettled(delivery: RabbitDelivery, how: SettledHow): void {
    const now = Date.now();
    for (const [key, entry] of this.settled)
      if (entry.untilMs < now || this.settled.size >= REMEMBER_MAX) this.settled.delete(key);
    this.settled.set(copyKey(delivery.queue, delivery.facts.copyIdentity), { how, untilMs: now + REMEMBER_MS });
  }

  /** How this runner settled this copy while detached, if it did (forgotten once asked). */
  takeSettled(queue: string, copyIdentity: string): SettledHow | undefined {
    const key = copyKey(queue, copyIdentity);
    const entry = this.settled.get(key);
    this.settled.delete(key);
    return entry && entry.untilMs >= Date.now() ? entry.how : undefined;
  }
}
