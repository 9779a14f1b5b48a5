// Object store for gs:// locations: streaming reads checked by length and CRC32C, resumable
// uploads in 8 MiB chunks (bounded memory) that become visible only when the last chunk lands;
// large objects into files as parallel ranged reads of one generation, and from files as
// parallel composite uploads.
// A request cannot bring Google credentials: every call is the runner's identity, made only where
// the caller's identity policy allows it.

import type { File } from "@google-cloud/storage";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { NotFoundError, PermanentError, RetryableError } from "../../errors.ts";
import {
  discard,
  type FileTransferOptions,
  type ObjectInfo,
  type ObjectStore,
  type StoreOptions,
} from "../object-store.ts";
import {
  DEFAULT_TRANSFER,
  ObjectChangedError,
  readRangesIntoPath,
  type TransferSettings,
  worthParallel,
} from "../parallel-ranges.ts";
import { counting } from "../file-transfer.ts";
import { writeStreamToFile } from "../growing-file.ts";
import { FastCrc32c } from "./crc32c.ts";
import { GcsClients, type GcsHandle } from "./gcs-clients.ts";
import { gcsFault, isAccessDenied, type GcsErrorContext } from "./gcs-errors.ts";
import { parseGcsLocation } from "./gcs-location.ts";

/** Resumable upload chunk: memory held by an upload is about one chunk. */
export const UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;
/** GCS composes at most 32 objects in one request. */
const MAX_COMPOSE_SOURCES = 32;
/** Resumable chunks are multiples of 256 KiB. */
const RESUMABLE_CHUNK_UNIT = 256 * 1024;
/** What the pieces of a composite upload buffer together (their resumable chunks). */
const COMPOSE_MEMORY_BYTES = 64 * 1024 * 1024;
/** Bytes buffered between a download and its reader. */
const READ_BUFFER_BYTES = 1024 * 1024;

type Opened = { file: (generation?: string) => File; handle: GcsHandle; context: (verb: string) => GcsErrorContext };

type GcsMetadata = {
  size?: string | number;
  updated?: string;
  generation?: string | number;
  etag?: string;
  crc32c?: string;
};

function infoOf(m: GcsMetadata): ObjectInfo {
  const sizeBytes = Number(m.size ?? 0);
  const modifiedMs = m.updated ? Date.parse(m.updated) : 0;
  const version = m.generation !== undefined ? String(m.generation) : m.etag || `${sizeBytes}-${modifiedMs}`;
  return { sizeBytes, modifiedMs, version };
}

const asBuffer = (chunk: unknown) => (Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));

export class GcsStore implements ObjectStore {
  constructor(
    private readonly env: Record<string, string | undefined> = process.env,
    private readonly options: StoreOptions = {},
    /** The clients of the configuration to use; without, clients of the default configuration of its own. */
    private readonly clients: GcsClients = new GcsClients({}),
    /** How large objects are read: parts in flight and their size. */
    private readonly transfer: TransferSettings = DEFAULT_TRANSFER,
  ) {}

  /** The bucket and key, once the identity policy allows the runner's identity there. */
  private place(location: string): { bucket: string; key: string } {
    const { bucket, key } = parseGcsLocation(location);
    const refusal = this.options.identity?.refusal({ scheme: "gs", bucket, key });
    if (refusal) {
      const field = this.options.field ?? "qualified";
      throw new PermanentError(
        `${field}: ${location} ${refusal} (a request cannot bring Google credentials: gs:// is always the ` +
          "runner's identity)",
        { field },
      );
    }
    return { bucket, key };
  }

  async head(location: string): Promise<ObjectInfo | undefined> {
    try {
      return await this.withAccount(location, "HEAD", async (o) =>
        infoOf((await o.file().getMetadata())[0] as GcsMetadata),
      );
    } catch (fault) {
      if (fault instanceof NotFoundError) return undefined;
      throw fault;
    }
  }

  /** The object's metadata and its generation (the version every read below is pinned to). */
  private async lookup(location: string, verb: string) {
    const { o, metadata } = await this.withAccount(location, verb, async (o) => ({
      o,
      metadata: (await o.file().getMetadata())[0] as GcsMetadata,
    }));
    const generation = metadata.generation !== undefined ? String(metadata.generation) : undefined;
    return { o, metadata, info: infoOf(metadata), generation };
  }

