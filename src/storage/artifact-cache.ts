import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { errorMessage, RetryableError } from "../errors.ts";
import { verifyingStream } from "./content-digest.ts";
import { downloadToFile } from "./file-transfer.ts";
import { followFile, GrowingFile, LOCAL_READ_BYTES } from "./growing-file.ts";
import type { ObjectInfo, ObjectStore } from "./object-store.ts";

export type CacheReadOptions = {
  /** Hears about the bytes of a download as they arrive (progress lines). */
  onBytes?: (bytes: number) => void;
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
    const actual = await sha256OfFile(path);
    if (actual === options.sha256) return path;
    await rm(path, { force: true });
    throw mismatchOf(options, actual);
  }

  /**
   * The object as a stream of its cached copy: downloaded first when missing (parallel ranges
   * straight into the cache file, for stores that can), then read from the file, so the reader
   * (an unpacker) reads local disk in large chunks. failure() is the fault of a cached copy that
   * no longer matches the expected sha256 (it is removed), so a bad copy is not mistaken for a
   * bad archive.
   */
  async read(
    store: ObjectStore,
    location: string,
    version: string,
    options: CacheReadOptions = {},
  ): Promise<{ stream: Readable; hit: boolean; failure: () => unknown }> {
    const key = ArtifactCache.keyOf(location, version);
    const path = join(this.root, key);
    const hit = !this.downloads.has(key) && (await this.touchIfCached(path));
    if (!hit && !this.downloads.has(key)) {
      // A fresh download: the reader follows the file as the ranges land in it, in order.
      const tmp = await this.partialPath(path);
      const growing = new GrowingFile();
      const file = await open(tmp, "w+", 0o600);
      let fault: unknown;
      const pending = this.download(store, location, path, options, { tmp, growing }).finally(() =>
        this.downloads.delete(key),
      );
      pending.catch((err) => (fault = err));
      this.downloads.set(key, pending);
      return { stream: followFile(file, growing), hit: false, failure: () => fault };
    }
    // A copy fetched now (joined) was checked before it was kept; a cached one is checked as read.
    const local = hit ? path : (await this.fetch(store, location, version, options)).path;
    // Open now: once open, an eviction by another download cannot take the bytes away.
    const file = await open(local, "r");
    const plain = file.createReadStream({ highWaterMark: LOCAL_READ_BYTES });
    if (!hit || !options.sha256) return { stream: plain, hit, failure: () => undefined };
    let fault: Error | undefined;
    const stream = verifyingStream(plain, options.sha256, (actual) => {
      fault = mismatchOf(options, actual);
      void rm(local, { force: true }).catch(() => undefined);
      return fault;
    });
    return { stream, hit, failure: () => fault };
  }

  /** A path for a transient download next to the cache (same disk), removed by the caller. */
  async scratchPath(): Promise<string> {
    await mkdir(this.root, { recursive: true });
    return join(this.root, `scratch.${process.pid}.${Math.random().toString(36).slice(2)}.partial`);
  }

  private async partialPath(path: string): Promise<string> {
    await mkdir(this.root, { recursive: true });
    return `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
  }

  /** Into a partial file, checked, then renamed into place; `follow`: the partial file a reader follows. */
  private async download(
    store: ObjectStore,
    location: string,
    path: string,
    options: CacheReadOptions,
    follow?: { tmp: string; growing: GrowingFile },
  ): Promise<string> {
    const tmp = follow?.tmp ?? (await this.partialPath(path));
    const growing = follow?.growing;
    try {
      await downloadToFile(store, location, tmp, { known: options.known, onBytes: options.onBytes, growing });
      if (options.sha256) {
        const actual = await sha256OfFile(tmp);
        if (actual !== options.sha256) throw mismatchOf(options, actual);
      }
      const sizeBytes = (await stat(tmp)).size;
      await rename(tmp, path);
      growing?.finish(sizeBytes);
    } catch (err) {
      const fault = downloadFault(location, err);
      growing?.fail(fault);
      await rm(tmp, { force: true });
      throw fault;
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

async function sha256OfFile(path: string): Promise<string> {
  const hash = new Bun.CryptoHasher("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: LOCAL_READ_BYTES })) hash.update(chunk as Buffer);
  return hash.digest("hex");
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
