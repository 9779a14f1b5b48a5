// The runner's settings: one table gives each its flag, environment variable, type and default.

import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { OptionSpec } from "./option-spec.ts";
import { GCS_ENDPOINT_OPTION, STORAGE_OPTION } from "./storage-options.ts";

export { envName, envOf, type OptionSpec, type OptionType } from "./option-spec.ts";

export const DEFAULT_QUEUE_MATCH = "^(rmq|sqs|local)(_.*)?$";

/** Deliveries before a message moves to the failed place (--max-deliveries, and submit's queues). */
export const DEFAULT_MAX_DELIVERIES = 3;

export const RUN_OPTIONS = [
  { name: "config", type: "path", description: "YAML file whose keys are these option names" },
  {
    name: "queue-root",
    type: "path",
    description: "directory of local queues (<root>/<queue>/<file>)",
    defaultText: "~/.studioml/queue",
  },
  {
    name: "queue-match",
    type: "regex",
    description: "only serve queues whose name matches",
    default: DEFAULT_QUEUE_MATCH,
  },
  { name: "queue-mismatch", type: "regex", description: "never serve queues whose name matches" },
  {
    name: "amqp-url",
    type: "string",
    description: "RabbitMQ to serve besides the local queues, e.g. amqp://user:password@host:5672/%2f",
  },
  {
    name: "amqp-mgt-url",
    type: "string",
    description: "RabbitMQ management API, used to discover the queues bound to StudioML.topic",
    defaultText: "http://<amqp-url host>:<amqp-url port + 10000> with the amqp-url credentials",
  },
  {
    name: "amqp-queues",
    type: "string",
    description: "comma-separated RabbitMQ queues to serve while the management API cannot be reached",
  },
  {
    name: "amqp-queue-type",
    type: "enum",
    choices: ["classic", "quorum"],
    description: "type of the RabbitMQ queues this runner declares (failed places)",
    default: "classic",
  },
  GCS_ENDPOINT_OPTION,

  { name: "working-dir", type: "path", description: "where experiment directories are made", defaultText: "$TMPDIR" },
  {
    name: "cache-dir",
    type: "path",
    description: "immutable artifact and venv cache",
    defaultText: "~/.cache/studio-runner",
  },
  { name: "cache-size", type: "size", description: "bound on the immutable artifact cache", default: "10gib" },
  {
    name: "transfer-concurrency",
    type: "integer",
    description: "parts of one large S3 or GCS object in flight at once, reading (ranged GETs) and writing (multipart)",
    default: "16",
  },
  {
    name: "transfer-part-size",
    type: "size",
    description: "bytes per part of a large S3 or GCS object (ranged GET; multipart part, at least 5mib)",
    default: "16mib",
  },
  { name: "venv-cache-size", type: "size", description: "bound on cached python environments", default: "20gib" },
  {
    name: "venv-max-age",
    type: "duration",
    description: "unused python environments older than this are removed",
    default: "168h",
  },
  {
    name: "venv-system-site-packages",
    type: "boolean",
    description: "venvs see the interpreter's site-packages (host-installed torch/TF)",
    default: "false",
  },
  {
    name: "pip-strict",
    type: "boolean",
    description: "fail the experiment, naming every pin, when any requirement cannot be installed as pinned",
    default: "false",
  },
  {
    name: "pip-relax-pins",
    type: "boolean",
    description:
      "a pin whose exact version the index lacks installs the nearest version (same major first) instead of " +
      "being left out; each substitution is logged",
    default: "false",
  },
  {
    name: "venv-reuse-superset",
    type: "boolean",
    description:
      "an experiment whose pins a prepared environment (env prepare) satisfies uses it instead of building its own",
    default: "false",
  },
  {
    name: "max-env-builds",
    type: "integer",
    description: "different python environments built at once (0 = half the cores)",
    default: "0",
  },
  { name: "max-cores", type: "integer", description: "CPUs this runner may hand out (0 = all)", default: "0" },
  { name: "max-mem", type: "size", description: "RAM this runner may hand out (0 = all)", default: "0" },
  {
    name: "max-disk",
    type: "size",
    description: "disk this runner may hand out in working-dir (0 = free space)",
    default: "0",
  },
  {
    name: "min-free-disk",
    type: "size",
    description: "free space always left in working-dir: work is not taken when it would go below",
    default: "1gib",
  },
  STORAGE_OPTION,
  {
    name: "file-storage-roots",
    type: "string",
    description:
      "comma-separated directories file: artifacts and local databases may live in (never /proc, /sys, /dev; " +
      "symlinks out of them are refused); without it, only this runner's own storage root (--storage when file:, " +
      "else ~/.studioml/storage) for requests from local queues and nowhere for requests from brokers",
    default: "",
  },
  {
    name: "sandbox",
    type: "enum",
    choices: ["auto", "bwrap", "none"],
    description:
      "isolation of experiments and environment builds: bwrap (bubblewrap; refuse to start without it), auto " +
      "(bwrap where it works, else a loud warning and none), none (no isolation: single-tenant machines only)",
    default: "auto",
  },
  {
    name: "job-user",
    type: "string",
    description: "user (name or uid:gid) experiments and pip run as when the runner is root",
    defaultText: "65534:65534 (nobody)",
  },
  {
    name: "pip-index-url",
    type: "string",
    description:
      "the package index every environment build uses (PIP_INDEX_URL, pip's own variable; file:///… for a " +
      "local simple index)",
  },
  {
    name: "pip-extra-index-url",
    type: "string",
    description: "more indexes, separated by spaces or commas (PIP_EXTRA_INDEX_URL)",
  },
  {
    name: "pip-find-links",
    type: "string",
    description:
      "wheelhouse directories or pages to take distributions from, separated by spaces or commas (PIP_FIND_LINKS)",
  },
  {
    name: "pip-no-index",
    type: "boolean",
    description: "no package index at all: only --pip-find-links (air-gapped machines; PIP_NO_INDEX)",
    default: "false",
  },
  {
    name: "allow-pip-urls",
    type: "boolean",
    description:
      "accept requirement lines that are URLs, paths, -e/-r or pip options (otherwise only name[extras] op " +
      "version pins)",
    default: "false",
  },
  {
    name: "allow-private-endpoints",
    type: "boolean",
    description:
      "let requests name loopback and private-range (RFC 1918, ULA) storage, database and artifact endpoints",
    default: "false",
  },
  {
    name: "storage-identity",
    type: "enum",
    choices: ["request", "runner"],
    description:
      "whose credentials serve a request's storage: only the request's own (request), or the runner's for " +
      "requests that bring none, within --storage-identity-allow (runner)",
    default: "request",
  },
  {
    name: "storage-identity-allow",
    type: "string",
    description:
      "with --storage-identity runner: comma-separated queue-prefix=scheme://bucket/prefix entries the runner's " +
      "identity may serve",
    default: "",
  },
  {
    name: "admin-token-file",
    type: "path",
    description: "file holding the bearer token that POST /drain and /resume require (without it they are refused)",
  },
  {
    name: "http-allowed-hosts",
    type: "string",
    description: "comma-separated Host header values the HTTP endpoint answers (besides the address it listens on)",
    default: "",
  },
  {
    name: "status-logs",
    type: "boolean",
    description: "include experiments' recent log lines in /status and the status page",
    default: "false",
  },
  {
    name: "max-request-age",
    type: "duration",
    description: "refuse requests older than this (by experiment.time_added; 0 = no limit)",
    default: "0",
  },
  {
    name: "sandbox-network",
    type: "enum",
    choices: ["shared", "loopback"],
    description: "network of sandboxed experiments: the host's, or a private loopback only",
    default: "shared",
  },
  {
    name: "cgroup-limits",
    type: "boolean",
    description: "enforce each experiment's ram and cpus with a cgroup where the runner may create one",
    default: "true",
  },
  {
    name: "cpu-only",
    type: "boolean",
    description: "run without GPUs even where NVML or CUDA_VISIBLE_DEVICES says there are some",
    default: "false",
  },
  {
    name: "gpu-share",
    type: "boolean",
    description: "let single-GPU experiments that state gpuMem share a card while their gpuMem fits it",
    default: "false",
  },
  {
    name: "gpu-slots-per-card",
    type: "integer",
    description: "GPU slots per card (the Go runner's slot convention); 1 = a slot is a card",
    default: "1",
  },
  {
    name: "gpu-refresh-interval",
    type: "duration",
    description: "how often NVML is read again; cards with uncorrected ECC errors go out of service (0 = never)",
    default: "30s",
  },
  {
    name: "max-deliveries",
    type: "integer",
    description: "deliveries before a message moves to the failed place",
    default: String(DEFAULT_MAX_DELIVERIES),
  },
  { name: "max-duration", type: "duration", description: "cap on any experiment's run time (0 = none)", default: "0" },
  {
    name: "limit-tasks",
    type: "integer",
    description: "exit after this many experiments (0 = no limit)",
    default: "0",
  },
  {
    name: "limit-idle-duration",
    type: "duration",
    description: "exit after being idle this long (0 = never)",
    default: "0",
  },
  {
    name: "shutdown-grace",
    type: "duration",
    description: "on SIGTERM, how long running experiments may go on before they are checkpointed and requeued",
    default: "10m",
  },
  {
    name: "allow-env-secrets",
    type: "boolean",
    description: "let config.env %NAME% references expand the runner's secret variables",
    default: "false",
  },
  {
    name: "prom-address",
    type: "string",
    description:
      "serve /metrics, /healthz, /readyz, /status, the status page and POST /drain, /resume on host:port or " +
      ":port (POSTs need --admin-token-file; Host must name this runner, see --http-allowed-hosts); empty = off",
    default: "",
  },
  { name: "log-format", type: "enum", choices: ["human", "json"], description: "runner log format", default: "human" },
  { name: "debug", type: "boolean", description: "verbose logs; keep experiment directories", default: "false" },
] as const satisfies readonly OptionSpec[];

export function defaultQueueRoot(): string {
  return process.env.STUDIOML_HOME ? join(process.env.STUDIOML_HOME, "queue") : join(homedir(), ".studioml", "queue");
}

export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "studio-runner");
}

export function defaultWorkingDir(): string {
  return tmpdir();
}
