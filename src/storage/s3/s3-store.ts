// Object store for s3:// locations (AWS S3 and self-hosted S3 servers): streaming reads that
// resume and check their length, multipart uploads with bounded memory that are never half-visible.

import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  type BucketLocationConstraint,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { Readable } from "node:stream";
import { NotFoundError, PermanentError, RequestError } from "../../errors.ts";
import type { AwsCredentials } from "../../request/model.ts";
import { exponentialBackoff, realSleep } from "../../retry/backoff.ts";
import { discard, type ObjectInfo, type ObjectStore, type StoreOptions } from "../object-store.ts";
import { s3ClientFor, type S3Handle } from "./s3-clients.ts";
import { s3Fault, type S3ErrorContext } from "./s3-errors.ts";
import { parseS3Location } from "../../request/s3-location.ts";
import { resumableReadStream, type Body } from "./s3-read-stream.ts";
import { describeServer, parseEndpoint, resolveTarget, type S3Target } from "./s3-target.ts";
import { noteTransferredBytes } from "./transfer-memory.ts";
import { dropBody } from "../byte-body.ts";
import {
  DEFAULT_TRANSFER,
  ObjectChangedError,
  parallelRangeStream,
  type TransferSettings,
  worthParallel,
} from "../parallel-ranges.ts";

/** S3's smallest multipart part (all but the last). Memory held by an upload is about (parts in flight + 1) parts. */
const MIN_PART_BYTES = 5 * 1024 * 1024;
/** Reads of an uploaded object's metadata before a mismatch counts (back-off 100, 200, 400, 800 ms). */
const VERIFY_ATTEMPTS = 5;
const VERIFY_BACKOFF = exponentialBackoff({ initialMs: 100 });

/** Bytes buffered between the body being uploaded and the part chunker. */
const BODY_BUFFER_BYTES = 1024 * 1024;

type Opened = { target: S3Target; handle: S3Handle; context: (verb: string) => S3ErrorContext };

/** Counts the bytes that pass, so an upload can be checked against what was stored. */
function counting(body: Readable): { stream: Readable; bytes: () => number } {
  let bytes = 0;
  async function* pass() {
    for await (const chunk of body) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      bytes += b.length;
      noteTransferredBytes(b.length);
      yield b;
    }
  }
  return { stream: Readable.from(pass(), { objectMode: false, highWaterMark: BODY_BUFFER_BYTES }), bytes: () => bytes };
}

/** An object body as the read stream takes it (the fetch handler gives web streams). */
function bodyOf(body: unknown): Body {
  if (body instanceof Readable) return body;
  if (body && typeof (body as ReadableStream).getReader === "function") return body as ReadableStream<Uint8Array>;
  throw new Error("the server sent no object body");
}

const knownBuckets = new Set<string>();

export class S3Store implements ObjectStore {
  private readonly aws?: AwsCredentials;

  constructor(
    private readonly options: StoreOptions = {},
    private readonly env: Record<string, string | undefined> = process.env,
    /** How large objects are read: parts in flight and their size. */
    private readonly transfer: TransferSettings = DEFAULT_TRANSFER,
  ) {
    this.aws = options.credentials?.aws;
  }

  async head(location: string): Promise<ObjectInfo | undefined> {
    const o = await this.open(location);
    try {
      const r = await o.handle.client.send(new HeadObjectCommand({ Bucket: o.target.bucket, Key: o.target.key }));
      return infoOf(r.ContentLength, r.LastModified, r.ETag);
    } catch (err) {
      const fault = s3Fault(err, o.context("HEAD"));
      if (!(fault instanceof NotFoundError)) throw fault;
    }
    // HEAD has no body to tell a missing object from a missing bucket: ask about the bucket.
    await this.checkBucket(o);
    return undefined;
  }

