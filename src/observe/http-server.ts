// The --prom-address endpoint (Bun.serve): /metrics, /healthz, /readyz, /status, the status page at
// /, and POST /drain, /drain?exit=true and /resume. Every request must name this endpoint in Host
// (host-allow-list.ts: defeats DNS rebinding); the POSTs also need the bearer token of
// --admin-token-file (without that flag they are refused) and an Origin, when a browser sends
// one, of an answered host. GETs need no token: Prometheus and the kubelet's probes read them.

import type { AdminToken } from "./admin-token.ts";
import type { RunnerState } from "./events.ts";
import type { LoopHealth } from "./health.ts";
import { HostAllowList } from "./host-allow-list.ts";
import type { RunnerMetrics } from "./metrics.ts";
import { STATUS_PAGE_HTML } from "./status-page.ts";
import type { StatusState } from "./status-state.ts";

/** An address that is not host:port, :port or [v6]:port with a port from 0 to 65535. */
export class ListenAddressError extends Error {
  constructor(
    readonly address: string,
    detail: string,
  ) {
    super(`${JSON.stringify(address)}: ${detail}`);
    this.name = "ListenAddressError";
  }
}

export type ListenAddress = { hostname: string; port: number };

/** The Go runner's form: ":9090" (every interface), "127.0.0.1:9090", "[::1]:9090", "localhost:0". */
export function parseListenAddress(text: string): ListenAddress {
  const trimmed = text.trim();
  const cut = trimmed.lastIndexOf(":");
  if (cut < 0) throw new ListenAddressError(text, "expected host:port or :port");
  let host = trimmed.slice(0, cut);
  const portText = trimmed.slice(cut + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535)
    throw new ListenAddressError(text, `port ${JSON.stringify(portText)} is not a number from 0 to 65535`);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  else if (host.includes(":"))
    throw new ListenAddressError(text, "an IPv6 host must be written in brackets, e.g. [::1]:9090");
  if (/[\s/@]/.test(host)) throw new ListenAddressError(text, `${JSON.stringify(host)} is not a host name or address`);
  return { hostname: host || "0.0.0.0", port: Number(portText) };
}

/** What the drain endpoints act on (the Runner, without importing it). */
export type RunnerControl = {
  readonly state: RunnerState;
  setState(state: RunnerState, reason: string): void;
};

export type ObserveServerOptions = {
  address: ListenAddress;
  metrics: RunnerMetrics;
  health: LoopHealth;
  status: StatusState;
  control: RunnerControl;
  /** From --admin-token-file; without it the POSTs are refused. */
  adminToken?: AdminToken;
  /** --http-allowed-hosts (comma-separated). */
  allowedHosts?: string;
  /** This machine's host name (os.hostname()); answered in Host. */
  machineName: string;
  /** Interface addresses (tests); os.networkInterfaces() by default. */
  interfaceAddresses?: () => string[];
  log: { warn(message: string): void };
};

export type ObserveServer = {
  url: string;
  stop(): Promise<void> /** What Host values are answered, for the start-up log. */;
  hosts: string;
};

/** Largest request body accepted (none is read). */
const MAX_BODY_BYTES = 64 * 1024;

/** On stop, how long answers in flight get before the connections are cut. */
const STOP_WAIT_MS = 1_000;

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body, null, 2), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...headers,
    },
  });

/**
 * Refusals are logged, but a job hammering the endpoint must not flood the log: one line per kind
 * of refusal (a small fixed set: what was asked and why it was refused) per period.
 */
const REFUSAL_LOG_EVERY_MS = 10_000;

class RefusalLog {
  private readonly kinds = new Map<string, { lastMs: number; suppressed: number }>();
  constructor(private readonly warn: (message: string) => void) {}
  note(kind: string, message: string): void {
    const now = Date.now();
    const k = this.kinds.get(kind);
    if (k && now - k.lastMs < REFUSAL_LOG_EVERY_MS) {
      k.suppressed++;
      return;
    }
    const more = k?.suppressed
      ? ` (and ${k.suppressed} more like it in the last ${Math.round((now - k.lastMs) / 1000)} s)`
      : "";
    this.kinds.set(kind, { lastMs: now, suppressed: 0 });
    this.warn(`observability endpoint: refused ${message}${more}`);
  }
}

/** Shown in a request's log line: a client-chosen value, cut short and without control characters. */
const shown = (value: string | null) =>
  value === null ? "none" : JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);

