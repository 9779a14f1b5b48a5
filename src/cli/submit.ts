// `studio-runner submit`: queue an experiment without the Python studioml client.

import { defineCommand } from "citty";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defaultQueueRoot } from "../config/options.ts";
import { parseDurationMs, parseSizeBytes } from "../config/units.ts";
import { errorMessage } from "../errors.ts";
import { RUNNER_UMASK } from "../runner/private-dirs.ts";
import { buildRequest } from "../submit/build-request.ts";
import { follow } from "../submit/follow.ts";
import { submitQueue, submitQueueProblems } from "../submit/submit-queue.ts";
import { storageProblems, submitStorage } from "../submit/submit-storage.ts";
import { uploadWorkspace } from "../submit/workspace-upload.ts";

const VALUE_FLAGS = [
  "queue",
  "queue-root",
  "storage",
  "bucket",
  "s3-endpoint",
  "workspace",
  "experiment",
  "pythonver",
  "requirements",
  "cpus",
  "ram",
  "hdd",
  "gpus",
  "max-duration",
  "lifetime",
  "save-frequency",
  "env",
  "wait-timeout",
  "amqp-url",
  "amqp-queue-type",
  "sqs-certs",
  "sqs-endpoint",
  "aws-region",
  "google-certs",
  "pubsub-project",
  "gcs-endpoint",
];
const BOOL_FLAGS = ["wait", "help", "h"];

/** Split argv into our flags and the script with its own arguments (the first positional onward). */
export function splitSubmitArgv(raw: string[]): { ours: string[]; script?: string; scriptArgs: string[] } {
  const ours: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const a = raw[i]!;
    if (a === "--") return { ours, script: raw[i + 1], scriptArgs: raw.slice(i + 2) };
    if (a.startsWith("-")) {
      ours.push(a);
      const name = a.replace(/^--?/, "").split("=")[0]!;
      if (!a.includes("=") && VALUE_FLAGS.includes(name) && i + 1 < raw.length) ours.push(raw[++i]!);
      continue;
    }
    return { ours, script: a, scriptArgs: raw.slice(i + 1) };
  }
  return { ours, scriptArgs: [] };
}

