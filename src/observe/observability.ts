// Wires the observers (metrics, loop health, status) to the runner's events and serves them on
// --prom-address with the endpoint's settings (--admin-token-file, --http-allowed-hosts,
// --status-logs); the run command calls this with a few lines.

import type { RUN_OPTIONS } from "../config/options.ts";
import { type SettingsOf, textSetting } from "../config/settings.ts";
import type { GpuAllocator } from "../gpu/allocator.ts";
import type { PoolSnapshot } from "../resources/pool.ts";
import { AdminTokenError, readAdminToken, type AdminToken } from "./admin-token.ts";
import type { RunnerEvents } from "./events.ts";
import { LoopHealth } from "./health.ts";
import { allowedHostsProblems } from "./host-allow-list.ts";
import {
  ListenAddressError,
  parseListenAddress,
  startObserveServer,
  type ObserveServer,
  type RunnerControl,
} from "./http-server.ts";
import { RunnerMetrics } from "./metrics.ts";
import { StatusState } from "./status-state.ts";

/** The endpoint could not be started (address in use, not allowed …). */
export class ObserveStartError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ObserveStartError";
  }
}

/** The settings of the HTTP endpoint. */
export type ObserveSettings = Pick<
  SettingsOf<typeof RUN_OPTIONS>,
  "prom-address" | "http-allowed-hosts" | "admin-token-file" | "status-logs" | "gpu-slots-per-card"
>;

const addressOf = (settings: Pick<ObserveSettings, "prom-address">) => textSetting(settings["prom-address"]);

/** Problems with --prom-address and --http-allowed-hosts, worded like the other configuration problems. */
export function observeSettingsProblems(
  settings: Pick<ObserveSettings, "prom-address" | "http-allowed-hosts">,
): string[] {
  const address = addressOf(settings);
  if (!address) return [];
  const problems = allowedHostsProblems(settings["http-allowed-hosts"]);
  try {
    parseListenAddress(address);
  } catch (err) {
    if (!(err instanceof ListenAddressError)) throw err;
    problems.push(`--prom-address: ${err.message}`);
  }
  return problems;
}

export type ObservabilityOptions = {
  settings: ObserveSettings;
  events: RunnerEvents;
  control: RunnerControl;
  host: string;
  runnerId: string;
  version: string;
  pool: { snapshot(): PoolSnapshot };
  gpus?: GpuAllocator;
  log: { info(message: string): void; warn(message: string): void };
};

export type Observability = ObserveServer & {
  /** The line the run command logs once the endpoint listens (never the token). */
  description: string;
};

/**
 * Starts the endpoint when --prom-address is set; undefined when it is not. The token file is read
 * here, once: one that cannot be used stops the start (ObserveStartError).
 */
export function startObservability(options: ObservabilityOptions): Observability | undefined {
  const address = addressOf(options.settings);
  const tokenFile = options.settings["admin-token-file"];
  if (!address) {
    if (tokenFile) options.log.warn("--admin-token-file has no effect without --prom-address");
    return undefined;
  }
  let adminToken: AdminToken | undefined;
  if (tokenFile) {
    try {
      adminToken = readAdminToken(tokenFile, (m) => options.log.warn(m));
    } catch (err) {
      if (!(err instanceof AdminTokenError)) throw err;
      throw new ObserveStartError(err.message, { cause: err });
    }
  }
  const statusLogs = options.settings["status-logs"];
  const { events, control, pool, gpus } = options;
  const state = () => control.state;
  const gpuSlotsPerCard = Math.max(1, options.settings["gpu-slots-per-card"]);
  const snapshot = () => pool.snapshot();
  const metrics = new RunnerMetrics({
    events,
    host: options.host,
    runnerId: options.runnerId,
    version: options.version,
    pool: snapshot,
    gpus,
    gpuSlotsPerCard,
    state,
  });
  const health = new LoopHealth({ events, state });
  const status = new StatusState({
    events,
    runnerId: options.runnerId,
    version: options.version,
    host: options.host,
    state,
    pool: snapshot,
    gpus,
    gpuSlotsPerCard,
    health: () => health.health(),
    ready: () => health.ready(),
    logs: statusLogs,
  });
  let server: ObserveServer;
  try {
    server = startObserveServer({
      address: parseListenAddress(address),
      metrics,
      health,
      status,
      control,
      adminToken,
      allowedHosts: options.settings["http-allowed-hosts"],
      machineName: options.host,
      log: options.log,
    });
  } catch (err) {
    metrics.close();
    health.close();
    status.close();
    throw new ObserveStartError(
      `--prom-address ${address}: cannot listen: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const posts = adminToken
    ? `POST /drain /resume with the bearer token of --admin-token-file ${adminToken.path}`
    : "POST /drain /resume refused (no --admin-token-file)";
  return {
    url: server.url,
    hosts: server.hosts,
    description:
      `observability endpoint at ${server.url}: /metrics /healthz /readyz /status, status page at / ` +
      `(log lines ${statusLogs ? "shown: --status-logs" : "not shown"}); ${posts}; answers Host ${server.hosts}`,
    stop: async () => {
      await server.stop();
      metrics.close();
      health.close();
      status.close();
    },
  };
}
