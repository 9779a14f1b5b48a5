// Object store for s3:// locations (AWS S3 and self-hosted S3 servers): streaming reads that
// resume and check their length, multipart uploads with bounded memory that are never half-visible;
// large objects to and from files as parallel ranged GETs and parallel parts.

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type BucketLocationConstraint,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { NotFoundError, PermanentError, RequestError } from "../../errors.ts";
import type { AwsCredentials } from "../../request/model.ts";
import { exponentialBackoff, realSleep } from "../../retry/backoff.ts";
import {
  discard,
  type FileTransferOptions,
  type ObjectInfo,
  type ObjectStore,
  type StoreOptions,
  type UploadSource,
} from "../object-store.ts";
import { s3ClientFor, type S3Handle } from "./s3-clients.ts";
import { rangeReader } from "./s3-range-get.ts";
import { s3Fault, type S3ErrorContext } from "./s3-errors.ts";
import { parseS3Location } from "../../request/s3-location.ts";
import { resumableReadStream, type Body } from "./s3-read-stream.ts";
import { describeServer, parseEndpoint, resolveTarget, type S3Target } from "./s3-target.ts";
import { GrowingFile, writeStreamToFile } from "../growing-file.ts";
import { DEFAULT_TRANSFER, readRangesIntoPath, type TransferSettings, worthParallel } from "../parallel-ranges.ts";
import { runWorkers } from "../worker-pool.ts";

