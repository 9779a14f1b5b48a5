// The experiment's environment (protocol.md §3): the runner's environment without its secrets,
// config.env with %NAME% expansion, studioml variables, GPU and thread settings, the venv.

import { RUN_OPTIONS, envName } from "../config/options.ts";
import type { Request } from "../request/model.ts";
import { looksSecret } from "./secret-mask.ts";

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

/** True for variables of the runner that must not reach an experiment. */
export function isRunnerSecret(name: string, value: string): boolean {
  return (
    RUNNER_ONLY.has(name) ||
    looksSecret(name) ||
    name.startsWith("AWS_") ||
    name.startsWith("GOOGLE_") ||
    /:\/\/[^/\s]*:[^/\s]*@/.test(value) // URLs with user:password
  );
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
      if (looksSecret(name) || name.startsWith("AWS_") || /@/.test(value)) secretValues.push(value);
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
    if (looksSecret(name)) secretValues.push(value);
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
  for (const name of ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"]) {
    if (!(name in input.request.config.env)) env[name] = threads;
  }
  if (input.venvDir) {
    env.VIRTUAL_ENV = input.venvDir;
    env.PATH = `${input.venvDir}/bin${env.PATH ? `:${env.PATH}` : ""}`;
  }
  return { env, warnings, secretValues };
}
