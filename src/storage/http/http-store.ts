// Read-only object store for plain http(s) GET artifacts (always immutable). Every hop, redirects
// included, is checked and connected by guarded-request.ts: no loopback or private address without
// --allow-private-endpoints, never a link-local or metadata one.

import type { Readable } from "node:stream";
import { NotFoundError, PermanentError, RetryableError } from "../../errors.ts";
import { getRunnerLimits } from "../../request/location-policy.ts";
import type { ResolveOptions } from "../../request/resolve-host.ts";
import type { ObjectInfo, ObjectStore } from "../object-store.ts";
import { guardedRequest, type GuardedResponse } from "./guarded-request.ts";

/** Redirects an artifact URL may take (each one checked). */
const MAX_REDIRECTS = 5;
/** Silence on a connection before the download counts as stalled (retryable). */
const IDLE_TIMEOUT_MS = 60_000;

export type HttpStoreOptions = {
  /** Absent: the runner's --allow-private-endpoints (setRunnerLimits), off when it set none. */
  allowPrivate?: boolean;
  /** Test seams: another resolver or address classification. */
  resolve?: ResolveOptions;
};

export class HttpStore implements ObjectStore {
  constructor(private readonly options: HttpStoreOptions = {}) {}

  async head(location: string): Promise<ObjectInfo | undefined> {
    const res = await this.send(location, "HEAD");
    res.body.resume();
    if (res.status === 404) return undefined;
    if (res.status < 200 || res.status >= 300) return { sizeBytes: 0, modifiedMs: 0, version: "" };
    const header = (name: string) => {
      const v = res.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    return {
      sizeBytes: Number(header("content-length") ?? 0),
      modifiedMs: Date.parse(header("last-modified") ?? "") || 0,
      version: header("etag") ?? header("last-modified") ?? "",
    };
  }

  async get(location: string): Promise<Readable> {
    const res = await this.send(location, "GET");
    if (res.status >= 200 && res.status < 300) return res.body;
    res.body.resume();
    if (res.status === 404) throw new NotFoundError(location);
    if (res.status >= 500) throw new RetryableError(`GET ${location}: HTTP ${res.status}`);
    throw new PermanentError(`GET ${location}: HTTP ${res.status}`);
  }

  async put(location: string, _body?: Readable): Promise<ObjectInfo> {
    throw new PermanentError(`${location}: http artifacts are read-only; mark them immutable`);
  }

  async delete(location: string): Promise<void> {
    throw new PermanentError(`${location}: http artifacts are read-only`);
  }

  private send(location: string, method: "GET" | "HEAD"): Promise<GuardedResponse> {
    return guardedRequest(location, {
      method,
      allowPrivate: this.options.allowPrivate ?? getRunnerLimits().allowPrivate,
      maxRedirects: MAX_REDIRECTS,
      timeoutMs: IDLE_TIMEOUT_MS,
      field: "qualified",
      resolve: this.options.resolve,
    });
  }
}
