// The studioml RabbitMQ conventions (exchange, routing keys, message properties) and this
// runner's own additions: the failed place's queue names and the headers it writes.

/** The studioml exchange; the broker refuses a declaration that differs from durable + auto-delete. */
export const EXCHANGE = "StudioML.topic";
export const EXCHANGE_OPTIONS = { durable: true, autoDelete: true } as const;

export const routingKey = (queue: string) => `StudioML.${queue}`;

/**
 * Where requests that cannot be processed are kept: a durable queue per work queue, reached by
 * the default exchange and never bound to StudioML.topic. Its name must not match the default
 * --queue-match (^(rmq|sqs|local)(_.*)?$), so it is never discovered as work.
 */
export const FAILED_PREFIX = "studioml_failed.";
export const failedQueueName = (queue: string) => `${FAILED_PREFIX}${queue}`;

export const CONTENT_TYPE = "application/json";
export const APP_ID = "studioml";
export const PERSISTENT = 2;

export type QueueType = "classic" | "quorum";

/** Headers this runner writes; every other header of a message is carried over unchanged. */
export const HEADER = {
  /** A fresh id on every copy this runner makes, so that one copy is told from another. */
  copy: "x-studio-copy",
  /** Counted deliveries of earlier copies of this request (republished copies carry it). */
  deliveries: "x-studio-deliveries",
  /** JSON array of {time, host, reason}: why earlier deliveries were given back. */
  reasons: "x-studio-reasons",
  /** On copies in the failed place: the work queue it came from, when and why it was kept. */
  queue: "x-studio-queue",
  /** Deliveries before it was kept (x-studio-deliveries restarts at 0 there, so a request moved back gets a fresh
   * count). */
  failedDeliveries: "x-studio-failed-deliveries",
  failedAt: "x-studio-failed-at",
  failedBecause: "x-studio-failed-because",
  /** Set by quorum queues: how often the broker got this copy back unsettled. */
  brokerDeliveryCount: "x-delivery-count",
} as const;
