// Typed faults of encrypted/signed request envelopes: what was wrong with a message (permanent: keep it
// in the failed place) versus runner keys that cannot be read right now (retryable).

import { PermanentError, RetryableError } from "../../errors.ts";

/** Why an envelope was refused; stable codes for logs, metrics and the fixture vectors. */
export type EnvelopeReason =
  | "not-json" // body is not JSON while clear text is off
  | "bad-field" // a field of the envelope is missing or has the wrong type/shape
  | "bad-base64" // a base64 field does not decode
  | "plain-refused" // a plain request while --clear-text-messages=false
  | "no-signing-keys" // encrypted message but no --request-signatures-dir to verify it with
  | "no-key-for-queue" // no signing key registered under any prefix of the queue name
  | "fingerprint-mismatch" // the stated fingerprint is not the registered key's
  | "signature-mismatch" // the signature does not verify with the registered key
  | "no-runner-key" // encrypted message but no --encrypt-dir configured
  | "wrong-key" // the session key does not decrypt with this runner's private key
  | "payload-tampered" // the secretbox does not authenticate
  | "bad-plaintext"; // decrypted payload is not a JSON object

/** The message itself cannot be accepted: the runner keeps it in the failed place with this reason. */
export class EnvelopeError extends PermanentError {
  constructor(
    readonly reason: EnvelopeReason,
    message: string,
    readonly field?: string,
  ) {
    super(
      field ? `envelope ${field}: ${message}` : `envelope: ${message}`,
      field ? { field, phase: "envelope" } : { phase: "envelope" },
    );
  }
}

/** The runner's own key material is configured but cannot be read now (rotation in progress, bad passphrase). */
export class EnvelopeKeysError extends RetryableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { phase: "envelope-keys" }, options);
  }
}
