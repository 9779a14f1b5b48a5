// Pub/Sub names and attributes: the python client's topic `<queue>` + subscription `<queue>_sub`,
// the failed place `studioml_failed.<queue>`, and the attributes this runner writes on copies.

/** The python client names a queue's subscription `<queue>_sub`; the queue is the name without it. */
export const SUBSCRIPTION_SUFFIX = "_sub";

/**
 * Where requests that cannot be processed are kept: topic `studioml_failed.<queue>` with
 * subscription `studioml_failed.<queue>_sub`. Discovery skips every name with this prefix
 * whatever --queue-match says, so the failed place is never served as work.
 */
export const FAILED_PREFIX = "studioml_failed.";

export const failedTopicName = (queue: string) => `${FAILED_PREFIX}${queue}`;
export const subscriptionFor = (topic: string) => `${topic}${SUBSCRIPTION_SUFFIX}`;

/** The queue a subscription serves: its id without a trailing `_sub`. */
export function queueOfSubscription(subscription: string): string {
  return subscription.endsWith(SUBSCRIPTION_SUFFIX) && subscription.length > SUBSCRIPTION_SUFFIX.length
    ? subscription.slice(0, -SUBSCRIPTION_SUFFIX.length)
    : subscription;
}

export const isFailedPlace = (name: string) => name.startsWith(FAILED_PREFIX);

/** The last path segment of `projects/<p>/subscriptions/<id>` or `projects/<p>/topics/<id>`. */
export const shortName = (resource: string) => resource.slice(resource.lastIndexOf("/") + 1);

/** Attributes this runner writes; every other attribute of a message is carried over unchanged. */
export const ATTRIBUTE = {
  /** A fresh id on every copy this runner makes. */
  copy: "studio_copy",
  /** The request's identity (the first message id), the same on every copy. */
  identity: "studio_identity",
  /** Counted deliveries of earlier copies of this request. */
  deliveries: "studio_deliveries",
  /** JSON array of {time, host, reason}: why earlier deliveries were given back (trimmed to fit 1024 bytes). */
  reasons: "studio_reasons",
  /** On copies in the failed place: the work queue, when, why and after how many deliveries. */
  queue: "studio_queue",
  failedAt: "studio_failed_at",
  failedBecause: "studio_failed_because",
  failedDeliveries: "studio_failed_deliveries",
} as const;

/** Pub/Sub refuses attribute values longer than this many bytes. */
export const MAX_ATTRIBUTE_BYTES = 1024;

/** Pub/Sub caps one modifyAckDeadline at this many seconds. */
export const MAX_ACK_DEADLINE_S = 600;
/** ... and refuses deadlines below this (0 = give back at once). */
export const MIN_ACK_DEADLINE_S = 10;
