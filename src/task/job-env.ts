// The experiment's environment (protocol.md §3): the runner's environment without its secrets
// (filtered by name, by prefix and by the shape of the value; their values go to the log masker),
// config.env with %NAME% expansion, studioml variables, GPU and thread settings, the venv.

import { RUN_OPTIONS, envName } from "../config/options.ts";
import type { Request } from "../request/model.ts";
import { looksSecret, valueLooksSecret } from "../log/secret-mask.ts";

const RUNNER_ONLY = new Set([
  ...RUN_OPTIONS.map((o) => envName(o.name)),
  "AMQP_URL",
  "AMQP_MGT_URL",
  "SQS_CERTS",
  "GOOGLE_CERTS",
  "GOOGLE_APPLICATION_CREDENTIALS",
  "PYTHONHOME",
  "PYTHONPATH",
  "VIRTUAL_ENV",
  "PYENV_VERSION",
]);

/**
 * The runner's handles on host services and credential stores: agents' sockets (ssh, gpg, D-Bus),
 * Kerberos tickets, the cluster's kubeconfig, database URLs. Not all are secrets themselves, but
 * each lets a job act as the runner's user (class 9 of docs/security.md).
 */
const HOST_HANDLES = new Set([
  "SSH_AUTH_SOCK",
  "SSH_AGENT_PID",
  "GPG_AGENT_INFO",
  "DBUS_SESSION_BUS_ADDRESS",
  "KRB5CCNAME",
  "KUBECONFIG",
  "DATABASE_URL",
  "REDIS_URL",
  "MONGODB_URI",
  "NETRC",
]);

/** Prefixes of cloud, container-engine and secret-store settings: everything named so stays with the runner. */
const SECRET_PREFIXES = [
  "AWS_",
  "GOOGLE_",
  "GCLOUD_",
  "CLOUDSDK_",
  "AZURE_",
  "ARM_",
  "DOCKER_",
  "VAULT_",
  "CONSUL_HTTP_",
  "NOMAD_TOKEN",
  "OP_SERVICE_ACCOUNT_",
];

/** Handles that are not secrets themselves: withheld, but their values are not masked in logs. */
const UNMASKED = new Set([
  "SSH_AUTH_SOCK",
  "SSH_AGENT_PID",
  "GPG_AGENT_INFO",
  "DBUS_SESSION_BUS_ADDRESS",
  "KUBECONFIG",
  "KRB5CCNAME",
  "NETRC",
]);

/**
 * True for variables of the runner that must not reach an experiment: the runner's own settings
 * (STUDIO_RUNNER_* option variables, broker URLs), handles on host services (ssh-agent, D-Bus,
 * kubeconfig …), anything named like a cloud or secret-store setting (AWS_*, GOOGLE_*, AZURE_*,
 * DOCKER_*, VAULT_* …), names that look secret (…KEY…, …TOKEN…, …SECRET…, …PASSWORD…,
 * …CONNECTION_STRING, …_DSN), and values that carry a credential by their shape (URLs with user
 * information or signatures, connection strings with AccountKey=/Password=, known token formats).
 * A harmless variable caught by a name rule (SORT_KEY=…) is withheld too: a job that needs a value
 * gets it from its request's config.env.
 */
export function isRunnerSecret(name: string, value: string): boolean {
  const upper = name.toUpperCase();
  return (
    RUNNER_ONLY.has(upper) ||
    HOST_HANDLES.has(upper) ||
    looksSecret(name) ||
    SECRET_PREFIXES.some((p) => upper.startsWith(p)) ||
    valueLooksSecret(value)
  );
}

/** Whether a withheld runner variable's value is also kept out of logs (secrets yes; the runner's plain settings and
 * socket paths no). */
function maskable(name: string, value: string): boolean {
  const upper = name.toUpperCase();
  if (UNMASKED.has(upper)) return false;
  return !RUNNER_ONLY.has(upper) || looksSecret(name) || valueLooksSecret(value);
}

export type JobEnvInput = {
  runnerEnv: Record<string, string | undefined>;
  request: Request;
  attemptDir: string;
  mappingFile: string;
  venvDir?: string;
  cpus: number;
  gpuIds: string[];
  allowEnvSecrets: boolean;
};

export type JobEnv = { env: Record<string, string>; warnings: string[]; secretValues: string[] };

export function buildJobEnv(input: JobEnvInput): JobEnv {
  const env: Record<string, string> = {};
  const warnings: string[] = [];
  const secretValues: string[] = [];
  for (const [name, value] of Object.entries(input.runnerEnv)) {
    if (value === undefined) continue;
    if (isRunnerSecret(name, value)) {
      if (maskable(name, value)) secretValues.push(value);
      continue;
    }
    env[name] = value;
  }

  for (const [name, raw] of Object.entries(input.request.config.env)) {
    const value = raw.replace(/%([A-Za-z_][A-Za-z0-9_]*)%/g, (_all, ref: string) => {
      const runnerValue = input.runnerEnv[ref];
      if (runnerValue === undefined) return "";
      if (isRunnerSecret(ref, runnerValue) && !input.allowEnvSecrets) {
        warnings.push(`config.env.${name}: %${ref}% is a runner secret and was not expanded (see --allow-env-secrets)`);
        return "";
      }
      return runnerValue;
    });
    env[name] = value;
    if (looksSecret(name) || valueLooksSecret(value)) secretValues.push(value);
  }

  for (const artifact of Object.values(input.request.experiment.artifacts)) {
    const aws = artifact.credentials?.aws;
    if (aws) secretValues.push(aws.secretAccessKey, ...(aws.sessionToken ? [aws.sessionToken] : []));
  }
  const storageAws = input.request.config.storageCredentials?.aws;
  if (storageAws) secretValues.push(storageAws.secretAccessKey);

  const gpus = input.gpuIds.length ? input.gpuIds.join(",") : "-1";
  const threads = String(Math.max(1, Math.ceil(input.cpus)));
  Object.assign(env, {
    STUDIOML_EXPERIMENT: input.request.experiment.key,
    STUDIOML_HOME: input.attemptDir,
    STUDIOML_ARTIFACT_MAPPING: input.mappingFile,
    PYTHONUNBUFFERED: "TRUE",
    CUDA_VISIBLE_DEVICES: gpus,
    NVIDIA_VISIBLE_DEVICES: gpus,
    CUDA_DEVICE_ORDER: "PCI_BUS_ID",
  });
  // Thread pools follow the experiment's cpus unless its config.env set them itself.
  for (const name of [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
  ]) {
    if (!(name in input.request.config.env)) env[name] = threads;
  }
  if (input.venvDir) {
    env.VIRTUAL_ENV = input.venvDir;
    env.PATH = `${input.venvDir}/bin${env.PATH ? `:${env.PATH}` : ""}`;
  }
  return { env, warnings, secretValues };
}
