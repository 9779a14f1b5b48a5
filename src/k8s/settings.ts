// The Kubernetes drain's settings (--k8s-configmap, --k8s-namespace) and the drain they start:
// inside a cluster, the named ConfigMap is watched and applied to the runner; outside one,
// nothing happens.

import type { Settings } from "../config/load.ts";
import type { OptionSpec } from "../config/options.ts";
import type { LiveQueueFilter } from "../queue/live-filter.ts";
import type { Logger } from "../task/context.ts";
import { detectCluster } from "./cluster.ts";
import { ConfigMapDrain, type StateTarget } from "./configmap-drain.ts";

/** The Go runner's map name, so existing clusters keep working. */
export const DEFAULT_DRAIN_CONFIGMAP = "studioml-go-runner";

/** Values of --k8s-configmap that turn the drain map off (an empty flag means "the default"). */
const DISABLED = new Set(["", "none", "off"]);

export const K8S_OPTIONS: OptionSpec[] = [
  {
    name: "k8s-configmap",
    type: "string",
    description: "inside Kubernetes: ConfigMap whose STATE (Running, DrainAndSuspend, DrainAndTerminate) and QUEUE_MATCH / QUEUE_MISMATCH are watched and applied live (none: no map)",
    default: DEFAULT_DRAIN_CONFIGMAP,
  },
  { name: "k8s-namespace", type: "string", description: "namespace of --k8s-configmap", defaultText: "the pod's own namespace" },
];

/** How long start-up waits for the map's first reading, so that a drain it asks for holds from the start. */
const FIRST_READ_WAIT_MS = 10_000;

/**
 * Starts the ConfigMap drain when the runner is in a cluster and waits (a bounded while) until the
 * map was first read and applied; returns what stops it.
 */
export async function startConfigMapDrain(settings: Settings, target: StateTarget, filter: LiveQueueFilter, log: Logger, env: Record<string, string | undefined> = process.env): Promise<{ stop(): Promise<void> } | undefined> {
  const name = String(settings["k8s-configmap"] ?? "").trim();
  if (DISABLED.has(name.toLowerCase())) return undefined;
  const cluster = detectCluster(env);
  if ("notInCluster" in cluster) {
    log.debug(`not in a Kubernetes cluster (${cluster.notInCluster}): no ConfigMap drain`);
    return undefined;
  }
  const namespace = String(settings["k8s-namespace"] ?? "").trim() || cluster.podNamespace || "default";
  const where = `ConfigMap ${namespace}/${name}`;
  const drain = new ConfigMapDrain(target, filter, log, where);
  // The client library is loaded only here, inside a cluster (it costs start-up time elsewhere).
  const [{ ConfigMapWatch }, { kubeConfigFor }] = await Promise.all([import("./configmap-watch.ts"), import("./kube-config.ts")]);
  const watch = new ConfigMapWatch({ kubeConfig: kubeConfigFor(cluster), namespace, name, onChange: (data) => drain.apply(data), log });
  log.info(`in Kubernetes (${cluster.server}): following ${where} for STATE, QUEUE_MATCH and QUEUE_MISMATCH`);
  watch.start();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([watch.firstRead, new Promise<void>((resolve) => (timer = setTimeout(resolve, FIRST_READ_WAIT_MS)))]);
  clearTimeout(timer);
  return watch;
}
