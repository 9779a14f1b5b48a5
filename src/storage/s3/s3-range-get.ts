// Ranged GETs of one pinned S3 object version, for parallel downloads: If-Match on the ETag, and
// each answer's own ETag checked too (servers that ignore If-Match still say which version they
// sent), so a replaced object fails as ObjectChangedError instead of mixing two versions.

import { GetObjectCommand } from "@aws-sdk/client-s3";
import { ObjectChangedError, type RangeBody, type RangeReply } from "../parallel-ranges.ts";
import { dropBody } from "../byte-body.ts";
import type { S3Handle } from "./s3-clients.ts";
import { s3Fault, type S3ErrorContext } from "./s3-errors.ts";

export type PinnedObject = { bucket: string; key: string; etag: string; location: string };

/** Reads bytes [start, end] of exactly the pinned version, or throws ObjectChangedError / a typed fault. */
export function rangeReader(
  handle: S3Handle,
  object: PinnedObject,
  ctx: S3ErrorContext,
): (start: number, end: number, signal: AbortSignal) => Promise<RangeReply> {
  const { bucket: Bucket, key: Key, etag } = object;
  const changed = (cause?: unknown) =>
    new ObjectChangedError(
      `GET ${object.location}: the object was replaced while it was being read (ETag ${etag} is no longer current); ` +
        "nothing of the partial read is used",
      {},
      { cause },
    );
  const isChange = (err: unknown) => {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    return e.name === "PreconditionFailed" || e.$metadata?.httpStatusCode === 412;
  };
  return async (start, end, signal) => {
    try {
      const r = await handle.bodies.send(
        new GetObjectCommand({ Bucket, Key, Range: `bytes=${start}-${end}`, IfMatch: etag }),
        { abortSignal: signal },
      );
      const body = r.Body as unknown as RangeBody;
      if (r.ETag !== undefined && r.ETag !== etag) {
        dropBody(body);
        throw changed();
      }
      return { body, lengthBytes: r.ContentLength };
    } catch (err) {
      if (err instanceof ObjectChangedError) throw err;
      if (isChange(err)) throw changed(err);
      throw s3Fault(err, ctx);
    }
  };
}
