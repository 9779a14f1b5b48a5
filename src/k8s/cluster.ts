// Whether the runner is inside a Kubernetes cluster, and how to reach its API server:
// KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the pod's service-account directory
// (token, ca.crt, namespace). STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR names another directory (tests,
// or a token mounted elsewhere). Loads no client library: outside a cluster none is needed.

import { existsSync, readFileSync } from "node:fs";
import { isIPv6 } from "node:net";
import { join } from "node:path";

export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export type ClusterAccess = {
  /** https://host:port of the API server. */
  server: string;
  caFile: string;
  /** Read again by the client before each request, so rotated tokens are picked up. */
  tokenFile: string;
  /** The pod's own namespace, when the service-account directory says. */
  podNamespace?: string;
};

/** The cluster the runner runs in, or why it does not look like one. */
export function detectCluster(
  env: Record<string, string | undefined> = process.env,
): ClusterAccess | { notInCluster: string } {
  const host = env.KUBERNETES_SERVICE_HOST?.trim();
  const port = env.KUBERNETES_SERVICE_PORT?.trim();
  if (!host || !port) return { notInCluster: "KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set" };
  const dir = env.STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR?.trim() || DEFAULT_SERVICE_ACCOUNT_DIR;
  const tokenFile = join(dir, "token");
  if (!existsSync(tokenFile))
    return { notInCluster: `no service-account token at ${tokenFile} (automountServiceAccountToken off?)` };
  const namespaceFile = join(dir, "namespace");
  const podNamespace = existsSync(namespaceFile) ? readFileSync(namespaceFile, "utf8").trim() || undefined : undefined;
  return {
    server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    caFile: join(dir, "ca.crt"),
    tokenFile,
    podNamespace,
  };
}
