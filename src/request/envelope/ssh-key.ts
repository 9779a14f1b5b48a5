// OpenSSH Ed25519 public keys ("ssh-ed25519 AAAA… comment"): read the 32-byte key out of the
// wire blob, turn it into a node:crypto KeyObject, and compute the ssh-keygen style SHA256 fingerprint.

import { createHash, createPublicKey, type KeyObject } from "node:crypto";

const ALGO = "ssh-ed25519";
/** DER SubjectPublicKeyInfo header for a raw Ed25519 key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export class SshKeyError extends Error {}

export type Ed25519PublicKey = { key: KeyObject; raw: Uint8Array; fingerprint: string; comment?: string };

/** The ssh wire blob of an Ed25519 key: string "ssh-ed25519", string key (4-byte big-endian lengths). */
export function ed25519WireBlob(raw: Uint8Array): Buffer {
  const part = (bytes: Uint8Array) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    return Buffer.concat([len, bytes]);
  };
  return Buffer.concat([part(Buffer.from(ALGO)), part(raw)]);
}

/** `SHA256:` + unpadded base64 of sha256(wire blob), as `ssh-keygen -l -E sha256` prints it. */
export function sshFingerprint(raw: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(ed25519WireBlob(raw)).digest("base64").replace(/=+$/, "");
}

export function ed25519FromRaw(raw: Uint8Array, comment?: string): Ed25519PublicKey {
  if (raw.length !== 32) throw new SshKeyError(`ed25519 key is ${raw.length} bytes, expected 32`);
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
  return { key, raw: Uint8Array.from(raw), fingerprint: sshFingerprint(raw), comment };
}

/** The raw 32 bytes of an Ed25519 KeyObject (public or private). */
export function ed25519Raw(key: KeyObject): Uint8Array {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== "ed25519") throw new SshKeyError(`key is ${pub.asymmetricKeyType}, expected ed25519`);
  const der = pub.export({ format: "der", type: "spki" });
  return Uint8Array.from(der.subarray(der.length - 32));
}

/** Parse one authorized_keys style line; only ssh-ed25519 keys are accepted (as the Go runner does). */
export function parseSshEd25519(text: string): Ed25519PublicKey {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith("#"));
  if (!line) throw new SshKeyError("empty key file");
  const [algo, b64, ...rest] = line.split(/\s+/);
  if (algo !== ALGO)
    throw new SshKeyError(`not an ${ALGO} public key (starts with ${JSON.stringify(algo?.slice(0, 20))})`);
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new SshKeyError("key data is not base64");
  const blob = Buffer.from(b64, "base64");
  let at = 0;
  const next = (what: string): Buffer => {
    if (at + 4 > blob.length) throw new SshKeyError(`truncated key blob reading ${what}`);
    const len = blob.readUInt32BE(at);
    at += 4;
    if (at + len > blob.length) throw new SshKeyError(`truncated key blob reading ${what}`);
    const out = blob.subarray(at, at + len);
    at += len;
    return out;
  };
  const inner = next("algorithm").toString("latin1");
  if (inner !== ALGO) throw new SshKeyError(`key blob says ${JSON.stringify(inner)}, expected ${ALGO}`);
  const raw = next("key");
  if (at !== blob.length) throw new SshKeyError("trailing bytes after the key blob");
  return ed25519FromRaw(raw, rest.join(" ") || undefined);
}

/** The one-line OpenSSH form of an Ed25519 public key. */
export function formatSshEd25519(raw: Uint8Array, comment?: string): string {
  return `${ALGO} ${ed25519WireBlob(raw).toString("base64")}${comment ? ` ${comment}` : ""}`;
}
