// Wires the observers (metrics, loop health, status) to the runner's events and serves them on
// --prom-address; the run command calls this with a few lines.

import type { Settings } from "../config/load.ts";
import type { GpuAllocator } from "../gpu/allocator.ts";
import type { PoolSnapshot } from "../resources/pool.ts";
import type { RunnerEvents } from "./events.ts";
import { LoopHealth } from "./health.ts";
import { ListenAddressError, parseListenAddress, startObserveServer, type ObserveServer, type RunnerControl } from "./http-server.ts";
import { RunnerMetrics } from "./metrics.ts";
import { StatusState } from "./status-state.ts";

/** The endpoint could not be started (address in use, not allowed …). */
export class ObserveStartError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ObserveStartError";
  }
}

const addressOf = (settings: Settings): string | undefined => {
  const v = settings["prom-address"];
  return typeof v === "string" && v.trim() ? v.trim() : undefined;
};

/** Problems with --prom-address, worded like the other configuration problems. */
export function observeSettingsProblems(settings: Settings): string[] {
  const address = addressOf(settings);
  if (!address) return [];
  try {
    parseListenAddress(address);
    return [];
  } catch (err) {
    if (!(err instanceof ListenAddressError)) throw err;
    return [`--prom-address: ${err.message}`];
  }
}

export type ObservabilityOptions = {
  settings: Settings;
  events: RunnerEvents;
  control: RunnerControl;
  host: string;
  runnerId: string;
  version: string;
  pool: { snapshot(): PoolSnapshot };
  gpus?: GpuAllocator;
  log: { info(message: string): void; warn(message: string): void };
};

/** Starts the endpoint when --prom-address is set; undefined when it is not. */
export function startObservability(options: ObservabilityOptions): ObserveServer | undefined {
  const address = addressOf(options.settings);
  if (!address) return undefined;
  const { events, control, pool, gpus } = options;
  const state = () => control.state;
  const gpuSlotsPerCard = Math.max(1, Number(options.settings["gpu-slots-per-card"]) || 1);
  const snapshot = () => pool.snapshot();
  const metrics = new RunnerMetrics({ events, host: options.host, runnerId: options.runnerId, version: options.version, pool: snapshot, gpus, gpuSlotsPerCard, state });
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
  });
  let server: ObserveServer;
  try {
    server = startObserveServer({ address: parseListenAddress(address), metrics, health, status, control, log: options.log });
  } catch (err) {
    metrics.close();
    health.close();
    status.close();
    throw new ObserveStartError(`--prom-address ${address}: cannot listen: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return {
    url: server.url,
    stop: async () => {
      await server.stop();
      metrics.close();
      health.close();
      status.close();
    },
  };
}
