// The queue interface every backend (local directory, RabbitMQ, SQS, Pub/Sub) implements.

import type { ResponsePublisher } from "./response-publisher.ts";

export type NackOutcome = "requeued" | "failed";

/** One received request, held by this runner until it is acked, nacked or rejected. */
export interface Delivery {
  /** Backend message id, stable across redeliveries where the backend allows. */
  readonly id: string;
  readonly queue: string;
  readonly body: Uint8Array;
  /** How many times this message has been delivered, this delivery included. */
  readonly deliveryCount: number;
  /**
   * Optional: aborted (with an Error saying why) when the request is withdrawn while this runner
   * holds it, e.g. its RabbitMQ queue was deleted. The attempt should stop the experiment and then
   * settle as usual: ack() of a withdrawn delivery touches no queue; nack()/reject() keep a copy
   * in the failed place.
   */
  readonly revoked?: AbortSignal;
  /** Keep the message ours (backends with leases also renew them on their own). */
  extendLease(): Promise<void>;
  /** Done: the message is removed for good. */
  ack(): Promise<void>;
  /**
   * Runner-side fault: give it back for another attempt, or move it to the failed place once it
   * has been delivered maxDeliveries times. countDelivery=false (shutdown) does not count this one.
   */
  nack(reason: string, options?: { countDelivery?: boolean }): Promise<NackOutcome>;
  /** Permanent request fault: keep it in the failed place with the reason. */
  reject(reason: string): Promise<void>;
}

export type ReceiveOptions = {
  /**
   * Backends that can look at a message before taking it call this and leave the message for
   * others when it returns false; the rest take the message and nack it.
   */
  accept?: (body: Uint8Array) => boolean;
};

export interface TaskQueue {
  readonly name: string;
  receive(options?: ReceiveOptions): Promise<Delivery | undefined>;
}

export interface QueueBackend {
  readonly kind: string;
  /** Names of the queues this backend can serve now, after match/mismatch filtering. */
  discover(): Promise<string[]>;
  open(name: string): TaskQueue;
  /** Resolves when new work may have arrived, after timeoutMs at the latest, or on abort. */
  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** Send a request (used by `submit` and tests). */
  publish(queue: string, body: Uint8Array | string): Promise<string>;
  /** A publisher of reports to this backend's `<queue>_response` queues, with its settings, on clients of its own. */
  responsePublisher(): ResponsePublisher;
  /**
   * Reach the server with this backend's own identity and list its queues, taking nothing (for
   * `doctor`): what was found, in one line; throws the reason when it cannot.
   */
  check(timeoutMs: number): Promise<string>;
  close(): Promise<void>;
}

/** "N queue(s): a, b, c …" for check() answers. */
export function describeQueues(names: string[], shown = 5): string {
  const list = names.slice(0, shown).join(", ") + (names.length > shown ? ` … (+${names.length - shown})` : "");
  return `${names.length} queue${names.length === 1 ? "" : "s"}${names.length ? `: ${list}` : ""}`;
}

export type QueueFilter = { match?: RegExp; mismatch?: RegExp };

/** Backend options: a fixed filter (match/mismatch), or a live one (filter) read at every discovery. */
export type QueueFilterOptions = QueueFilter & { filter?: QueueFilter };

/** The filter a backend's options name: the live one when given. */
export const filterOf = (options: QueueFilterOptions): QueueFilter => options.filter ?? options;

/** Queue names that are work queues for this runner (report queues never are). */
export function queueWanted(name: string, filter: QueueFilter): boolean {
  if (name.endsWith("_response")) return false;
  if (filter.match && !filter.match.test(name)) return false;
  if (filter.mismatch?.test(name)) return false;
  return true;
}