  /** Reads the generation just looked up, so the length checked is that of the bytes read. */
  async get(location: string): Promise<Readable> {
    const { o, info, generation } = await this.lookup(location, "GET");
    const ctx = o.context("GET");
    const source = o.file(generation).createReadStream({ validation: "crc32c" });
    async function* chunks(): AsyncGenerator<Buffer> {
      let received = 0;
      try {
        for await (const chunk of source) {
          const b = asBuffer(chunk);
          received += b.length;
          if (received > info.sizeBytes)
            throw new RetryableError(`${ctx.operation}: received more than the object's ${info.sizeBytes} bytes`);
          yield b;
        }
      } catch (err) {
        const fault = gcsFault(err, ctx);
        // The generation read was replaced between the lookup and the read: reading again will do.
        if (fault instanceof NotFoundError)
          throw new RetryableError(`${ctx.operation}: the object changed while it was being read`, {}, { cause: err });
        throw fault;
      } finally {
        source.destroy();
      }
      if (received !== info.sizeBytes) {
        throw new RetryableError(`${ctx.operation}: transfer truncated at ${received} of ${info.sizeBytes} bytes`);
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: READ_BUFFER_BYTES });
  }

  /**
   * The object into a file: a large one as parallel ranged reads of one generation, each written
   * at its offset (a replaced object is gone at that generation: the read fails instead of mixing
   * versions), and the whole file's CRC32C checked at the end, since ranges carry none of their own.
   */
  async getFile(location: string, path: string, options: FileTransferOptions = {}): Promise<void> {
    const { o, metadata, info, generation } = await this.lookup(location, "GET");
    if (generation === undefined || !worthParallel(info.sizeBytes, this.transfer)) {
      await writeStreamToFile(await this.get(location), path, options);
      return;
    }
    const ctx = o.context("GET");
    const file = o.file(generation);
    const changed = (cause: unknown) =>
      new ObjectChangedError(
        `${ctx.operation}: the object was replaced while it was being read; nothing of the partial read is used`,
        {},
        { cause },
      );
    async function* range(start: number, end: number, signal: AbortSignal): AsyncGenerator<Buffer> {
      const source = file.createReadStream({ start, end, validation: false });
      const stop = () => source.destroy(new Error("read abandoned"));
      signal.addEventListener("abort", stop, { once: true });
      try {
        for await (const chunk of source) yield asBuffer(chunk);
      } catch (err) {
        const fault = gcsFault(err, ctx);
        throw fault instanceof NotFoundError ? changed(err) : fault;
      } finally {
        signal.removeEventListener("abort", stop);
        source.destroy();
      }
    }
    await readRangesIntoPath(path, {
      ...this.transfer,
      totalBytes: info.sizeBytes,
      describe: ctx.operation,
      onBytes: options.onBytes,
      growing: options.growing,
      fetchRange: async (start, end, signal) => ({ body: Readable.from(range(start, end, signal)) }),
    });
    if (metadata.crc32c) {
      const crc = new FastCrc32c();
      for await (const chunk of createReadStream(path, { highWaterMark: READ_BUFFER_BYTES }))
        crc.update(chunk as Buffer);
      if (!crc.validate(metadata.crc32c)) {
        throw new RetryableError(
          `${ctx.operation}: CRC32C ${crc.toString()} of the bytes read is not the object's ${metadata.crc32c}`,
        );
      }
    }
  }

  /**
   * A resumable upload: the library sends UPLOAD_CHUNK_BYTES at a time and the object appears only
   * when the final chunk is accepted, so a failed body leaves the old object (or none) in place.
   * The library checks the CRC32C the server reports; the size is checked here.
   */
  async put(location: string, body: Readable): Promise<ObjectInfo> {
    try {
      return await this.send(location, body);
    } catch (err) {
      if (!body.readableEnded && !body.destroyed) await discard(body);
      throw err;
    }
  }

  /**
   * A file as the object. One of two parts or more goes as a parallel composite upload: the file's
   * pieces are uploaded as temporary objects side by side (resumable, each from its own slice of
   * the file), composed into the object in one request (GCS keeps the old object until then),
   * and removed, whatever happened. A file still being written is sent once it is whole.
   */
  async putFile(location: string, path: string, options: FileTransferOptions = {}): Promise<ObjectInfo> {
    if (options.growing) await options.growing.reach(Infinity);
    const sizeBytes = (await stat(path)).size;
    const pieces = Math.min(
      MAX_COMPOSE_SOURCES,
      this.transfer.concurrency,
      Math.floor(sizeBytes / this.transfer.partBytes),
    );
    const slice = (start: number, end: number) => {
      const source = createReadStream(path, { start, end, highWaterMark: READ_BUFFER_BYTES });
      const meter = counting(options.onBytes);
      source.on("error", (err) => meter.destroy(err));
      return source.pipe(meter);
    };
    if (pieces < 2) return this.put(location, slice(0, Math.max(0, sizeBytes - 1)));
    const { bucket, key } = this.place(location);
    const pieceBytes = Math.ceil(sizeBytes / pieces);
    // Resumable chunks are buffered: together the pieces hold at most COMPOSE_MEMORY_BYTES.
    const chunkBytes = Math.max(
      RESUMABLE_CHUNK_UNIT,
      Math.min(
        UPLOAD_CHUNK_BYTES,
        Math.floor(COMPOSE_MEMORY_BYTES / pieces / RESUMABLE_CHUNK_UNIT) * RESUMABLE_CHUNK_UNIT,
      ),
    );
    const tag = crypto.randomUUID();
    const names = Array.from({ length: pieces }, (_, i) => `${key}.studio-runner-piece-${tag}-${i}`);
    try {
      // Every piece settles before anything is removed: none may land after the clean-up.
      const sent = await Promise.allSettled(
        names.map((name, i) => {
          const end = Math.min(sizeBytes, (i + 1) * pieceBytes) - 1;
          return this.send(`gs://${bucket}/${name}`, slice(i * pieceBytes, end), chunkBytes);
        }),
      );
      const failed = sent.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const info = await this.withAccount(location, "COMPOSE", async (o) => {
        const [composed, answer] = await o.handle.storage.bucket(bucket).combine(names, key);
        const metadata = (answer as GcsMetadata | undefined)?.size !== undefined ? answer : composed.metadata;
        return infoOf(metadata as GcsMetadata);
      });
      if (info.sizeBytes !== sizeBytes) {
        throw new RetryableError(`COMPOSE ${location}: composed ${info.sizeBytes} bytes of a ${sizeBytes}-byte file`);
      }
      return info;
    } finally {
      await Promise.all(names.map((name) => this.delete(`gs://${bucket}/${name}`).catch(() => undefined)));
    }
  }