  async get(location: string, known?: ObjectInfo): Promise<Readable> {
    const o = await this.open(location);
    const { bucket: Bucket, key: Key } = o.target;
    const ctx = o.context("GET");
    if (this.transfer.concurrency > 1) {
      // Large objects as parallel ranged GETs of the version HEAD saw (If-Match: its ETag): the
      // caller's head() when it passes one, else a HEAD of its own. A HEAD that fails says less than
      // a GET (no error body): the plain GET below reports it.
      const head =
        known && isEtag(known.version)
          ? { ETag: known.version, ContentLength: known.sizeBytes }
          : await o.handle.client.send(new HeadObjectCommand({ Bucket, Key })).catch(() => undefined);
      const etag = head?.ETag;
      const changed = (cause?: unknown) =>
        new ObjectChangedError(
          `GET ${location}: the object was replaced while it was being read (ETag ${etag} is no longer current); ` +
            "nothing of the partial read is used",
          {},
          { cause },
        );
      if (etag && worthParallel(head?.ContentLength, this.transfer)) {
        return parallelRangeStream({
          ...this.transfer,
          totalBytes: head.ContentLength,
          describe: `GET ${location}`,
          onBytes: noteTransferredBytes,
          fetchRange: async (start, end, signal) => {
            try {
              const r = await o.handle.bodies.send(
                new GetObjectCommand({ Bucket, Key, Range: `bytes=${start}-${end}`, IfMatch: etag }),
                { abortSignal: signal },
              );
              // Servers that ignore If-Match (s3rver) still say which version they sent.
              if (r.ETag !== undefined && r.ETag !== etag) {
                dropBody(bodyOf(r.Body));
                throw changed();
              }
              return bodyOf(r.Body);
            } catch (err) {
              if (err instanceof ObjectChangedError) throw err;
              const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
              if (e.name === "PreconditionFailed" || e.$metadata?.httpStatusCode === 412) throw changed(err);
              throw s3Fault(err, ctx);
            }
          },
        });
      }
    }
    let first;
    try {
      first = await o.handle.bodies.send(new GetObjectCommand({ Bucket, Key }));
    } catch (err) {
      throw s3Fault(err, ctx);
    }
    const etag = first.ETag;
    return resumableReadStream({
      first: bodyOf(first.Body),
      totalBytes: first.ContentLength,
      describe: `GET ${location}`,
      reopen: async (offset) => {
        try {
          const r = await o.handle.bodies.send(
            new GetObjectCommand({ Bucket, Key, Range: `bytes=${offset}-`, IfMatch: etag }),
          );
          return bodyOf(r.Body);
        } catch (err) {
          throw s3Fault(err, ctx);
        }
      },
    });
  }

  async put(location: string, body: Readable): Promise<ObjectInfo> {
    let o: Opened;
    try {
      o = await this.open(location);
    } catch (err) {
      await discard(body);
      throw err;
    }
    const ctx = o.context("PUT");
    const counted = counting(body);
    const upload = new Upload({
      client: o.handle.bodies,
      params: { Bucket: o.target.bucket, Key: o.target.key, Body: counted.stream },
      // Parts in flight and their size: the same knobs as parallel reads.
      partSize: Math.max(MIN_PART_BYTES, this.transfer.partBytes),
      queueSize: Math.max(1, this.transfer.concurrency),
      leavePartsOnError: false,
    });
    let etag: string | undefined;
    try {
      etag = (await upload.done()).ETag;
    } catch (err) {
      body.destroy();
      counted.stream.destroy();
      await this.abortParts(o, upload.uploadId);
      throw s3Fault(err, ctx);
    }
    return this.verifyStored(location, counted.bytes(), etag, ctx);
  }

