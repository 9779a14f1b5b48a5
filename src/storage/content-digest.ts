// The `hash` an artifact may carry (protocol.md: "optional content hash"), and checking an object's
// bytes against it as they stream by. studioml's Artifact.get_hash() gives the sha256 (64 hex
// digits) of the tar file it uploads, that is of the object's bytes as stored (its blobstore keys
// are blobstore/<that digest>.tar); for an artifact it has no local copy of, get_hash() gives the
// sha256 of the location string instead, which says nothing about the content. So: 64 hex digits
// (or "sha256:" and 64 hex digits) are compared with the sha256 of the object's bytes, except
// when they equal the sha256 of the artifact's own location, which cannot be verified; anything
// else is refused as a hash this runner cannot check.

import { createHash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
import { RequestError } from "../errors.ts";

export type ExpectedDigest =
  /** Compare the object's sha256 with this (lower-case hex). */
  | { verify: true; sha256: string }
  /** The hash is studioml's digest of the location, not of the content. */
  | { verify: false; reason: string };

const SHA256_HEX = /^(?:sha256:)?([0-9a-f]{64})$/i;

export const sha256Hex = (text: string): string => createHash("sha256").update(text).digest("hex");

/** What the request's `hash` asks for; RequestError when it is not a digest this runner can check. */
export function expectedDigest(field: string, hash: string, location: string): ExpectedDigest {
  const m = SHA256_HEX.exec(hash.trim());
  if (!m)
    throw new RequestError(
      field,
      hash,
      "is not a hash this runner can verify (expected the sha256 of the object: 64 hex digits, optionally " +
        "prefixed sha256:)",
    );
  const hex = m[1]!.toLowerCase();
  if (hex === sha256Hex(location))
    return {
      verify: false,
      reason:
        "it is the sha256 of the artifact's location (what studioml gives for an artifact it has no local copy " +
        "of), not of its content",
    };
  return { verify: true, sha256: hex };
}

/**
 * Passes `source` through, hashing it; at the end, when the digest differs from `sha256`, the
 * stream fails with mismatch(actual) instead of ending (the reader never sees a clean end).
 */
export function verifyingStream(source: Readable, sha256: string, mismatch: (actualHex: string) => Error): Readable {
  const hash = createHash("sha256");
  const check = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      const actual = hash.digest("hex");
      done(actual === sha256 ? null : mismatch(actual));
    },
  });
  source.on("error", (err) => check.destroy(err));
  return source.pipe(check);
}
