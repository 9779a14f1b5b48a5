// SQS naming and message-attribute conventions of studio-runner: failed places, carried counts, the 12 h ceiling.

import { createHash } from "node:crypto";

/** SQS refuses a visibility that reaches past 12 hours after the message was received. */
export const SQS_VISIBILITY_CEILING_MS = 12 * 60 * 60 * 1000;
/** Renewals stop this long before the ceiling, so the last one is never refused. */
export const CEILING_MARGIN_MS = 5 * 60 * 1000;
/** Longest visibility one ChangeMessageVisibility may ask for, in seconds. */
export const MAX_VISIBILITY_SECONDS = 12 * 60 * 60;

const MAX_QUEUE_NAME_LENGTH = 80;
const FAILED_PREFIX = "studioml_failed_";

/** Message attributes this runner writes on the copies it sends. */
export const ATTR = {
  /** Counted deliveries before this copy was sent (ApproximateReceiveCount adds to it). */
  deliveries: "studio_deliveries",
  /** The id of the message as first published, kept across copies. */
  originalId: "studio_id",
  /** JSON array of {reason, at} of the faults so far. */
  reasons: "studio_reasons",
  queue: "studio_queue",
  failedBecause: "studio_failed_because",
  failedAt: "studio_failed_at",
  failedDeliveries: "studio_failed_deliveries",
} as const;

/**
 * The failed place of a queue. It starts with "studioml_", so the default --queue-match
 * `^(rmq|sqs|local)(_.*)?$` never serves it as work; names past SQS's 80 characters are shortened
 * with a hash of the full name.
 */
export function failedQueueName(queue: string): string {
  const full = `${FAILED_PREFIX}${queue}`;
  if (full.length <= MAX_QUEUE_NAME_LENGTH) return full;
  const hash = createHash("sha256").update(queue).digest("hex").slice(0, 8);
  return `${full.slice(0, MAX_QUEUE_NAME_LENGTH - hash.length - 1)}_${hash}`;
}

/** The queue name at the end of a queue URL. */
export function queueNameOfUrl(url: string): string {
  return url.replace(/\/+$/, "").split("/").pop() ?? url;
}

export type Reason = { reason: string; at: string };

export function newReason(reason: string): Reason {
  return { reason, at: new Date().toISOString() };
}
