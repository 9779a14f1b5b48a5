// What a pulled message says about itself (identity, delivery count, reasons so far) and the
// attributes of the copies this runner publishes (back into the queue or into the failed place).

import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { ATTRIBUTE, MAX_ATTRIBUTE_BYTES } from "./conventions.ts";

export type Reason = { time: string; host: string; reason: string };

export type MessageFacts = {
  /** The first copy's message id: the same on every copy of the request. */
  identity: string;
  /** Deliveries so far, this one included. */
  deliveryCount: number;
  reasons: Reason[];
};

const MAX_REASON_CHARS = 300;

/**
 * count = earlier counted deliveries (studio_deliveries, carried by our copies) + 1 (this one).
 * Pub/Sub's own deliveryAttempt (present only with a dead-letter policy) is not added in: it also
 * grows with every give-back of a message this runner refused for lack of resources, so a large
 * request waiting for a free runner would reach --max-deliveries without ever running.
 */
export function messageFacts(messageId: string, attributes: Record<string, string>): MessageFacts {
  const earlier = Number(attributes[ATTRIBUTE.deliveries]);
  return {
    identity: attributes[ATTRIBUTE.identity] || messageId,
    deliveryCount: (Number.isFinite(earlier) && earlier > 0 ? Math.floor(earlier) : 0) + 1,
    reasons: parseReasons(attributes[ATTRIBUTE.reasons]),
  };
}

export function newReason(reason: string): Reason {
  return { time: new Date().toISOString(), host: hostname(), reason: clip(reason, MAX_REASON_CHARS) };
}

/** Attributes for a copy: the original's, with our count, identity, reasons and extras. */
export function copyAttributes(
  original: Record<string, string>,
  ours: { identity: string; deliveries: number; reasons: Reason[]; extra?: Record<string, string> },
): Record<string, string> {
  const out: Record<string, string> = { ...original };
  out[ATTRIBUTE.identity] = ours.identity;
  out[ATTRIBUTE.copy] = randomUUID();
  out[ATTRIBUTE.deliveries] = String(ours.deliveries);
  const reasons = fitReasons(ours.reasons);
  if (reasons) out[ATTRIBUTE.reasons] = reasons;
  else delete out[ATTRIBUTE.reasons];
  for (const [k, v] of Object.entries(ours.extra ?? {})) out[k] = clip(v, MAX_ATTRIBUTE_BYTES / 4);
  return out;
}

/** The newest reasons whose JSON fits in one attribute value. */
function fitReasons(reasons: Reason[]): string | undefined {
  for (let from = 0; from < reasons.length; from++) {
    const json = JSON.stringify(reasons.slice(from));
    if (Buffer.byteLength(json) <= MAX_ATTRIBUTE_BYTES) return json;
  }
  return undefined;
}

function clip(text: string, maxChars: number): string {
  return text.length > maxChars ? `${text.slice(0, maxChars - 1)}…` : text;
}

function parseReasons(value: string | undefined): Reason[] {
  if (!value) return [];
  try {
    const doc = JSON.parse(value);
    return Array.isArray(doc) ? doc.filter((r) => r && typeof r.reason === "string") : [];
  } catch {
    return [];
  }
}
