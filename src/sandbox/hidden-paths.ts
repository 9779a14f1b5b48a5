// What a sandboxed job must not see although the system is bound read-only: the runner's home as a
// whole (credentials of every kind, its pyenv: the interpreter's prefix is bound back), its
// configuration (config file, /etc/studio-runner with the systemd unit's EnvironmentFile), its key
// directories and admin token, its queue, the other experiments in its working directory, its
// caches, and sockets that would hand out more power (docker, containerd, podman, D-Bus, the
// ssh-agent, Kubernetes service-account tokens). The job's own directory and venv are bound back
// on top of these (see bwrapArgv's ordering); paths that do not exist are ignored there.

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
  /** More of the runner's files and directories: --encrypt-dir, --request-signatures-dir, --response-signatures-dir,
   * --admin-token-file … */
  secretPaths?: (string | undefined)[];
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

const ENV_SECRETS = [
  "GOOGLE_APPLICATION_CREDENTIALS",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_CONFIG_FILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "CLOUDSDK_CONFIG",
  "DOCKER_CONFIG",
  "KUBECONFIG",
  "NETRC",
  "PIP_CONFIG_FILE",
];

const SYSTEM_SECRETS = [
  "/etc/studio-runner",
  "/run/docker.sock",
  "/var/run/docker.sock",
  "/run/containerd",
  "/var/run/containerd",
  "/run/podman",
  "/run/crio",
  "/run/dbus",
  "/var/run/dbus",
  "/run/systemd/private",
  "/run/systemd/journal",
  "/run/secrets",
  "/var/run/secrets",
];

/** A unix socket path out of a D-Bus address ("unix:path=/run/user/0/bus,guid=…"). */
function dbusSocket(address: string | undefined): string | undefined {
  const m = /(?:^|;)unix:(?:[^;]*,)?path=([^,;]+)/.exec(address ?? "");
  return m ? m[1] : undefined;
}

/** The paths to pass as SandboxOptions.hiddenPaths for a runner set up like this. */
export function runnerHiddenPaths(r: RunnerPaths): string[] {
  const out = HOME_SECRETS.map((p) => join(r.home, p));
  // The whole home (unless it is /): the runner's pyenv, caches, shell history, keys not listed above.
  if (r.home && r.home !== "/") out.push(r.home);
  for (const name of ENV_SECRETS) {
    const value = r.env[name];
    // KUBECONFIG may list several files.
    if (value) out.push(...value.split(":").filter((v) => v.startsWith("/")));
  }
  for (const p of [
    r.configFile,
    r.sqsCerts,
    r.googleCerts,
    r.queueRoot,
    r.workingDir,
    r.cacheDir,
    ...(r.secretPaths ?? []),
  ])
    if (p) out.push(p);
  // Sockets and runtime directories named by the runner's environment.
  for (const p of [
    r.env.SSH_AUTH_SOCK,
    dbusSocket(r.env.DBUS_SESSION_BUS_ADDRESS),
    dbusSocket(r.env.DBUS_SYSTEM_BUS_ADDRESS),
    r.env.XDG_RUNTIME_DIR,
    r.env.DOCKER_HOST?.replace(/^unix:\/\//, ""),
  ]) {
    if (p?.startsWith("/")) out.push(p);
  }
  out.push(...SYSTEM_SECRETS);
  return [...new Set(out)];
}