  private async send(location: string, body: Readable, chunkBytes = UPLOAD_CHUNK_BYTES): Promise<ObjectInfo> {
    // The body can be sent once: with several identities and none known for the bucket, one is
    // chosen first by a metadata read it may answer.
    const { bucket, key } = this.place(location);
    const handles = this.clients.clientsFor(bucket, this.env);
    const o =
      handles.length === 1 || this.clients.isRemembered(bucket)
        ? this.open(location, bucket, key, handles[0]!)
        : await this.withAccount(location, "PUT", async (o) => {
            try {
              await o.file().getMetadata();
            } catch (err) {
              if (!(gcsFault(err, o.context("PUT")) instanceof NotFoundError)) throw err;
            }
            return o;
          });
    const ctx = o.context("PUT");
    try {
      await o.handle.beforeUpload?.();
    } catch (err) {
      throw gcsFault(err, ctx);
    }
    const file = o.file();
    let sentBytes = 0;
    const counter = new Transform({
      transform(chunk, _encoding, done) {
        const b = asBuffer(chunk);
        sentBytes += b.length;
        done(null, b);
      },
    });
    const upload = file.createWriteStream({
      resumable: true,
      chunkSize: chunkBytes,
      validation: "crc32c",
      metadata: { contentType: "application/octet-stream" },
    });
    try {
      await pipeline(body, counter, upload);
    } catch (err) {
      body.destroy();
      throw gcsFault(err, ctx);
    }
    const info = infoOf(file.metadata as GcsMetadata);
    if (info.sizeBytes !== sentBytes) {
      throw new RetryableError(`${ctx.operation}: sent ${sentBytes} bytes but the server stored ${info.sizeBytes}`);
    }
    return info;
  }

  async delete(location: string): Promise<void> {
    try {
      await this.withAccount(location, "DELETE", async (o) => {
        await o.file().delete();
      });
    } catch (fault) {
      if (!(fault instanceof NotFoundError)) throw fault;
    }
  }

  /**
   * Runs `call` as each identity in turn (the one the bucket last accepted first) until one is
   * not refused; remembers it for the bucket. Throws the call's fault, or, when every identity
   * was refused, one naming them all.
   */
  private async withAccount<T>(location: string, verb: string, call: (o: Opened) => Promise<T>): Promise<T> {
    const { bucket, key } = this.place(location);
    const handles = this.clients.clientsFor(bucket, this.env);
    const refused: string[] = [];
    for (const [i, handle] of handles.entries()) {
      const o = this.open(location, bucket, key, handle);
      try {
        const result = await call(o);
        this.clients.remember(bucket, handle);
        return result;
      } catch (err) {
        const last = i === handles.length - 1;
        if (!isAccessDenied(err) || (last && !refused.length)) {
          const fault = gcsFault(err, o.context(verb));
          if (fault instanceof NotFoundError) this.clients.remember(bucket, handle);
          throw fault;
        }
        refused.push(handle.identity);
        if (last) {
          const all = { ...o.context(verb), identity: `every identity it has (${refused.join("; ")})` };
          throw gcsFault(err, all);
        }
      }
    }
    throw new Error("unreachable: no GCS client");
  }

  private open(location: string, bucket: string, key: string, handle: GcsHandle): Opened {
    const b = handle.storage.bucket(bucket);
    return {
      handle,
      file: (generation) => b.file(key, generation !== undefined ? { generation } : {}),
      context: (verb) => ({
        operation: `${verb} ${location}`,
        location,
        bucket,
        server: handle.server,
        identity: handle.identity,
      }),
    };
  }
}
