// Opening a studioml request envelope ({"message": {..., "payload", "signature", "fingerprint"}}):
// verify the Ed25519 signature with the key of the longest queue-name prefix, then decrypt the payload
// with the runner's RSA key. Plain requests pass through unless clear text is off.

import { verify } from "node:crypto";
import type { Resources } from "../model.ts";
import { parseResources } from "../parse.ts";
import { EnvelopeError, EnvelopeKeysError } from "./errors.ts";
import { decodeBase64, decryptPayload } from "./hybrid.ts";
import type { EnvelopeKeys } from "./keys.ts";

export { EnvelopeError, EnvelopeKeysError, type EnvelopeReason } from "./errors.ts";

export type OpenedRequest = {
  /** The plain request JSON ({"experiment", "config"}), ready for parseRequest. */
  json: Uint8Array;
  /** The queue-name prefix whose key verified the signature. */
  signedBy?: string;
  /** Fingerprint of the verifying key (`SHA256:…`). */
  fingerprint?: string;
  encrypted: boolean;
};

export type OpenOptions = { clearTextAllowed: boolean };

const ED25519_SIGNATURE_BYTES = 64;

function parseJson(body: Uint8Array | string): unknown {
  try {
    return JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(body));
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The envelope's "message" object when the body is envelope-shaped (top-level "message", no "experiment"). */
function envelopeMessage(doc: unknown): Record<string, unknown> | undefined | "garbled" {
  if (!isObject(doc) || !("message" in doc) || "experiment" in doc) return undefined;
  return isObject(doc.message) ? doc.message : "garbled";
}

/** True when the body is an envelope rather than a plain request. */
export function isEnvelope(body: Uint8Array | string): boolean {
  return envelopeMessage(parseJson(body)) !== undefined;
}

/**
 * The clear-text `message.resources_needed` of an envelope, read without decrypting, for fit decisions.
 * Undefined for plain requests and for envelopes that do not state resources (the client may send null).
 */
export function clearTextResources(body: Uint8Array | string): Resources | undefined {
  const message = envelopeMessage(parseJson(body));
  if (!isObject(message)) return undefined;
  const needed = message.resources_needed;
  if (needed === undefined || needed === null) return undefined;
  try {
    return parseResources("message.resources_needed", needed);
  } catch (err) {
    throw new EnvelopeError(
      "bad-field",
      (err as Error).message.replace(/^message\.resources_needed: /, ""),
      "message.resources_needed",
    );
  }
}

function requireString(message: Record<string, unknown>, name: string): string {
  const v = message[name];
  if (typeof v !== "string" || !v)
    throw new EnvelopeError(
      "bad-field",
      v === undefined ? "is missing" : "must be a non-empty string",
      `message.${name}`,
    );
  return v;
}

/**
 * Turn a queue message into plain request JSON. Envelopes must be signed by the key registered for
 * the longest prefix of `queue` and encrypted for this runner; plain requests are refused when
 * clear text is off. Throws EnvelopeError (permanent: keep the message in the failed place) or
 * EnvelopeKeysError (retryable: this runner's own key cannot be read right now).
 */
export function openEnvelope(body: Uint8Array, queue: string, keys: EnvelopeKeys, options: OpenOptions): OpenedRequest {
  // A signing key that stopped parsing: nothing on this queue is opened (left in the queue), not even plain requests.
  const refusal = keys.queueRefusal?.(queue);
  if (refusal) throw new EnvelopeKeysError(`queue ${queue} is not served: ${refusal}`);
  const doc = parseJson(body);
  const message = envelopeMessage(doc);
  if (message === undefined) {
    if (!options.clearTextAllowed) {
      if (doc === undefined)
        throw new EnvelopeError("not-json", "message body is not JSON and clear-text messages are off");
      throw new EnvelopeError(
        "plain-refused",
        `plain (unencrypted) request on queue ${queue} refused: clear-text messages are off ` +
          "(--clear-text-messages is false, the default with --encrypt-dir)",
      );
    }
    // The Go runner's rule (docs/message_privacy.md): once a signing key is registered for a queue,
    // every message on it must carry a valid signature, and a plain request carries none.
    const registered = keys.verifiesSignatures ? keys.signingKeyFor(queue) : undefined;
    if (registered) {
      throw new EnvelopeError(
        "plain-refused",
        `plain (unsigned) request on queue ${queue} refused: ` +
          `a signing key is registered for prefix ${JSON.stringify(registered.prefix)}`,
      );
    }
    return { json: body, encrypted: false };
  }
  if (message === "garbled") throw new EnvelopeError("bad-field", "must be a JSON object", "message");

  const payload = requireString(message, "payload");

  // Signature first: cheap, and nothing is decrypted for a sender we do not trust.
  if (!keys.verifiesSignatures) {
    throw new EnvelopeError(
      "no-signing-keys",
      "encrypted messages must be signed, but no --request-signatures-dir is configured to verify them",
      "message.signature",
    );
  }
  const registered = keys.signingKeyFor(queue);
  if (!registered)
    throw new EnvelopeError(
      "no-key-for-queue",
      `no signing key is registered for any prefix of queue ${JSON.stringify(queue)}`,
      "message.signature",
    );
  const signatureText = requireString(message, "signature");
  const fingerprint = message.fingerprint;
  if (fingerprint !== undefined && fingerprint !== null) {
    if (typeof fingerprint !== "string")
      throw new EnvelopeError("bad-field", "must be a string", "message.fingerprint");
    if (fingerprint !== registered.key.fingerprint) {
      throw new EnvelopeError(
        "fingerprint-mismatch",
        `${fingerprint} is not the key registered for prefix ${JSON.stringify(registered.prefix)} ` +
          `(${registered.key.fingerprint})`,
        "message.fingerprint",
      );
    }
  }
  const signature = decodeBase64(signatureText, "message.signature");
  if (signature.length !== ED25519_SIGNATURE_BYTES) {
    throw new EnvelopeError(
      "bad-field",
      `is ${signature.length} bytes, an Ed25519 signature is ${ED25519_SIGNATURE_BYTES}`,
      "message.signature",
    );
  }
  // What is signed: the UTF-8 bytes of the payload string exactly as sent (studioml encrypted_payload_builder.py).
  if (!verify(null, Buffer.from(payload, "utf8"), registered.key.key, signature)) {
    throw new EnvelopeError(
      "signature-mismatch",
      `does not verify with the key registered for prefix ${JSON.stringify(registered.prefix)} ` +
        `(${registered.key.fingerprint})`,
      "message.signature",
    );
  }

  const runnerKey = keys.runnerKey();
  if (!runnerKey)
    throw new EnvelopeError(
      "no-runner-key",
      "message is encrypted but this runner has no --encrypt-dir key",
      "message.payload",
    );
  const json = decryptPayload(payload, runnerKey);
  if (!isObject(parseJson(json)))
    throw new EnvelopeError("bad-plaintext", "decrypted request is not a JSON object", "message.payload");
  return { json, signedBy: registered.prefix, fingerprint: registered.key.fingerprint, encrypted: true };
}
