// Sealing, the inverse of openEnvelope: build the studioml client's envelope (clear-text summary,
// hybrid-encrypted payload, Ed25519 signature of the payload string, SHA256 fingerprint), and encrypt
// reports for an experimenter's RSA key. Used by tests, `studio-runner submit` and `<queue>_response`.

import { createPublicKey, sign, type KeyObject } from "node:crypto";
import { encryptPayload, type SealParts } from "./hybrid.ts";
import { ed25519Raw, sshFingerprint } from "./ssh-key.ts";

export type EnvelopeClearText = {
  experiment: { status: unknown; pythonver: unknown };
  time_added: unknown;
  experiment_lifetime: unknown;
  resources_needed: unknown;
};

export type SealOptions = SealParts & {
  /** The runner's RSA public key (KeyObject, or PEM: PKCS#1 "RSA PUBLIC KEY" or SPKI). */
  runnerPublicKey: KeyObject | string;
  /** The experimenter's Ed25519 private key; without it the envelope is unsigned (runners that verify refuse it). */
  signingKey?: KeyObject;
  /** Clear-text fields; by default taken from the request as the studioml client does. */
  clearText?: Partial<EnvelopeClearText>;
  /** Override the fingerprint (tests); false leaves it out. */
  fingerprint?: string | false;
  /** Override the signature (tests). */
  signature?: string;
};

const asObject = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** The clear-text summary the studioml client puts beside the payload. */
export function clearTextOf(request: unknown): EnvelopeClearText {
  const experiment = asObject(asObject(request).experiment);
  const config = asObject(asObject(request).config);
  return {
    experiment: { status: experiment.status ?? "unknown", pythonver: experiment.pythonver ?? "unknown" },
    time_added: experiment.time_added ?? null,
    experiment_lifetime: experiment.max_duration ?? config.experimentLifetime ?? "unknown",
    resources_needed: experiment.resources_needed ?? null,
  };
}

/** Seal a plain request (JSON bytes or text) into the envelope format; returns the envelope's JSON text. */
export function sealRequest(json: Uint8Array | string, options: SealOptions): string {
  const bytes = typeof json === "string" ? Buffer.from(json, "utf8") : json;
  const request: unknown = JSON.parse(new TextDecoder().decode(bytes));
  const runnerKey =
    typeof options.runnerPublicKey === "string" ? createPublicKey(options.runnerPublicKey) : options.runnerPublicKey;
  const payload = encryptPayload(bytes, runnerKey, options);
  const clear = { ...clearTextOf(request), ...options.clearText };
  const message: Record<string, unknown> = {
    experiment: clear.experiment,
    time_added: clear.time_added,
    experiment_lifetime: clear.experiment_lifetime,
    resources_needed: clear.resources_needed,
    payload,
  };
  if (options.signingKey) {
    message.signature =
      options.signature ?? sign(null, Buffer.from(payload, "utf8"), options.signingKey).toString("base64");
    const fingerprint = options.fingerprint ?? sshFingerprint(ed25519Raw(options.signingKey));
    if (fingerprint !== false) message.fingerprint = fingerprint;
  } else {
    if (options.signature !== undefined) message.signature = options.signature;
    if (typeof options.fingerprint === "string") message.fingerprint = options.fingerprint;
  }
  return JSON.stringify({ message });
}

/**
 * Encrypt a report for `<queue>_response` with the experimenter's RSA key (--response-signatures-dir):
 * the same "key,box" payload string as requests, as UTF-8 bytes. The Go runner's exact report framing
 * could not be confirmed; this is the payload its key wrapper produces.
 */
export function sealResponse(
  report: Uint8Array | string,
  experimenterKey: KeyObject,
  parts: SealParts = {},
): Uint8Array {
  const bytes = typeof report === "string" ? Buffer.from(report, "utf8") : report;
  return Buffer.from(encryptPayload(bytes, experimenterKey, parts), "utf8");
}
