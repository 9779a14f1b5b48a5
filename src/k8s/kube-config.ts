// The @kubernetes/client-node configuration for the cluster the runner is in: its API server and
// CA, and the service-account token as bearer (the token file is read again as it rotates).

import { KubeConfig } from "@kubernetes/client-node";
import type { ClusterAccess } from "./cluster.ts";

/** A client configuration for the cluster: its CA, and the service-account token as bearer. */
export function kubeConfigFor(access: ClusterAccess): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser(
    { name: "in-cluster", server: access.server, caFile: access.caFile, skipTLSVerify: false },
    { name: "service-account", authProvider: { name: "tokenFile", config: { tokenFile: access.tokenFile } } },
  );
  return kc;
}
