// Object store on the local filesystem for file: locations (the client's local storage).

import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { NotFoundError, RequestError, RetryableError } from "../../errors.ts";
import type { ObjectInfo, ObjectStore } from "../object-store.ts";

/**
 * "file:" locations name a path: everything after "file:" with the leading slashes collapsed,
 * so both "file:///tmp/s/k" and the python client's "file://tmp/s/k" mean /tmp/s/k.
 */
export function filePath(location: string): string {
  if (!location.startsWith("file:")) throw new RequestError("qualified", location, "is not a file: location");
  const rest = decodeURIComponent(location.slice("file:".length));
  const path = "/" + rest.replace(/^\/+/, "");
  if (path.split("/").includes("..")) throw new RequestError("qualified", location, "must not contain '..'");
  return path;
}

export function fileLocation(path: string): string {
  return `file://${path.startsWith("/") ? "" : "/"}${path}`;
}

const infoOf = (s: { size: number; mtimeMs: number; ino: number }): ObjectInfo => ({
  sizeBytes: s.size,
  modifiedMs: s.mtimeMs,
  version: `${s.size}-${Math.round(s.mtimeMs * 1000)}-${s.ino}`,
});

export class FileStore implements ObjectStore {
  async head(location: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(filePath(location));
      return s.isFile() ? infoOf(s) : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new RetryableError(`cannot stat ${location}: ${(err as Error).message}`);
    }
  }

  async get(location: string): Promise<Readable> {
    const path = filePath(location);
    const info = await this.head(location);
    if (!info) throw new NotFoundError(location);
    return createReadStream(path);
  }

  async put(location: string, body: Readable): Promise<ObjectInfo> {
    const path = filePath(location);
    const tmp = join(dirname(path), `.${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}.partial`);
    try {
      await mkdir(dirname(path), { recursive: true });
      await pipeline(body, createWriteStream(tmp, { flush: true }));
      await rename(tmp, path);
      return infoOf(await stat(path));
    } catch (err) {
      await rm(tmp, { force: true });
      throw new RetryableError(`cannot write ${location}: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  async delete(location: string): Promise<void> {
    await rm(filePath(location), { force: true });
  }
}