export function startObserveServer(options: ObserveServerOptions): ObserveServer {
  const { metrics, health, status, control, log, adminToken } = options;
  const refusals = new RefusalLog((m) => log.warn(m));
  let allowList: HostAllowList | undefined; // set as soon as the real port is known, before any request is handled
  const changeState = (request: Request, from: string, wanted: RunnerState, what: string): Response => {
    if (request.method !== "POST") return json({ error: `${what} takes POST` }, 405);
    if (!allowList!.allowsOrigin(request.headers.get("origin"))) {
      refusals.note(
        `${what} origin`,
        `${what} from ${from}: Origin ${shown(request.headers.get("origin"))} is not an answered host`,
      );
      return json({ error: "cross-origin requests may not change the runner's state" }, 403);
    }
    if (!adminToken) {
      refusals.note(`${what} disabled`, `${what} from ${from}: no --admin-token-file is set`);
      return json(
        {
          error:
            `${what} is disabled: start the runner with --admin-token-file <file holding a token, mode 0600> ` +
            'and send the token as "Authorization: Bearer <token>"',
        },
        403,
      );
    }
    if (!adminToken.matches(request.headers.get("authorization"))) {
      const offered = request.headers.has("authorization");
      refusals.note(
        `${what} ${offered}`,
        `${what} from ${from}: ${offered ? "wrong bearer token" : "no bearer token"}`,
      );
      return json(
        { error: `${what} needs "Authorization: Bearer <token>" with the token of --admin-token-file` },
        401,
        { "www-authenticate": 'Bearer realm="studio-runner"' },
      );
    }
    control.setState(wanted, `HTTP ${what}`); // the runner logs the change
    const after = control.state;
    if (after !== wanted)
      return json({ state: after, error: `the runner is ${after} and cannot become ${wanted}` }, 409);
    return json({ state: after });
  };
  const server = Bun.serve({
    hostname: options.address.hostname,
    port: options.address.port,
    idleTimeout: 30,
    // No route reads a body: a client may not make the runner hold a large one.
    maxRequestBodySize: MAX_BODY_BYTES,
    async fetch(request, server) {
      const from = server.requestIP(request)?.address ?? "?";
      const host = request.headers.get("host");
      // Without a Host (HTTP/1.0) request.url is only the path: checked before it is parsed.
      const url = new URL(request.url, "http://invalid");
      if (!allowList!.allowsHost(host)) {
        refusals.note(
          "host",
          `${request.method} ${shown(url.pathname)} from ${from}: Host ${shown(host)} is not an answered host`,
        );
        return json(
          {
            error:
              `this endpoint does not answer for Host ${shown(host)}: ` +
              "add that name to --http-allowed-hosts if it is one of this runner's",
          },
          421,
        );
      }
      switch (url.pathname) {
        case "/metrics":
          return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
        case "/healthz": {
          const report = health.health();
          return json(report, report.healthy ? 200 : 503);
        }
        case "/readyz": {
          const report = health.ready();
          return json(report, report.ready ? 200 : 503);
        }
        case "/status":
          return json(status.snapshot());
        case "/":
        case "/index.html":
          return new Response(STATUS_PAGE_HTML, {
            headers: {
              "content-type": "text/html; charset=utf-8",
              "cache-control": "no-store",
              "x-content-type-options": "nosniff",
            },
          });
        case "/drain": {
          const exit = ["true", "1", "yes"].includes((url.searchParams.get("exit") ?? "").toLowerCase());
          return changeState(
            request,
            from,
            exit ? "terminating" : "suspended",
            exit ? "POST /drain?exit=true" : "POST /drain",
          );
        }
        case "/resume":
          return changeState(request, from, "running", "POST /resume");
        default:
          return json(
            {
              error: "not found",
              paths: [
                "/",
                "/metrics",
                "/healthz",
                "/readyz",
                "/status",
                "POST /drain",
                "POST /drain?exit=true",
                "POST /resume",
              ],
            },
            404,
          );
      }
    },
    error(err) {
      log.warn(`observability endpoint: ${err.message}`);
      return json({ error: "internal error" }, 500);
    },
  });
  allowList = new HostAllowList({
    boundHost: options.address.hostname,
    port: server.port!,
    machineName: options.machineName,
    allowed: options.allowedHosts ?? "",
    interfaceAddresses: options.interfaceAddresses,
  });
  const shownHost = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname;
  const stop = async () => {
    // Answers in flight (a POST /drain?exit=true that ends the runner) go out first, within a bound.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([server.stop(false), new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
    await server.stop(true);
  };
  return { url: `http://${shownHost}:${server.port}`, stop, hosts: allowList.describe() };
}
