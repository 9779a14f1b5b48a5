// Local cache of immutable objects, keyed by location and object version: each is downloaded
// once, shared by concurrent attempts, and the least recently used are removed over the size bound.

import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { RetryableError } from "../errors.ts";
import type { ObjectStore } from "./object-store.ts";

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
    options: { track?: (download: Readable) => Readable } = {},
  ): Promise<{ path: string; hit: boolean }> {
    const key = ArtifactCache.keyOf(location, version);
    const path = join(this.root, key);
    const inFlight = this.downloads.get(key);
    if (inFlight) return { path: await inFlight, hit: false };
    try {
      await stat(path);
      const now = new Date();
      await utimes(path, now, now).catch(() => undefined);
      return { path, hit: true };
    } catch {
      // not cached yet
    }
    let pending = this.downloads.get(key); // another caller may have started it meanwhile
    if (!pending) {
      pending = this.download(store, location, path, options.track).finally(() => this.downloads.delete(key));
      this.downloads.set(key, pending);
    }
    return { path: await pending, hit: false };
  }

  private async download(store: ObjectStore, location: string, path: string, track?: (download: Readable) => Readable): Promise<string> {
    await mkdir(this.root, { recursive: true });
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.partial`;
    try {
      const source = await store.get(location);
      await pipeline(track ? track(source) : source, createWriteStream(tmp));
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof Error && "retryable" in err) throw err;
      throw new RetryableError(`download of ${location} failed: ${(err as Error).message}`, {}, { cause: err });
    }
    await this.evict(path).catch(() => undefined);
    return path;
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
