// What a received message says about itself (identity, delivery count, reasons so far) and the
// properties of the copies this runner republishes (into the work queue or the failed place).

import type { GetMessage, Options } from "amqplib";
import { createHash, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { HEADER, PERSISTENT } from "./conventions.ts";

export type Reason = { time: string; host: string; reason: string };

export type MessageFacts = {
  /** message_id when the publisher set one, else the body's sha256: the same for every copy. */
  identity: string;
  /** This copy of the message: identity plus the copy id of our republished copies. */
  copyIdentity: string;
  /** Deliveries so far, this one included. */
  deliveryCount: number;
  /** Counted deliveries of earlier copies (our header). */
  earlierDeliveries: number;
  /** Quorum queues stamp x-delivery-count on every delivery; classic queues do not. */
  fromQuorumQueue: boolean;
  reasons: Reason[];
};

const MAX_REASONS = 20;
const MAX_REASON_CHARS = 2000;

/**
 * count = earlier counted deliveries (x-studio-deliveries, carried by our copies)
 *       + times the broker got this copy back unsettled (x-delivery-count, quorum queues only:
 *         runners that died or lost their connection while holding it)
 *       + 1 (this delivery).
 * On classic queues an unsettled return cannot be counted: the redelivered flag is also set by
 * the runner's own give-backs, so it says nothing about crashes.
 */
export function messageFacts(msg: GetMessage): MessageFacts {
  const headers = msg.properties.headers ?? {};
  const earlier = headerNumber(headers[HEADER.deliveries]);
  const brokerValue = headers[HEADER.brokerDeliveryCount];
  const fromQuorumQueue = brokerValue !== undefined && brokerValue !== null;
  const brokerReturns = fromQuorumQueue ? headerNumber(brokerValue) : 0;
  const messageId =
    typeof msg.properties.messageId === "string" && msg.properties.messageId ? msg.properties.messageId : undefined;
  const identity = messageId ?? `sha256:${createHash("sha256").update(msg.content).digest("hex")}`;
  const copy = headers[HEADER.copy];
  return {
    identity,
    copyIdentity:
      copy === undefined || copy === null
        ? identity
        : `${identity}#${Buffer.isBuffer(copy) ? copy.toString("utf8") : String(copy)}`,
    deliveryCount: earlier + brokerReturns + 1,
    earlierDeliveries: earlier,
    fromQuorumQueue,
    reasons: parseReasons(headers[HEADER.reasons]),
  };
}

/** A short form of an identity for logs and Delivery.id. */
export function displayId(identity: string): string {
  return identity.startsWith("sha256:") ? identity.slice(0, 23) : identity;
}

export function newReason(reason: string): Reason {
  return {
    time: new Date().toISOString(),
    host: hostname(),
    reason: reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason,
  };
}

/**
 * Properties for a copy of msg: everything the publisher set is kept except user_id (the broker
 * checks it against the connection's user) and the broker's own x-delivery-count; the copy is
 * persistent and carries our headers.
 */
export function copyProperties(
  msg: GetMessage,
  ours: { deliveries: number; reasons: Reason[]; extra?: Record<string, string>; keepExpiration?: boolean },
): Options.Publish {
  const p = msg.properties;
  const headers: Record<string, unknown> = { ...(p.headers ?? {}) };
  delete headers[HEADER.brokerDeliveryCount];
  headers[HEADER.deliveries] = ours.deliveries;
  headers[HEADER.copy] = randomUUID();
  if (ours.reasons.length) headers[HEADER.reasons] = JSON.stringify(ours.reasons.slice(-MAX_REASONS));
  else delete headers[HEADER.reasons];
  Object.assign(headers, ours.extra ?? {});
  const out: Options.Publish = { headers, persistent: true, deliveryMode: PERSISTENT };
  if (p.contentType !== undefined) out.contentType = p.contentType;
  if (p.contentEncoding !== undefined) out.contentEncoding = p.contentEncoding;
  if (p.appId !== undefined) out.appId = p.appId;
  if (p.messageId !== undefined) out.messageId = p.messageId;
  if (p.correlationId !== undefined) out.correlationId = p.correlationId;
  if (p.replyTo !== undefined) out.replyTo = p.replyTo;
  if (p.type !== undefined) out.type = p.type;
  if (p.timestamp !== undefined) out.timestamp = p.timestamp;
  if (p.priority !== undefined) out.priority = p.priority;
  if (ours.keepExpiration !== false && p.expiration !== undefined) out.expiration = p.expiration;
  return out;
}

function headerNumber(value: unknown): number {
  const raw =
    typeof value === "object" && value !== null && "value" in value ? (value as { value: unknown }).value : value;
  const n = typeof raw === "string" || Buffer.isBuffer(raw) ? Number(String(raw)) : Number(raw);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function parseReasons(value: unknown): Reason[] {
  if (value === undefined || value === null) return [];
  try {
    const doc = JSON.parse(Buffer.isBuffer(value) ? value.toString("utf8") : String(value));
    return Array.isArray(doc) ? doc.filter((r) => r && typeof r.reason === "string") : [];
  } catch {
    return [];
  }
}
