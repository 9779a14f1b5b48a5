// What a sandboxed job must not see although the system is bound read-only: the runner's credentials
// (cloud, queue, registry, ssh), its configuration, its queue, the other experiments in its working
// directory, its caches, and sockets that would hand out more power (docker, containerd,
// Kubernetes service-account tokens). The job's own directory and venv are bound back on top of
// these (see bwrapArgv's ordering); paths that do not exist are ignored there.

import { join } from "node:path";

export type RunnerPaths = {
  home: string;
  /** The runner's own environment (not the job's). */
  env: Record<string, string | undefined>;
  configFile?: string;
  sqsCerts?: string;
  googleCerts?: string;
  queueRoot: string;
  workingDir: string;
  /** Hidden as a whole: pass the venv directory the job uses as a read-only path. */
  cacheDir: string;
};

const HOME_SECRETS = [
  ".aws",
  ".azure",
  ".config/gcloud",
  ".config/pip",
  ".docker",
  ".git-credentials",
  ".gnupg",
  ".kube",
  ".netrc",
  ".pip",
  ".pypirc",
  ".ssh",
  ".studioml",
];

const ENV_SECRETS = ["GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "CLOUDSDK_CONFIG", "DOCKER_CONFIG", "KUBECONFIG", "NETRC", "PIP_CONFIG_FILE"];

const SYSTEM_SECRETS = ["/run/docker.sock", "/var/run/docker.sock", "/run/containerd", "/run/secrets", "/var/run/secrets"];

/** The paths to pass as SandboxOptions.hiddenPaths for a runner set up like this. */
export function runnerHiddenPaths(r: RunnerPaths): string[] {
  const out = HOME_SECRETS.map((p) => join(r.home, p));
  for (const name of ENV_SECRETS) {
    const value = r.env[name];
    // KUBECONFIG may list several files.
    if (value) out.push(...value.split(":").filter((v) => v.startsWith("/")));
  }
  for (const p of [r.configFile, r.sqsCerts, r.googleCerts, r.queueRoot, r.workingDir, r.cacheDir]) if (p) out.push(p);
  out.push(...SYSTEM_SECRETS);
  return [...new Set(out)];
}