export const submitCommand = defineCommand({
  meta: { name: "submit", description: "Queue an experiment: submit [options] SCRIPT [ARGS...]" },
  args: {
    queue: { type: "string", description: "queue name [default: local]" },
    "queue-root": {
      type: "string",
      description: "local queue directory [default: ~/.studioml/queue] (env QUEUE_ROOT)",
    },
    storage: {
      type: "string",
      description:
        "a file: URL (storage root), s3://host:port/bucket (S3; credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or gs://bucket (GCS; credentials from --google-certs or GOOGLE_APPLICATION_CREDENTIALS) [default: file://~/.studioml/storage]",
    },
    bucket: {
      type: "string",
      description:
        "bucket (a folder under a file: root; for s3:// when the URL names none) [default: studioml-artifacts]",
    },
    "s3-endpoint": {
      type: "string",
      description: "S3 server as http(s)://host[:port]: its scheme (default https), and its host for s3://bucket",
    },
    workspace: { type: "string", description: "directory to send as the workspace [default: .]" },
    experiment: { type: "string", description: "experiment key [default: <time>_<uuid>]" },
    pythonver: { type: "string", description: "python version the runner should use [default: 3]" },
    requirements: {
      type: "string",
      description: "pip requirements file [default: <workspace>/requirements.txt if present]",
    },
    cpus: { type: "string", description: "CPUs needed [default: 1]" },
    ram: { type: "string", description: "RAM needed, e.g. 2g [default: 1g]" },
    hdd: { type: "string", description: "disk needed, e.g. 3g [default: 1g]" },
    gpus: { type: "string", description: "GPUs needed [default: 0]" },
    "max-duration": { type: "string", description: "time limit per attempt, e.g. 20m" },
    lifetime: { type: "string", description: "the request is void after this long, e.g. 30m" },
    "save-frequency": { type: "string", description: "checkpoint interval [default: 1m]" },
    env: { type: "string", description: "NAME=VALUE pairs for the experiment, comma-separated" },
    wait: { type: "boolean", description: "wait for the experiment and print its log; exit 0 only when it succeeded" },
    "wait-timeout": { type: "string", description: "give up waiting after this long [default: none]" },
    "amqp-url": {
      type: "string",
      description:
        "publish to RabbitMQ (StudioML.topic, persistent, confirmed) instead of a local queue (env AMQP_URL)",
    },
    "amqp-queue-type": {
      type: "string",
      description: "classic or quorum: the type of the queue declared when it does not exist yet [default: classic]",
    },
    "sqs-certs": {
      type: "string",
      description:
        "send to SQS: a directory of per-account AWS credentials/config sub-directories, as for run (the queue is made when missing)",
    },
    "sqs-endpoint": {
      type: "string",
      description: "SQS-compatible server instead of AWS [default: $AWS_ENDPOINT_URL_SQS or $AWS_ENDPOINT_URL]",
    },
    "aws-region": {
      type: "string",
      description: "AWS region for SQS accounts whose config names none [default: $AWS_REGION or us-east-1]",
    },
    "google-certs": {
      type: "string",
      description:
        "publish to Google Pub/Sub: a directory of service-account JSON files (the first project's topic <queue> and subscription <queue>_sub are made when missing)",
    },
    "pubsub-project": {
      type: "string",
      description:
        "publish to this Google project's Pub/Sub with GOOGLE_APPLICATION_CREDENTIALS or PUBSUB_EMULATOR_HOST",
    },
    "gcs-endpoint": {
      type: "string",
      description: "GCS JSON API server other than Google's, for gs:// storage (unauthenticated)",
    },
  },
  async run({ rawArgs }) {
    // The queue message (with its credentials) and everything else written here is private.
    process.umask(RUNNER_UMASK);
    const { ours, script, scriptArgs } = splitSubmitArgv(rawArgs);
    const flags = parseOurFlags(ours);
    const problems: string[] = [];
    if (!script) problems.push("SCRIPT: missing (usage: studio-runner submit [options] SCRIPT [ARGS...])");
    const workspace = resolve(flags.workspace ?? ".");
    if (!existsSync(workspace)) problems.push(`--workspace: ${workspace} does not exist`);
    if (script && existsSync(workspace) && script !== "-m" && !existsSync(join(workspace, script))) {
      problems.push(`SCRIPT: ${script} is not in the workspace ${workspace}`);
    }
    for (const f of ["ram", "hdd"] as const)
      if (flags[f] && parseSizeBytes(flags[f]) === undefined)
        problems.push(`--${f}: ${JSON.stringify(flags[f])} is not a size`);
    for (const f of ["max-duration", "lifetime", "save-frequency", "wait-timeout"] as const) {
      if (flags[f] && parseDurationMs(flags[f]) === undefined)
        problems.push(`--${f}: ${JSON.stringify(flags[f])} is not a duration`);
    }
    problems.push(...storageProblems(flags, process.env));
    const queueFlags = {
      ...flags,
      "queue-root": resolve(flags["queue-root"] ?? process.env.QUEUE_ROOT ?? defaultQueueRoot()),
      "amqp-url": flags["amqp-url"] ?? process.env.AMQP_URL,
    };
    problems.push(...submitQueueProblems(queueFlags, process.env));
    const env: Record<string, string> = {};
    for (const pair of (flags.env ?? "").split(",").filter(Boolean)) {
      const eq = pair.indexOf("=");
      if (eq <= 0) problems.push(`--env: ${JSON.stringify(pair)} is not NAME=VALUE`);
      else env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    if (problems.length) {
      process.stderr.write(
        `studio-runner submit: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join("\n")}\n`,
      );
      process.exit(2);
    }

    const storage = submitStorage(flags, process.env);
    const { store, locationOf } = storage;
    const queueRoot = queueFlags["queue-root"];
    const target = submitQueue(queueFlags, process.env);
    const queue = flags.queue ?? target.defaultQueue;
    const key = flags.experiment ?? `${Math.floor(Date.now() / 1000)}_${crypto.randomUUID()}`;
    const reqFile =
      flags.requirements ??
      (existsSync(join(workspace, "requirements.txt")) ? join(workspace, "requirements.txt") : undefined);
    const pythonenv = reqFile
      ? readFileSync(reqFile, "utf8")
          .split("\n")
          .map((l) => l.trim())
          .filter((l) => l && !l.startsWith("#"))
      : [];

    let uploaded;
    try {
      await storage.prepare();
      uploaded = await uploadWorkspace(workspace, store, locationOf);
    } catch (err) {
      process.stderr.write(`studio-runner submit: cannot store the workspace: ${errorMessage(err)}\n`);
      process.exit(1);
    }
    const message = buildRequest({
      key,
      script: script!,
      args: scriptArgs,
      pythonenv,
      pythonver: flags.pythonver ?? "3",
      resources: {
        cpus: Number(flags.cpus ?? 1),
        ram: flags.ram ?? "1g",
        hdd: flags.hdd ?? "1g",
        gpus: Number(flags.gpus ?? 0),
      },
      maxDuration: flags["max-duration"],
      lifetime: flags.lifetime,
      saveFrequency: flags["save-frequency"],
      env,
      workspaceKey: uploaded.key,
      locationOf,
      bucket: storage.artifactBucket,
      credentials: storage.credentials,
      storage: storage.config,
    });
    const backend = target.backend;
    let id: string;
    try {
      id = await backend.publish(queue, JSON.stringify(message, null, 1));
    } catch (err) {
      process.stderr.write(
        `studio-runner submit: cannot queue the request on ${backend.kind} queue ${queue}: ${errorMessage(err)}\n`,
      );
      process.exit(1);
    } finally {
      await backend.close().catch(() => undefined);
    }
    process.stdout.write(`${key}\n`);
    if (!flags.wait) return;

    const result = await follow({
      place: target.local ? { kind: "local", queueRoot, queue, id } : { kind: "storage" },
      store,
      outputLocation: locationOf(`experiments/${key}/output.tar`),
      resultsLocation: locationOf(`experiments/${key}/_results.tar`),
      timeoutMs: flags["wait-timeout"] ? parseDurationMs(flags["wait-timeout"])! : 0,
    });
    if (result.state === "timeout") {
      process.stderr.write(`studio-runner submit: experiment ${key} still not done after ${flags["wait-timeout"]}\n`);
      process.exit(3);
    }
    if (result.log) process.stdout.write(result.log.endsWith("\n") ? result.log : `${result.log}\n`);
    if (result.state === "failed") {
      process.stderr.write(`studio-runner submit: experiment ${key} failed: ${result.reason}\n`);
      process.exit(1);
    }
    if (result.exitMsg && result.exitMsg !== "exited with code 0") {
      process.stderr.write(`studio-runner submit: experiment ${key} ${result.exitMsg}\n`);
      process.exit(1);
    }
  },
});

function parseOurFlags(tokens: string[]): Record<string, string | undefined> & { wait?: string } {
  const out: Record<string, string | undefined> = {};
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const [rawName, inline] = t.replace(/^--?/, "").split(/=(.*)/s) as [string, string | undefined];
    if (BOOL_FLAGS.includes(rawName)) {
      out[rawName] = inline ?? "true";
      continue;
    }
    if (!VALUE_FLAGS.includes(rawName)) {
      process.stderr.write(`studio-runner submit: unknown flag ${t}\n`);
      process.exit(2);
    }
    out[rawName] = inline ?? tokens[++i];
  }
  return out;
}
