// Local cache of immutable objects, keyed by location and object version: each is downloaded
// once, shared by concurrent attempts, and the least recently used are removed over the size bound.
// When the caller expects a sha256 (the artifact's `hash`), a download is kept only when its bytes
// match, and a cached copy is checked again as it is read (a mismatched copy is removed).

import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { errorMessage, RetryableError } from "../errors.ts";
import { verifyingStream } from "./content-digest.ts";
import type { ObjectInfo, ObjectStore } from "./object-store.ts";

/** Bytes buffered between a download being cached and its reader. */
const TEE_BUFFER_BYTES = 1024 * 1024;

export type CacheReadOptions = {
  track?: (download: Readable) => Readable;
  /** The sha256 (hex) the object's bytes must have; a mismatch is mismatch(actual), and nothing is kept. */
  sha256?: string;
  mismatch?: (actualHex: string) => Error;
  /** What head() said of the object (its size and version), handed to the store's get(). */
  known?: ObjectInfo;
};

export class ArtifactCache {
  private readonly downloads = new Map<string, Promise<string>>();

  constructor(
    readonly root: string,
    readonly maxBytes: number,
  ) {}

  static keyOf(location: string, version: string): string {
    return new Bun.CryptoHasher("sha256").update(`${location}\0${version}`).digest("hex");
  }

  /**
   * Path of a local copy of the object; `hit` says whether it was already there. Concurrent calls
   * for the same location and version share one download (whose progress `track` may follow).
   */
  async fetch(
    store: ObjectStore,
    location: string,
    version: string,
    options: CacheReadOptions = {},
  ): Promise<{ path: string; hit: boolean }> {
    const key = ArtifactCache.keyOf(location, version);
    const path = join(this.root, key);
    const inFlight = this.downloads.get(key);
    if (inFlight) return { path: await this.checked(await inFlight, options), hit: false };
    if (await this.touchIfCached(path)) return { path: await this.checked(path, options), hit: true };
    let pending = this.downloads.get(key); // another caller may have started it meanwhile
    if (!pending) {
      pending = this.download(store, location, path, options).finally(() => this.downloads.delete(key));
      this.downloads.set(key, pending);
      return { path: await pending, hit: false };
    }
    return { path: await this.checked(await pending, options), hit: false };
  }

  /** A cached file whose bytes were not checked by this caller: hashed now; a mismatch removes it. */
  private async checked(path: string, options: CacheReadOptions): Promise<string> {
    if (!options.sha256) return path;
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    const actual = hash.digest("hex");
    if (actual === options.sha256) return path;
    await rm(path, { force: true });
    throw mismatchOf(options, actual);
  }

  /** A cached file as a stream, checked as it is read when a sha256 is expected (a mismatch removes it). */
  private cachedStream(path: string, options: CacheReadOptions): { stream: Readable; failure: () => unknown } {
    const plain = createReadStream(path);
    if (!options.sha256) return { stream: plain, failure: () => undefined };
    let fault: Error | undefined;
    const stream = verifyingStream(plain, options.sha256, (actual) => {
      fault = mismatchOf(options, actual);
      void rm(path, { force: true }).catch(() => undefined);
      return fault;
    });
    return { stream, failure: () => fault };
  }

