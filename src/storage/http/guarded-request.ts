// HTTP(S) requests to locations a request names, connected only where the host rules allow:
// redirects are never followed automatically; each hop's host is resolved, every address it
// resolves to is checked (resolve-host.ts), and the connection goes to the addresses that were
// checked (a `lookup` that answers with them), so a DNS answer that changes between the check and
// the connect (rebinding) gains nothing. Bun's fetch has no hook for the address it connects to
// (no lookup or dispatcher option), so this uses node:http/https with that lookup and no agent
// (no pooled connection skips it); TLS still verifies the certificate against the host name.
// No proxy is used (HTTP_PROXY and the like are ignored).

import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { PermanentError, RequestError, RetryableError, RunnerFault } from "../../errors.ts";
import { redact } from "../../request/location-policy.ts";
import { resolveChecked, type ResolvedAddress, type ResolveOptions } from "../../request/resolve-host.ts";

export type GuardedRequestOptions = {
  method: string;
  headers?: Record<string, string>;
  body?: string;
  /** --allow-private-endpoints. Link-local and metadata addresses are refused regardless. */
  allowPrivate: boolean;
  /** Redirects followed (each checked); 0: a redirect answer is returned as it is. */
  maxRedirects: number;
  /** Idle time on the connection before the request fails (retryable). */
  timeoutMs: number;
  /** The request field named in refusals. */
  field: string;
  /** Test seams (resolver, classification). */
  resolve?: ResolveOptions;
};

export type GuardedResponse = { status: number; headers: IncomingHttpHeaders; body: IncomingMessage; url: string };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export async function guardedRequest(url: string, options: GuardedRequestOptions): Promise<GuardedResponse> {
  let current = parseUrl(url, options.field, url);
  let method = options.method;
  let body = options.body;
  for (let hop = 0; ; hop++) {
    const field = hop === 0 ? options.field : `${options.field} (redirect ${hop} of ${redact(url)})`;
    const res = await requestOnce(current, { ...options, method, body, field });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || !location || options.maxRedirects === 0) {
      return { status, headers: res.headers, body: res, url: current.href };
    }
    res.resume(); // the redirect's own body is not used
    if (hop >= options.maxRedirects)
      throw new PermanentError(`${options.field}: ${redact(url)} redirects more than ${options.maxRedirects} times`, {
        field: options.field,
      });
    const next = parseUrl(
      new URL(location, current).href,
      `${options.field} (redirect ${hop + 1} of ${redact(url)})`,
      location,
    );
    if (current.protocol === "https:" && next.protocol === "http:") {
      throw new RequestError(
        options.field,
        redact(url),
        `redirects from https to http (${redact(next.href)}), which this runner does not follow`,
      );
    }
    if (status === 303 && method !== "HEAD") {
      method = "GET";
      body = undefined;
    }
    current = next;
  }
}

function parseUrl(text: string, field: string, shown: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RequestError(field, redact(shown), "is not a valid URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new RequestError(field, redact(shown), "is not an http(s) URL");
  if (!url.hostname) throw new RequestError(field, redact(shown), "names no host");
  return url;
}

async function requestOnce(url: URL, options: GuardedRequestOptions & { field: string }): Promise<IncomingMessage> {
  const shown = redact(url.href);
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  // Resolved and checked here; the connection below uses exactly these addresses.
  const addresses = await resolveChecked(options.field, url.href, hostname, options, options.resolve);
  const lookup = (_name: string, lookupOptions: unknown, callback: (...args: unknown[]) => void) => {
    const family =
      typeof lookupOptions === "object" && lookupOptions !== null
        ? (lookupOptions as { family?: number }).family
        : undefined;
    const usable: ResolvedAddress[] =
      family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses;
    if (!usable.length)
      return callback(Object.assign(new Error(`no IPv${family} address for ${hostname}`), { code: "ENOTFOUND" }));
    if (typeof lookupOptions === "object" && lookupOptions !== null && (lookupOptions as { all?: boolean }).all)
      return callback(null, usable);
    callback(null, usable[0]!.address, usable[0]!.family);
  };
  const auth =
    url.username || url.password
      ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
      : undefined;
  const client = url.protocol === "https:" ? https : http;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = client.request(
      {
        protocol: url.protocol,
        hostname,
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        method: options.method,
        headers: options.headers,
        auth,
        agent: false,
        lookup: lookup as never,
        timeout: options.timeoutMs,
      },
      resolve,
    );
    req.on("timeout", () =>
      req.destroy(new RetryableError(`${options.method} ${shown}: no answer for ${options.timeoutMs / 1000} s`)),
    );
    req.on("error", (err) =>
      reject(
        err instanceof RunnerFault
          ? err
          : new RetryableError(`${options.method} ${shown}: ${err.message}`, {}, { cause: err }),
      ),
    );
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}