/** S3's smallest multipart part (all but the last). Memory held by an upload is about (parts in flight + 1) parts. */
const MIN_PART_BYTES = 5 * 1024 * 1024;
/** Parts of a streamed upload in flight at once (each held in memory). */
const STREAM_PARTS_IN_FLIGHT = 4;
/** S3's most parts in one multipart upload, and its largest part. */
const MAX_PARTS = 10_000;
const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
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

  /** One connection, resumed where it broke (at the same ETag); large objects go through getFile. */
  async get(location: string): Promise<Readable> {
    const o = await this.open(location);
    const { bucket: Bucket, key: Key } = o.target;
    const ctx = o.context("GET");
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

  /**
   * The object into a file: a large one as parallel ranged GETs of the version HEAD saw (If-Match
   * on its ETag; the caller's head() when it passes one), each written at its offset; a small one,
   * or one whose HEAD failed (the GET then says why, with an error body), over one connection.
   */
  async getFile(location: string, path: string, options: FileTransferOptions = {}): Promise<void> {
    const o = await this.open(location);
    const { bucket: Bucket, key: Key } = o.target;
    const ctx = o.context("GET");
    const known = options.known;
    const head =
      known && isEtag(known.version)
        ? { ETag: known.version, ContentLength: known.sizeBytes }
        : await o.handle.client.send(new HeadObjectCommand({ Bucket, Key })).catch(() => undefined);
    const etag = head?.ETag;
    if (!etag || !worthParallel(head?.ContentLength, this.transfer)) {
      await writeStreamToFile(await this.get(location), path, options);
      return;
    }
    await readRangesIntoPath(path, {
      ...this.transfer,
      totalBytes: head.ContentLength,
      describe: `GET ${location}`,
      onBytes: options.onBytes,
      growing: options.growing,
      fetchRange: rangeReader(o.handle, { bucket: Bucket, key: Key, etag, location }, ctx),
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
      // A stream's parts are buffered in memory: few and small (large objects go through putFile).
      partSize: MIN_PART_BYTES,
      queueSize: Math.max(1, Math.min(STREAM_PARTS_IN_FLIGHT, this.transfer.concurrency)),
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
   * A file as the object: one PUT when it fits one part, else a multipart upload with
   * `concurrency` parts in flight, each sent from a slice of the file (the runtime streams it from
   * disk: nothing of it is buffered here, and a retried part is read again). With
   * `options.growing` the file is still being written: each part goes once it is whole. A part
   * that fails for good aborts the upload, so neither an object nor an open upload is left behind.
   */
  async putFile(location: string, path: string, options: FileTransferOptions = {}): Promise<ObjectInfo> {
    const growing = options.growing ?? wholeFile((await stat(path)).size);
    // A fresh handle for every body: one made earlier would keep the size the file had then.
    return this.putParts(
      location,
      { growing, body: (start, end) => Bun.file(path).slice(start, end) },
      options.onBytes,
    );
  }

  /** Bytes laid out before they are sent (a tar over its files): parts side by side, no local copy. */
  async putSource(
    location: string,
    source: UploadSource,
    options: Pick<FileTransferOptions, "onBytes"> = {},
  ): Promise<ObjectInfo> {
    const parts: PartSource = { growing: wholeFile(source.sizeBytes), body: source.body, check: source.check };
    return this.putParts(location, parts, options.onBytes);
  }

  private async putParts(location: string, source: PartSource, onBytes?: (bytes: number) => void): Promise<ObjectInfo> {
    const o = await this.open(location);
    const ctx = o.context("PUT");
    const { bucket: Bucket, key: Key } = o.target;
    const partBytes = Math.max(MIN_PART_BYTES, this.transfer.partBytes);
    const first = await source.growing.reach(partBytes + 1);
    if (first.complete && first.availableBytes <= partBytes) {
      const sizeBytes = first.availableBytes;
      let etag: string | undefined;
      try {
        source.check?.();
        const Body = source.body(0, sizeBytes);
        etag = (await o.handle.bodies.send(new PutObjectCommand({ Bucket, Key, Body, ContentLength: sizeBytes }))).ETag;
      } catch (err) {
        throw s3Fault(err, ctx);
      }
      onBytes?.(sizeBytes);
      return this.verifyStored(location, sizeBytes, etag, ctx);
    }
    const sent = await this.partsFrom(o, source, partBytes, onBytes);
    return this.verifyStored(location, sent.sizeBytes, sent.etag, ctx);
  }

  private async partsFrom(
    o: Opened,
    source: PartSource,
    partBytes: number,
    onBytes?: (bytes: number) => void,
  ): Promise<{ sizeBytes: number; etag?: string }> {
    const { bucket: Bucket, key: Key } = o.target;
    const { growing } = source;
    let uploadId: string | undefined;
    try {
      uploadId = (await o.handle.client.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId;
      if (!uploadId) throw new Error("the server started a multipart upload without an UploadId");
      const UploadId = uploadId;
      const parts: CompletedPart[] = [];
      let nextIndex = 0;
      let nextStart = 0;
      await runWorkers(this.transfer.concurrency, async (signal) => {
        const index = nextIndex++;
        const start = nextStart;
        const size = partSizeAt(index, partBytes);
        nextStart += size;
        const state = await growing.reach(start + size, signal);
        const end = Math.min(start + size, state.availableBytes);
        if (end <= start) return false; // the bytes ended before this part
        if (index >= MAX_PARTS) throw new PermanentError(`more than ${MAX_PARTS} parts: the file is too large`);
        const sent = await o.handle.bodies.send(
          new UploadPartCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber: index + 1,
            Body: source.body(start, end),
            ContentLength: end - start,
          }),
          { abortSignal: signal },
        );
        parts[index] = { PartNumber: index + 1, ETag: sent.ETag };
        onBytes?.(end - start);
        return true;
      });
      const { availableBytes: sizeBytes } = await growing.reach(Infinity);
      source.check?.();
      const done = await o.handle.client.send(
        new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }),
      );
      return { sizeBytes, etag: done.ETag };
    } catch (err) {
      await this.abortParts(o, uploadId);
      // The file's writer failed (a packer, a full disk): its own fault, not the server's.
      if (growing.isWritersFault(err)) throw err;
      throw s3Fault(err, o.context("PUT"));
    }
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

/**
 * Bytes of part `index`: `partBytes` for the first 1,000, then twice as many for each further
 * 1,000 (S3 takes at most 10,000 parts, of at most 5 GiB each), so a file of unknown final size
 * still fits: 16 MiB parts reach 16 TiB.
 */
function partSizeAt(index: number, partBytes: number): number {
  return Math.min(MAX_PART_BYTES, partBytes * 2 ** Math.floor(index / 1000));
}

/** A file already whole, for code that also follows files still being written. */
/** What parts are cut from: how far the bytes reach (a file may still be written), and any range as a body. */
type PartSource = {
  growing: GrowingFile;
  body(start: number, end: number): Blob | ReadableStream<Uint8Array>;
  check?(): void;
};

function wholeFile(sizeBytes: number): GrowingFile {
  const whole = new GrowingFile();
  whole.finish(sizeBytes);
  return whole;
}

/** Whether an ObjectInfo's version is an ETag (S3 quotes them), not the size-and-time stand-in of infoOf. */
const isEtag = (version: string) => /^(W\/)?".*"$/.test(version);

function infoOf(sizeBytes: number | undefined, modified: Date | undefined, etag: string | undefined): ObjectInfo {
  const size = sizeBytes ?? 0;
  const modifiedMs = modified?.getTime() ?? 0;
  return { sizeBytes: size, modifiedMs, version: etag || `${size}-${modifiedMs}` };
}
