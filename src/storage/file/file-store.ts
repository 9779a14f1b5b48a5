// Object store on the local filesystem for file: locations (the client's local storage). In the
// runner it is confined to the storage roots (--file-storage-roots, or the runner's own storage for
// local queues): every open checks the real path (confined-path.ts). Unconfined (no roots) it
// serves `studio-runner submit`, which writes where its own user says.

import { createReadStream, createWriteStream, type Stats } from "node:fs";
import { lstat, mkdir, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { pipeline } from "node:stream/promises";
import { NotFoundError, RequestError, RetryableError, RunnerFault } from "../../errors.ts";
import { getRunnerLimits } from "../../request/location-policy.ts";
import type { FileTransferOptions, ObjectInfo, ObjectStore, UploadSource } from "../object-store.ts";
import { ConfinedPaths } from "./confined-path.ts";

/**
 * "file:" locations name a path: everything after "file:" with the leading slashes collapsed,
 * so both "file:///tmp/s/k" and the python client's "file://tmp/s/k" mean /tmp/s/k.
 */
export function filePath(location: string): string {
  if (!location.startsWith("file:")) throw new RequestError("qualified", location, "is not a file: location");
  let rest: string;
  try {
    rest = decodeURIComponent(location.slice("file:".length));
  } catch {
    throw new RequestError("qualified", location, "has a malformed %-escape");
  }
  if (rest.includes("\0")) throw new RequestError("qualified", location, "contains a NUL byte");
  const path = "/" + rest.replace(/^\/+/, "");
  if (path.split("/").includes("..")) throw new RequestError("qualified", location, "must not contain '..'");
  return path;
}

export function fileLocation(path: string): string {
  return `file://${path.startsWith("/") ? "" : "/"}${path}`;
}

const infoOf = (s: Pick<Stats, "size" | "mtimeMs" | "ino">): ObjectInfo => ({
  sizeBytes: s.size,
  modifiedMs: s.mtimeMs,
  version: `${s.size}-${Math.round(s.mtimeMs * 1000)}-${s.ino}`,
});

export type FileStoreOptions = {
  /**
   * Directories every open must stay in (real paths). Absent: the runner's limits (setRunnerLimits), unconfined when it
   * set none.
   */
  roots?: string[];
};

export class FileStore implements ObjectStore {
  constructor(private readonly options: FileStoreOptions = {}) {}

  /** The confinement in force now, or undefined when this store is not confined. */
  private confinement(): ConfinedPaths | undefined {
    const roots = this.options.roots ?? getRunnerLimits().fileRoots;
    return roots ? new ConfinedPaths(roots) : undefined;
  }

  async head(location: string): Promise<ObjectInfo | undefined> {
    const path = filePath(location);
    const confined = this.confinement();
    try {
      if (confined) {
        const fh = await confined.openRead(location, path);
        if (!fh) return undefined;
        try {
          return infoOf(await fh.stat());
        } finally {
          await fh.close();
        }
      }
      const s = await stat(path);
      return s.isFile() ? infoOf(s) : undefined;
    } catch (err) {
      if (err instanceof RunnerFault) throw err;
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new RetryableError(`cannot stat ${location}: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  async get(location: string): Promise<Readable> {
    const path = filePath(location);
    const confined = this.confinement();
    try {
      if (confined) {
        const fh = await confined.openRead(location, path);
        if (!fh) throw new NotFoundError(location);
        return fh.createReadStream();
      }
      if (!(await this.head(location))) throw new NotFoundError(location);
      return createReadStream(path);
    } catch (err) {
      if (err instanceof RunnerFault) throw err;
      throw new RetryableError(`cannot read ${location}: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  async put(location: string, body: Readable): Promise<ObjectInfo> {
    const path = filePath(location);
    const tmpName = `.${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}.partial`;
    const confined = this.confinement();
    let tmp = join(dirname(path), tmpName);
    try {
      if (confined) {
        const dir = await confined.directoryFor(location, path);
        tmp = join(dir, tmpName);
        const fh = await confined.createIn(location, dir, tmpName);
        try {
          for await (const chunk of body)
            await fh.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
          await fh.sync();
        } finally {
          await fh.close();
        }
        const final = join(dir, basename(path));
        // rename replaces a symlink at the final name instead of writing through it
        await rename(tmp, final);
        return infoOf(await lstat(final));
      }
      await mkdir(dirname(path), { recursive: true });
      await pipeline(body, createWriteStream(tmp, { flush: true }));
      await rename(tmp, path);
      return infoOf(await stat(path));
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      if (err instanceof RunnerFault) throw err;
      throw new RetryableError(`cannot write ${location}: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  /**
   * Laid-out bytes (a tar over the files it packs) written into place as put() does, with no
   * spool on the way; `check()` and the byte count are confirmed before the file takes the name.
   */
  async putSource(
    location: string,
    source: UploadSource,
    options: Pick<FileTransferOptions, "onBytes"> = {},
  ): Promise<ObjectInfo> {
    const whole = source.body(0, source.sizeBytes);
    const web = whole instanceof Blob ? whole.stream() : whole;
    async function* checked() {
      let bytes = 0;
      for await (const chunk of Readable.fromWeb(web as NodeReadableStream<Uint8Array>)) {
        const b = chunk as Buffer;
        bytes += b.length;
        options.onBytes?.(b.length);
        yield b;
      }
      if (bytes !== source.sizeBytes) throw new Error(`${bytes} bytes read of the ${source.sizeBytes} laid out`);
      source.check?.();
    }
    return this.put(location, Readable.from(checked()));
  }

  async delete(location: string): Promise<void> {
    const path = filePath(location);
    const confined = this.confinement();
    if (!confined) return rm(path, { force: true });
    const target = await confined.removalPath(location, path);
    if (target)
      await unlink(target).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      });
  }
}
