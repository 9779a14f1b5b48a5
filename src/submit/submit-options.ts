// The settings of `submit`, read by the same loader as run's (flag > environment > --config YAML
// file > default). The queue, storage and Google settings are run's own specs (same names, types
// and environment variables), worded for a client where run's words say "serve"; the experiment's
// own flags have plain names (env, ram, queue …) that are common variables, so they are flags or
// config keys only.

import { GOOGLE_CERTS_OPTION } from "../config/google-certs.ts";
import { type OptionSpec, RUN_OPTIONS } from "../config/options.ts";
import type { SettingsOf } from "../config/settings.ts";
import { GCS_ENDPOINT_OPTION, STORAGE_OPTION } from "../config/storage-options.ts";
import { PUBSUB_OPTIONS } from "../queue/pubsub/settings.ts";
import { SQS_OPTIONS } from "../queue/sqs/settings.ts";

export const DEFAULT_BUCKET = "studioml-artifacts";

/** The spec of `name` in a table, typed as itself. */
function spec<T extends readonly OptionSpec[], const N extends T[number]["name"]>(
  table: T,
  name: N,
): Extract<T[number], { name: N }> {
  const found = table.find((s) => s.name === name);
  if (!found) throw new Error(`no option ${name}`);
  return found as Extract<T[number], { name: N }>;
}

export const SUBMIT_OPTIONS = [
  {
    name: "config",
    type: "path",
    env: false,
    description: "YAML file whose keys are these option names (CONFIG is run's file, not read here)",
  },
  { name: "queue", type: "string", env: false, description: "queue name", defaultText: "local" },
  { ...spec(RUN_OPTIONS, "queue-root"), description: "local queue directory" },
  STORAGE_OPTION,
  {
    name: "bucket",
    type: "string",
    env: false,
    description: "bucket (a folder under a file: root; for s3:// when the URL names none)",
    default: DEFAULT_BUCKET,
  },
  {
    name: "s3-endpoint",
    type: "string",
    env: false,
    description: "S3 server as http(s)://host[:port]: its scheme (default https), and its host for s3://bucket",
  },
  { name: "workspace", type: "path", env: false, description: "directory to send as the workspace", default: "." },
  {
    name: "experiment",
    type: "string",
    env: false,
    description: "experiment key",
    defaultText: "<time>_<uuid>",
  },
  {
    name: "pythonver",
    type: "string",
    env: false,
    description: "python version the runner should use",
    default: "3",
  },
  {
    name: "requirements",
    type: "path",
    env: false,
    description: "pip requirements file",
    defaultText: "<workspace>/requirements.txt if present",
  },
  { name: "cpus", type: "integer", env: false, description: "CPUs needed", default: "1" },
  // Sizes and durations of the request stay as written (the runner reads them): checked, not converted.
  { name: "ram", type: "string", env: false, description: "RAM needed, e.g. 2g", default: "1g" },
  { name: "hdd", type: "string", env: false, description: "disk needed, e.g. 3g", default: "1g" },
  { name: "gpus", type: "integer", env: false, description: "GPUs needed", default: "0" },
  { name: "max-duration", type: "string", env: false, description: "time limit per attempt, e.g. 20m" },
  {
    name: "lifetime",
    type: "string",
    env: false,
    description: "the request is void after this long, e.g. 30m",
  },
  {
    name: "save-frequency",
    type: "string",
    env: false,
    description: "checkpoint interval",
    defaultText: "1m",
  },
  { name: "env", type: "string", env: false, description: "NAME=VALUE pairs for the experiment, comma-separated" },
  {
    name: "wait",
    type: "boolean",
    env: false,
    description: "wait for the experiment and print its log; exit 0 only when it succeeded",
    default: "false",
  },
  {
    name: "wait-timeout",
    type: "string",
    env: false,
    description: "give up waiting after this long",
    defaultText: "none",
  },
  {
    ...spec(RUN_OPTIONS, "amqp-url"),
    description: "publish to RabbitMQ (StudioML.topic, persistent, confirmed) instead of a local queue",
  },
  {
    ...spec(RUN_OPTIONS, "amqp-queue-type"),
    description: "type of the queue declared when it does not exist yet",
  },
  {
    ...spec(SQS_OPTIONS, "sqs-certs"),
    description:
      "send to SQS: a directory of per-account AWS credentials/config sub-directories, as for run " +
      "(the queue is made when missing)",
  },
  {
    ...spec(SQS_OPTIONS, "sqs-default-account"),
    description: "send to SQS with the identity the AWS SDK's standard credential chain finds (not with --sqs-certs)",
  },
  spec(SQS_OPTIONS, "sqs-endpoint"),
  spec(SQS_OPTIONS, "aws-region"),
  {
    ...GOOGLE_CERTS_OPTION,
    description:
      "Google service-account JSON files, one project each: publish to the first project's Pub/Sub " +
      "(topic <queue> and subscription <queue>_sub are made when missing), and the identities for gs:// storage",
  },
  {
    ...spec(PUBSUB_OPTIONS, "pubsub-project"),
    description: "publish to this Google project's Pub/Sub with GOOGLE_APPLICATION_CREDENTIALS or PUBSUB_EMULATOR_HOST",
  },
  GCS_ENDPOINT_OPTION,
] as const satisfies readonly OptionSpec[];

export type SubmitSettings = SettingsOf<typeof SUBMIT_OPTIONS>;
