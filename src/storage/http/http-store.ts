// Read-only object store for plain http(s) GET artifacts (always immutable).

import { Readable } from "node:stream";
import { NotFoundError, PermanentError, RetryableError } from "../../errors.ts";
import type { ObjectInfo, ObjectStore } from "../object-store.ts";

export class HttpStore implements ObjectStore {
  async head(location: string): Promise<ObjectInfo | undefined> {
    const res = await this.fetch(location, "HEAD");
    if (res.status === 404) return undefined;
    if (!res.ok) return { sizeBytes: 0, modifiedMs: 0, version: "" };
    return {
      sizeBytes: Number(res.headers.get("content-length") ?? 0),
      modifiedMs: Date.parse(res.headers.get("last-modified") ?? "") || 0,
      version: res.headers.get("etag") ?? res.headers.get("last-modified") ?? "",
    };
  }

  async get(location: string): Promise<Readable> {
    const res = await this.fetch(location, "GET");
    if (res.status === 404) throw new NotFoundError(location);
    if (res.status >= 500) throw new RetryableError(`GET ${location}: HTTP ${res.status}`);
    if (!res.ok || !res.body) throw new PermanentError(`GET ${location}: HTTP ${res.status}`);
    return Readable.fromWeb(res.body as import("node:stream/web").ReadableStream);
  }

  async put(location: string, _body?: Readable): Promise<ObjectInfo> {
    throw new PermanentError(`${location}: http artifacts are read-only; mark them immutable`);
  }

  async delete(location: string): Promise<void> {
    throw new PermanentError(`${location}: http artifacts are read-only`);
  }

  private async fetch(location: string, method: string): Promise<Response> {
    try {
      return await fetch(location, { method, redirect: "follow" });
    } catch (err) {
      throw new RetryableError(`${method} ${location}: ${(err as Error).message}`, {}, { cause: err });
    }
  }
}
