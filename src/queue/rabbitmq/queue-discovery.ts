// Which RabbitMQ queues to serve: those the management API lists as bound to StudioML.topic,
// or, while it cannot be reached, the --amqp-queues list (else the names it listed last);
// filtered by --queue-match/--queue-mismatch. Answers are reused for a short while.

import { filterOf, queueWanted, type QueueFilter, type QueueFilterOptions } from "../task-queue.ts";
import type { ManagementAddress } from "./broker-address.ts";
import type { QueueLog } from "./delivery.ts";
import { isServerNamedQueue } from "./exchange-tap.ts";
import { listStudioQueues } from "./management-api.ts";

export type DiscoveryOptions = QueueFilterOptions & {
  api: ManagementAddress;
  vhost: string;
  fallbackQueues: string[];
  reuseMs: number;
  timeoutMs: number;
  log: QueueLog;
  mask: (err: unknown) => string;
};

export class QueueDiscovery {
  private answer?: { names: string[]; atMs: number };
  private lastListed: string[] = [];
  private apiDown = false;

  constructor(private readonly options: DiscoveryOptions) {}

  /** The last answer, when there is one. */
  get known(): string[] | undefined {
    return this.answer?.names;
  }

  get stale(): boolean {
    return !this.answer || Date.now() - this.answer.atMs >= this.options.reuseMs;
  }

  /** The queues to serve; asks again once the last answer is older than reuseMs. */
  async names(): Promise<string[]> {
    return this.stale ? this.refresh() : this.answer!.names;
  }

  /** Forget the last answer (a queue was just declared). */
  invalidate(): void {
    this.answer = undefined;
  }

  async refresh(): Promise<string[]> {
    const { api, log } = this.options;
    let names: string[];
    try {
      names = await listStudioQueues(api, this.options.vhost, this.options.timeoutMs);
      this.lastListed = names;
      if (this.apiDown)
        log.info(`RabbitMQ management API at ${api.redacted} answers again: discovering queues through it`);
      this.apiDown = false;
    } catch (err) {
      const fallback = this.options.fallbackQueues;
      names = fallback.length ? fallback : this.lastListed;
      if (!this.apiDown) {
        const serving = fallback.length
          ? `the --amqp-queues list (${fallback.join(", ")})`
          : this.lastListed.length
            ? "the queues it listed last"
            : "no RabbitMQ queues until it answers (set --amqp-queues to name them)";
        log.warn(`${this.options.mask(err)}: serving ${serving}`);
      }
      this.apiDown = true;
    }
    const wanted = wantedQueues(names, filterOf(this.options));
    this.answer = { names: wanted, atMs: Date.now() };
    return wanted;
  }
}

/** The work queues among names bound to the exchange, sorted: server-named ones are runners' taps, never work. */
export function wantedQueues(names: string[], filter: QueueFilter): string[] {
  return names.filter((n) => !isServerNamedQueue(n) && queueWanted(n, filter)).sort();
}