  /**
   * The object as a stream, through the cache: a hit reads the cached copy; a miss hands the
   * download to the reader while writing it to the cache, so the reader (an unpacker) works
   * while the bytes arrive instead of after. The copy is kept only once the whole object has
   * passed: call finish() after reading (it reads what the reader left). failure() is the
   * download's own fault, when it had one, so a broken transfer is not mistaken for a bad archive.
   */
  async read(
    store: ObjectStore,
    location: string,
    version: string,
    options: CacheReadOptions = {},
  ): Promise<{ stream: Readable; hit: boolean; finish: () => Promise<void>; failure: () => unknown }> {
    const key = ArtifactCache.keyOf(location, version);
    const path = join(this.root, key);
    const finishNothing = async () => undefined;
    const inFlight = this.downloads.get(key);
    if (inFlight) {
      const ready = await inFlight.catch(() => undefined);
      if (ready) return { ...this.cachedStream(ready, options), hit: false, finish: finishNothing };
      return {
        stream: createReadStream((await this.fetch(store, location, version, options)).path),
        hit: false,
        finish: finishNothing,
        failure: () => undefined,
      };
    }
    if (await this.touchIfCached(path))
      return { ...this.cachedStream(path, options), hit: true, finish: finishNothing };
    await mkdir(this.root, { recursive: true });
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
    let source: Readable;
    try {
      source = await store.get(location, options.known);
    } catch (err) {
      throw downloadFault(location, err);
    }
    const tracked = options.track ? options.track(source) : source;
    let fault: unknown;
    let settle!: { ok: (path: string) => void; fail: (err: unknown) => void };
    const stored = new Promise<string>((ok, fail) => (settle = { ok, fail }));
    stored.catch(() => undefined);
    this.downloads.set(key, stored);
    const self = this;
    async function* tee(): AsyncGenerator<Buffer> {
      const file = await open(tmp, "w");
      const hash = options.sha256 ? createHash("sha256") : undefined;
      let kept = false;
      try {
        try {
          for await (const chunk of tracked) {
            const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
            hash?.update(bytes);
            await file.write(bytes);
            yield bytes;
          }
        } catch (err) {
          fault = downloadFault(location, err);
          throw fault;
        }
        const actual = hash?.digest("hex");
        if (actual !== undefined && actual !== options.sha256) {
          // Not kept, and the reader's stream fails instead of ending: nothing of it is used.
          fault = mismatchOf(options, actual);
          throw fault;
        }
        await file.close();
        await rename(tmp, path);
        kept = true;
        settle.ok(path);
        self.evict(path).catch(() => undefined);
      } finally {
        if (!kept) {
          await file.close().catch(() => undefined);
          await rm(tmp, { force: true });
          settle.fail(fault ?? new RetryableError(`download of ${location} was not read to its end`));
        }
        self.downloads.delete(key);
      }
    }
    const stream = Readable.from(tee(), { objectMode: false, highWaterMark: TEE_BUFFER_BYTES });
    const finish = async () => {
      if (!stream.readableEnded && !stream.destroyed) {
        await new Promise<void>((resolve) => {
          stream.once("end", resolve);
          stream.once("close", resolve);
          stream.once("error", () => resolve());
          stream.resume();
        });
      }
      await stored;
    };
    return { stream, hit: false, finish, failure: () => fault };
  }

  private async download(
    store: ObjectStore,
    location: string,
    path: string,
    options: CacheReadOptions,
  ): Promise<string> {
    await mkdir(this.root, { recursive: true });
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
    try {
      const source = await store.get(location, options.known);
      const tracked = options.track ? options.track(source) : source;
      let mismatch: Error | undefined;
      const checked = options.sha256
        ? verifyingStream(tracked, options.sha256, (actual) => (mismatch = mismatchOf(options, actual)))
        : tracked;
      await pipeline(checked, createWriteStream(tmp)).catch((err) => {
        throw mismatch ?? err;
      });
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw downloadFault(location, err);
    }
    await this.evict(path).catch(() => undefined);
    return path;
  }

  /** Whether the object is cached; a hit counts as a use (LRU). */
  private async touchIfCached(path: string): Promise<boolean> {
    try {
      await stat(path);
    } catch {
      return false;
    }
    const now = new Date();
    await utimes(path, now, now).catch(() => undefined);
    return true;
  }

  /** Keep the cache under maxBytes, oldest use first, never removing `keep`. */
  private async evict(keep: string): Promise<void> {
    const names = (await readdir(this.root)).filter((n) => !n.endsWith(".partial"));
    const files = [];
    for (const n of names) {
      const s = await stat(join(this.root, n)).catch(() => undefined);
      if (s?.isFile()) files.push({ path: join(this.root, n), size: s.size, used: s.mtimeMs });
    }
    let total = files.reduce((sum, f) => sum + f.size, 0);
    for (const f of files.sort((a, b) => a.used - b.used)) {
      if (total <= this.maxBytes) break;
      if (f.path === keep || this.downloads.has(f.path.split("/").pop()!)) continue;
      await rm(f.path, { force: true });
      total -= f.size;
    }
  }
}

function mismatchOf(options: CacheReadOptions, actualHex: string): Error {
  return (
    options.mismatch?.(actualHex) ?? new Error(`content sha256 ${actualHex} is not the expected ${options.sha256}`)
  );
}

/** A storage fault as it was (already typed), else a retryable download fault naming the location. */
function downloadFault(location: string, err: unknown): Error {
  if (err instanceof Error && "retryable" in err) return err;
  return new RetryableError(`download of ${location} failed: ${errorMessage(err)}`, {}, { cause: err });
}