  /**
   * The stored object must be the one just sent: its size, and its ETag when the server gave one.
   * AWS S3 reads its own writes at once; some self-hosted servers answer HEAD from metadata they
   * are still writing, so a mismatch is asked again a few times before it counts.
   */
  private async verifyStored(
    location: string,
    sentBytes: number,
    etag: string | undefined,
    ctx: S3ErrorContext,
  ): Promise<ObjectInfo> {
    const bare = (tag: string | undefined) => tag?.replace(/"/g, "").toLowerCase();
    let info: ObjectInfo | undefined;
    for (let attempt = 0; attempt < VERIFY_ATTEMPTS; attempt++) {
      if (attempt > 0) await realSleep(VERIFY_BACKOFF(attempt));
      info = await this.head(location);
      if (info && info.sizeBytes === sentBytes && (!etag || bare(info.version) === bare(etag))) return info;
    }
    // The right size under another ETag spelling (or a same-size concurrent write) is accepted.
    if (info && info.sizeBytes === sentBytes) return info;
    const seen = info ? `${info.sizeBytes} bytes, ETag ${info.version}` : "no object";
    throw s3Fault(new Error(`sent ${sentBytes} bytes (ETag ${etag ?? "?"}) but the server reports ${seen}`), ctx);
  }

  async delete(location: string): Promise<void> {
    const o = await this.open(location);
    try {
      await o.handle.client.send(new DeleteObjectCommand({ Bucket: o.target.bucket, Key: o.target.key }));
    } catch (err) {
      const fault = s3Fault(err, o.context("DELETE"));
      if (!(fault instanceof NotFoundError)) throw fault;
    }
  }

  /** Create the location's bucket when it does not exist yet (what the studioml client does). */
  async ensureBucket(location: string): Promise<void> {
    const o = await this.open(location, { keyRequired: false });
    const { bucket: Bucket, region } = o.target;
    try {
      await o.handle.client.send(new HeadBucketCommand({ Bucket }));
      return;
    } catch (err) {
      const fault = s3Fault(err, o.context("HEAD bucket"));
      if (!(fault instanceof NotFoundError)) throw fault;
    }
    // AWS wants the region spelled out outside us-east-1; self-hosted servers do not care.
    const onAws = !o.target.forcePathStyle;
    const configuration =
      onAws && region !== "us-east-1" ? { LocationConstraint: region as BucketLocationConstraint } : undefined;
    try {
      await o.handle.client.send(new CreateBucketCommand({ Bucket, CreateBucketConfiguration: configuration }));
    } catch (err) {
      const code = (err as Error).name;
      if (code !== "BucketAlreadyOwnedByYou" && code !== "BucketAlreadyExists")
        throw s3Fault(err, o.context("CREATE bucket"));
    }
  }

  private async open(location: string, opts: { keyRequired?: boolean } = {}): Promise<Opened> {
    const parsed = parseS3Location(location, parseEndpoint(this.options.endpoint).host);
    if (opts.keyRequired !== false && !parsed.key)
      throw new RequestError("qualified", location, "names a bucket but no object key");
    const target = resolveTarget(
      parsed,
      { endpoint: this.options.endpoint, credentialsRegion: this.aws?.region },
      this.env,
    );
    if (!this.aws) {
      // No credentials of the request's own: the runner's identity only where the policy allows it.
      const host = parsed.host ?? parseEndpoint(this.options.endpoint).host;
      const refusal = this.options.identity?.refusal({ scheme: "s3", host, bucket: parsed.bucket, key: parsed.key });
      if (refusal) {
        const field = this.options.field ?? "qualified";
        throw new PermanentError(`${field}: ${location} ${refusal}`, { field });
      }
    }
    const handle = await s3ClientFor(target, this.aws ?? "runner");
    const server = describeServer(target);
    return {
      target,
      handle,
      context: (verb) => ({
        operation: `${verb} ${location}`,
        location,
        bucket: target.bucket,
        server,
        identity: handle.identity,
      }),
    };
  }

  /** NoSuchBucket as a clear permanent fault; other answers (403 without ListBucket …) say nothing. */
  private async checkBucket(o: Opened): Promise<void> {
    const id = `${o.target.endpoint}\0${o.target.bucket}`;
    if (knownBuckets.has(id)) return;
    try {
      await o.handle.client.send(new HeadBucketCommand({ Bucket: o.target.bucket }));
      knownBuckets.add(id);
    } catch (err) {
      const fault = s3Fault(err, o.context("HEAD bucket"));
      if (fault instanceof NotFoundError)
        throw s3Fault(Object.assign(new Error("bucket missing"), { name: "NoSuchBucket" }), o.context("HEAD"));
    }
  }

  /** lib-storage aborts a failed multipart upload itself; this covers an abort that failed too. */
  private async abortParts(o: Opened, uploadId: string | undefined): Promise<void> {
    if (!uploadId) return;
    await o.handle.client
      .send(new AbortMultipartUploadCommand({ Bucket: o.target.bucket, Key: o.target.key, UploadId: uploadId }))
      .catch(() => undefined);
  }
}

/** Whether an ObjectInfo's version is an ETag (S3 quotes them), not the size-and-time stand-in of infoOf. */
const isEtag = (version: string) => /^(W\/)?".*"$/.test(version);

function infoOf(sizeBytes: number | undefined, modified: Date | undefined, etag: string | undefined): ObjectInfo {
  const size = sizeBytes ?? 0;
  const modifiedMs = modified?.getTime() ?? 0;
  return { sizeBytes: size, modifiedMs, version: etag || `${size}-${modifiedMs}` };
}
