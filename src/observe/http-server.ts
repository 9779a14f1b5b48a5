// The --prom-address endpoint (Bun.serve): /metrics, /healthz, /readyz, /status, the status page at
// /, and POST /drain, /drain?exit=true and /resume. No authentication: bind it to loopback or a
// cluster-internal address.

import type { RunnerState } from "./events.ts";
import type { LoopHealth } from "./health.ts";
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
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) throw new ListenAddressError(text, `port ${JSON.stringify(portText)} is not a number from 0 to 65535`);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  else if (host.includes(":")) throw new ListenAddressError(text, "an IPv6 host must be written in brackets, e.g. [::1]:9090");
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
  log: { warn(message: string): void };
};

export type ObserveServer = { url: string; stop(): Promise<void> };

/** On stop, how long answers in flight get before the connections are cut. */
const STOP_WAIT_MS = 1_000;

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body, null, 2), { status, headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } });

/**
 * A browser page from another origin may send a plain POST here without asking first: refuse
 * state changes that carry a foreign Origin (curl and kubectl send none).
 */
function foreignOrigin(request: Request): boolean {
  const origin = request.headers.get("origin");
  if (!origin) return false;
  try {
    return new URL(origin).host !== new URL(request.url).host;
  } catch {
    return true;
  }
}

export function startObserveServer(options: ObserveServerOptions): ObserveServer {
  const { metrics, health, status, control, log } = options;
  const changeState = (request: Request, wanted: RunnerState, what: string): Response => {
    if (request.method !== "POST") return json({ error: `${what} takes POST` }, 405);
    if (foreignOrigin(request)) return json({ error: "cross-origin requests may not change the runner's state" }, 403);
    control.setState(wanted, `HTTP ${what}`); // the runner logs the change
    const after = control.state;
    if (after !== wanted) return json({ state: after, error: `the runner is ${after} and cannot become ${wanted}` }, 409);
    return json({ state: after });
  };
  const server = Bun.serve({
    hostname: options.address.hostname,
    port: options.address.port,
    idleTimeout: 30,
    async fetch(request) {
      const url = new URL(request.url);
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
          return new Response(STATUS_PAGE_HTML, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
        case "/drain": {
          const exit = ["true", "1", "yes"].includes((url.searchParams.get("exit") ?? "").toLowerCase());
          return changeState(request, exit ? "terminating" : "suspended", exit ? "POST /drain?exit=true" : "POST /drain");
        }
        case "/resume":
          return changeState(request, "running", "POST /resume");
        default:
          return json({ error: "not found", paths: ["/", "/metrics", "/healthz", "/readyz", "/status", "POST /drain", "POST /drain?exit=true", "POST /resume"] }, 404);
      }
    },
    error(err) {
      log.warn(`observability endpoint: ${err.message}`);
      return json({ error: "internal error" }, 500);
    },
  });
  const shownHost = server.hostname?.includes(":") ? `[${server.hostname}]` : server.hostname;
  const stop = async () => {
    // Answers in flight (a POST /drain?exit=true that ends the runner) go out first, within a bound.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([server.stop(false), new Promise((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
    await server.stop(true);
  };
  return { url: `http://${shownHost}:${server.port}`, stop };
}
