// The experiment record kept through a studioml API server (config.database {type: "http",
// serverUrl}): POST /api/{checkpoint,start,finish,get}_experiment with {"key"}, each answered
// {"status": "ok", …}, the calls studioml's own HTTP provider makes. The server is reached like an
// http artifact (guarded-request.ts): the address connected to is the one checked against the
// host rules, and a redirect answer is an error, never followed.

import { getRunnerLimits } from "../request/location-policy.ts";
import type { Request } from "../request/model.ts";
import { guardedRequest } from "../storage/http/guarded-request.ts";
import {
  DATABASE_CALL_TIMEOUT_MS,
  RECORD_UPDATE_TRIES,
  withDeadline,
  withRetries,
  type ExperimentRecord,
  type RecordOptions,
} from "./record.ts";

export function httpRecord(
  d: Record<string, unknown>,
  request: Request,
  options: RecordOptions,
): ExperimentRecord | undefined {
  const raw = typeof d.serverUrl === "string" ? d.serverUrl : typeof d.endpoint === "string" ? d.endpoint : undefined;
  if (!raw) {
    options.warn(
      "config.database: an http database needs serverUrl (the studioml API server); experiment status is not kept",
    );
    return undefined;
  }
  let base: URL;
  try {
    base = new URL(raw);
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    options.warn(
      `config.database.serverUrl: ${JSON.stringify(raw)} is not an http(s) URL; experiment status is not kept`,
    );
    return undefined;
  }
  return new ApiServerRecord(base, request.experiment.key, options.warn);
}

class ApiServerRecord implements ExperimentRecord {
  readonly where: string;

  constructor(
    private readonly base: URL,
    private readonly key: string,
    private readonly warn: (message: string) => void,
  ) {
    // Only scheme, host and path: a URL may carry user:password.
    this.where = `${base.protocol}//${base.host}${base.pathname.replace(/\/$/, "")} (experiment ${key})`;
  }

  /** One API call; returns the answer's body, throws with the server's reason. */
  private async call(api: string): Promise<Record<string, unknown>> {
    const url = new URL(`${this.base.pathname.replace(/\/$/, "")}/api/${api}`, this.base);
    const res = await withDeadline(
      `POST /api/${api}`,
      DATABASE_CALL_TIMEOUT_MS,
      guardedRequest(url.href, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: this.key }),
        allowPrivate: getRunnerLimits().allowPrivate,
        maxRedirects: 0,
        timeoutMs: DATABASE_CALL_TIMEOUT_MS,
        field: "config.database.serverUrl",
      }).then(async (r) => {
        const chunks: Buffer[] = [];
        for await (const c of r.body) chunks.push(Buffer.from(c as Uint8Array));
        return { status: r.status, text: Buffer.concat(chunks).toString("utf8") };
      }),
    );
    const text = res.text;
    if (res.status !== 200)
      throw new Error(`POST /api/${api} answered HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`POST /api/${api} answered something that is not JSON: ${text.slice(0, 200)}`);
    }
    const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    if (b.status !== "ok") throw new Error(`POST /api/${api} answered status ${JSON.stringify(b.status ?? null)}`);
    return b;
  }

  private async calls(apis: string[], what: string): Promise<void> {
    try {
      for (const api of apis) await withRetries(RECORD_UPDATE_TRIES, () => this.call(api));
    } catch (err) {
      this.warn(`could not record ${what} at ${this.where}: ${(err as Error).message}`);
    }
  }

  running() {
    return this.calls(["checkpoint_experiment", "start_experiment"], "the start");
  }

  checkpoint() {
    return this.calls(["checkpoint_experiment"], "a checkpoint");
  }

  finished() {
    return this.calls(["checkpoint_experiment", "finish_experiment"], "the finish");
  }

  async stopRequested(): Promise<boolean> {
    try {
      const body = await this.call("get_experiment");
      const experiment = body.experiment as Record<string, unknown> | undefined;
      return experiment?.status === "stopped";
    } catch (err) {
      this.warn(`could not read the experiment at ${this.where}: ${(err as Error).message}`);
      return false;
    }
  }

  async close(): Promise<void> {}
}
