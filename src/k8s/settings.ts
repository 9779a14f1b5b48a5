// The Kubernetes drain's settings (--k8s-configmap, --k8s-namespace, --k8s-pod-configmap,
// --k8s-serviceaccount-dir) and the
// drain they start: inside a cluster, the named ConfigMap (and a per-pod one over it, as the Go
// runner had) is watched and applied to the runner; outside one, nothing happens.

import type { OptionSpec } from "../config/options.ts";
import { type SettingsOf, textSetting } from "../config/settings.ts";
import type { LiveQueueFilter } from "../queue/live-filter.ts";
import type { Logger } from "../log/logger.ts";
import { DEFAULT_SERVICE_ACCOUNT_DIR, detectCluster } from "./cluster.ts";
import { ConfigMapDrain, type StateTarget } from "./configmap-drain.ts";
import type { ConfigMapData } from "./configmap-watch.ts";
import { STATE_KEY } from "./drain-state.ts";

/** The Go runner's map name, so existing clusters keep working. */
export const DEFAULT_DRAIN_CONFIGMAP = "studioml-go-runner";

/** Values of --k8s-configmap that turn the drain map off (an empty flag means "the default"). */
const DISABLED = new Set(["", "none", "off"]);

export const K8S_OPTIONS = [
  {
    name: "k8s-configmap",
    type: "string",
    description:
      "inside Kubernetes: ConfigMap whose STATE (Running, DrainAndSuspend, DrainAndTerminate) and " +
      "QUEUE_MATCH / QUEUE_MISMATCH are watched and applied live (none: no map)",
    default: DEFAULT_DRAIN_CONFIGMAP,
  },
  {
    name: "k8s-namespace",
    type: "string",
    description: "namespace of --k8s-configmap",
    defaultText: "the pod's own namespace",
  },
  {
    name: "k8s-pod-configmap",
    type: "string",
    description:
      "inside Kubernetes: a second ConfigMap for this runner alone (e.g. named after its pod), " +
      "whose keys override those of --k8s-configmap",
    default: "",
  },
  {
    name: "k8s-serviceaccount-dir",
    type: "path",
    // The name it had when it was only an environment variable.
    env: "STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR",
    description:
      "inside Kubernetes: the service-account directory (token, ca.crt, namespace) the API server is reached with",
    defaultText: DEFAULT_SERVICE_ACCOUNT_DIR,
  },
] as const satisfies readonly OptionSpec[];

/** The drain's settings, any of them possibly absent. */
export type K8sSettings = Partial<SettingsOf<typeof K8S_OPTIONS>>;

/** How long start-up waits for the map's first reading, so that a drain it asks for holds from the start. */
const FIRST_READ_WAIT_MS = 10_000;

/**
 * Starts the ConfigMap drain when the runner is in a cluster and waits (a bounded while) until the
 * map was first read and applied; returns what stops it.
 */
export async function startConfigMapDrain(
  settings: K8sSettings,
  target: StateTarget,
  filter: LiveQueueFilter,
  log: Logger,
  env: Record<string, string | undefined> = process.env,
): Promise<{ stop(): Promise<void> } | undefined> {
  const name = (settings["k8s-configmap"] ?? "").trim();
  if (DISABLED.has(name.toLowerCase())) return undefined;
  const accountDir = textSetting(settings["k8s-serviceaccount-dir"]);
  const cluster = detectCluster(accountDir ? { ...env, STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: accountDir } : env);
  if ("notInCluster" in cluster) {
    log.debug(`not in a Kubernetes cluster (${cluster.notInCluster}): no ConfigMap drain`);
    return undefined;
  }
  const namespace = textSetting(settings["k8s-namespace"]) ?? cluster.podNamespace ?? "default";
  const podName = (settings["k8s-pod-configmap"] ?? "").trim();
  const where = `ConfigMap ${namespace}/${name}`;
  const podWhere = `ConfigMap ${namespace}/${podName}`;
  const drain = new ConfigMapDrain(target, filter, log, where);
  // The client library is loaded only here, inside a cluster (it costs start-up time elsewhere).
  const [{ ConfigMapWatch }, { kubeConfigFor }] = await Promise.all([
    import("./configmap-watch.ts"),
    import("./kube-config.ts"),
  ]);
  const kubeConfig = kubeConfigFor(cluster);
  // With a pod map, its keys win over the shared map's; each change re-applies the merged keys.
  let shared: ConfigMapData | undefined;
  let own: ConfigMapData | undefined;
  const applyMerged = () => {
    const merged = shared === undefined && own === undefined ? undefined : { ...shared, ...own };
    drain.apply(merged, own?.[STATE_KEY] !== undefined ? podWhere : where);
  };
  const watches = [
    new ConfigMapWatch({ kubeConfig, namespace, name, onChange: (data) => ((shared = data), applyMerged()), log }),
    ...(podName && !DISABLED.has(podName.toLowerCase()) && podName !== name
      ? [
          new ConfigMapWatch({
            kubeConfig,
            namespace,
            name: podName,
            onChange: (data) => ((own = data), applyMerged()),
            log,
          }),
        ]
      : []),
  ];
  const following = watches.length > 1 ? `${where}, and ${podWhere} over it,` : where;
  log.info(`in Kubernetes (${cluster.server}): following ${following} for STATE, QUEUE_MATCH and QUEUE_MISMATCH`);
  for (const w of watches) w.start();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(watches.map((w) => w.firstRead)),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, FIRST_READ_WAIT_MS))),
  ]);
  clearTimeout(timer);
  return { stop: async () => void (await Promise.all(watches.map((w) => w.stop()))) };
}
