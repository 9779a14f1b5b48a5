// Which queue `submit` publishes to: RabbitMQ (--amqp-url), SQS (--sqs-certs), Google Pub/Sub
// (--google-certs / --pubsub-project, or PUBSUB_EMULATOR_HOST with a project) or a local
// directory, built from the same settings tables the daemon uses so both read the same flags.

import type { Settings } from "../config/load.ts";
import { LocalQueueBackend } from "../queue/local/local-queue.ts";
import { pubsubBackendFromSettings, pubsubSettingsProblems } from "../queue/pubsub/settings.ts";
import { RabbitQueueBackend } from "../queue/rabbitmq/rabbitmq-queue.ts";
import { sqsBackendFromSettings, sqsSettingsProblems } from "../queue/sqs/settings.ts";
import type { QueueBackend } from "../queue/task-queue.ts";

export type SubmitQueueFlags = {
  "queue-root": string;
  "amqp-url"?: string;
  "amqp-queue-type"?: string;
  "sqs-certs"?: string;
  "sqs-endpoint"?: string;
  "aws-region"?: string;
  "google-certs"?: string;
  "pubsub-project"?: string;
};

export type SubmitQueue = {
  backend: QueueBackend;
  /** The queue name when --queue is not given. */
  defaultQueue: string;
  /** Only a local queue lets `--wait` watch the message itself; the others are followed through storage. */
  local: boolean;
};

const QUIET = { info: () => undefined, warn: () => undefined };

function settingsOf(flags: SubmitQueueFlags): Settings {
  return {
    "sqs-certs": flags["sqs-certs"],
    "sqs-endpoint": flags["sqs-endpoint"],
    "aws-region": flags["aws-region"],
    "google-certs": flags["google-certs"],
    "pubsub-project": flags["pubsub-project"],
    "max-deliveries": 3,
  };
}

/** Problems with the queue flags, for submit's list of problems. */
export function submitQueueProblems(flags: SubmitQueueFlags, env: Record<string, string | undefined>): string[] {
  const chosen = [
    flags["amqp-url"] && "--amqp-url",
    flags["sqs-certs"] && "--sqs-certs",
    (flags["google-certs"] || flags["pubsub-project"]) && "--google-certs/--pubsub-project",
  ].filter(Boolean);
  const problems: string[] = [];
  if (chosen.length > 1) problems.push(`${chosen.join(", ")}: choose one queue system`);
  const settings = settingsOf(flags);
  if (flags["sqs-certs"]) problems.push(...sqsSettingsProblems(settings, env));
  else if (flags["sqs-endpoint"]) problems.push("--sqs-endpoint is set but --sqs-certs is not");
  if (flags["google-certs"] || flags["pubsub-project"]) problems.push(...pubsubSettingsProblems(settings));
  if (flags["amqp-queue-type"] && !["classic", "quorum"].includes(flags["amqp-queue-type"])) {
    problems.push(`--amqp-queue-type: ${JSON.stringify(flags["amqp-queue-type"])} — expected classic or quorum`);
  }
  return problems;
}

export function submitQueue(flags: SubmitQueueFlags, env: Record<string, string | undefined>): SubmitQueue {
  if (flags["amqp-url"]) {
    const queueType = flags["amqp-queue-type"] === "quorum" ? "quorum" : "classic";
    return {
      backend: new RabbitQueueBackend({ url: flags["amqp-url"], maxDeliveries: 3, queueType }),
      defaultQueue: "rmq_default",
      local: false,
    };
  }
  const settings = settingsOf(flags);
  if (flags["sqs-certs"])
    return { backend: sqsBackendFromSettings(settings, QUIET, env)!, defaultQueue: "sqs_default", local: false };
  if (flags["google-certs"] || flags["pubsub-project"]) {
    const backend = pubsubBackendFromSettings(settings, QUIET);
    if (backend) return { backend, defaultQueue: "pubsub_default", local: false };
  }
  return {
    backend: new LocalQueueBackend({ root: flags["queue-root"], maxDeliveries: 3 }),
    defaultQueue: "local",
    local: true,
  };
}
