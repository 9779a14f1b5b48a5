// The studioml hybrid payload: "base64(RSA-OAEP-SHA256(32-byte session key)),base64(nonce(24) ‖ secretbox)".
// RSA comes from node:crypto (MGF1 uses SHA-256 too, as Go's rsa.DecryptOAEP(sha256) and PyCryptodome do);
// XSalsa20-Poly1305 secretbox comes from tweetnacl.

import { constants, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from "node:crypto";
import nacl from "tweetnacl";
import { EnvelopeError } from "./errors.ts";

export const SESSION_KEY_BYTES = nacl.secretbox.keyLength; // 32
export const NONCE_BYTES = nacl.secretbox.nonceLength; // 24

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 (padded), as Python's b64encode and Go's StdEncoding write it. */
export function decodeBase64(text: string, field: string): Buffer {
  const clean = text.trim();
  if (!clean || !BASE64.test(clean)) throw new EnvelopeError("bad-base64", "is not valid base64", field);
  return Buffer.from(clean, "base64");
}

export type SealParts = { sessionKey?: Uint8Array; nonce?: Uint8Array };

/** Encrypt bytes for the holder of an RSA private key; returns the comma-joined payload string. */
export function encryptPayload(plain: Uint8Array, rsaPublicKey: KeyObject, parts: SealParts = {}): string {
  const sessionKey = parts.sessionKey ?? randomBytes(SESSION_KEY_BYTES);
  const nonce = parts.nonce ?? randomBytes(NONCE_BYTES);
  if (sessionKey.length !== SESSION_KEY_BYTES) throw new RangeError(`session key must be ${SESSION_KEY_BYTES} bytes`);
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  const wrapped = publicEncrypt(
    { key: rsaPublicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    sessionKey,
  );
  const box = nacl.secretbox(plain, nonce, sessionKey);
  return `${wrapped.toString("base64")},${Buffer.concat([nonce, box]).toString("base64")}`;
}

/** Decrypt a payload string with the runner's RSA private key; throws EnvelopeError naming `field`. */
export function decryptPayload(payload: string, rsaPrivateKey: KeyObject, field = "message.payload"): Uint8Array {
  const items = payload.split(",");
  if (items.length !== 2)
    throw new EnvelopeError(
      "bad-field",
      `must be two comma-separated base64 strings, found ${items.length} part(s)`,
      field,
    );
  const wrapped = decodeBase64(items[0]!, `${field} (encrypted session key)`);
  const sealed = decodeBase64(items[1]!, `${field} (encrypted request)`);
  let sessionKey: Buffer;
  try {
    sessionKey = privateDecrypt(
      { key: rsaPrivateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      wrapped,
    );
  } catch {
    throw new EnvelopeError(
      "wrong-key",
      "session key does not decrypt with this runner's private key (sealed for another key, or corrupted)",
      field,
    );
  }
  if (sessionKey.length !== SESSION_KEY_BYTES) {
    throw new EnvelopeError(
      "wrong-key",
      `decrypted session key is ${sessionKey.length} bytes, expected ${SESSION_KEY_BYTES}`,
      field,
    );
  }
  if (sealed.length < NONCE_BYTES + nacl.secretbox.overheadLength)
    throw new EnvelopeError("bad-field", "encrypted request is too short", field);
  const opened = nacl.secretbox.open(sealed.subarray(NONCE_BYTES), sealed.subarray(0, NONCE_BYTES), sessionKey);
  if (!opened)
    throw new EnvelopeError(
      "payload-tampered",
      "encrypted request does not authenticate (tampered, or not sealed with its session key)",
      field,
    );
  return opened;
}
