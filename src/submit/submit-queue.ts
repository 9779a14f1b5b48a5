// Which queue `submit` publishes to: RabbitMQ (--amqp-url), SQS (--sqs-certs or --sqs-default-account), Google Pub/Sub
// (--google-certs / --pubsub-project, or PUBSUB_EMULATOR_HOST with a project) or a local
// directory, built from the same settings tables the daemon uses so both read the same flags.

import { DEFAULT_MAX_DELIVERIES } from "../config/options.ts";
import { LocalQueueBackend } from "../queue/local/local-queue.ts";
import { pubsubBackendFromSettings, pubsubSettingsProblems } from "../queue/pubsub/settings.ts";
import { RabbitQueueBackend } from "../queue/rabbitmq/rabbitmq-queue.ts";
import { sqsBackendFromSettings, sqsSettingsProblems } from "../queue/sqs/settings.ts";
import type { QueueBackend } from "../queue/task-queue.ts";
import type { SubmitSettings } from "./submit-options.ts";

/** The queue settings of submit; --queue-root resolved to a directory. */
export type SubmitQueueSettings = Pick<
  SubmitSettings,
  | "amqp-url"
  | "amqp-queue-type"
  | "sqs-certs"
  | "sqs-default-account"
  | "sqs-endpoint"
  | "aws-region"
  | "google-certs"
  | "pubsub-project"
> & { "queue-root": string };

export type SubmitQueue = {
  backend: QueueBackend;
  /** The queue name when --queue is not given. */
  defaultQueue: string;
  /** Only a local queue lets `--wait` watch the message itself; the others are followed through storage. */
  local: boolean;
};

const QUIET = { info: () => undefined, warn: () => undefined };

/** Problems with the queue flags, for submit's list of problems. */
export function submitQueueProblems(flags: SubmitQueueSettings, env: Record<string, string | undefined>): string[] {
  const chosen = [
    flags["amqp-url"] && "--amqp-url",
    (flags["sqs-certs"] || flags["sqs-default-account"]) && "--sqs-certs/--sqs-default-account",
    (flags["google-certs"] || flags["pubsub-project"]) && "--google-certs/--pubsub-project",
  ].filter(Boolean);
  const problems: string[] = [];
  if (chosen.length > 1) problems.push(`${chosen.join(", ")}: choose one queue system`);
  problems.push(...sqsSettingsProblems(flags, env));
  if (flags["google-certs"] || flags["pubsub-project"]) problems.push(...pubsubSettingsProblems(flags));
  return problems;
}

export function submitQueue(flags: SubmitQueueSettings, env: Record<string, string | undefined>): SubmitQueue {
  if (flags["amqp-url"]) {
    return {
      backend: new RabbitQueueBackend({
        url: flags["amqp-url"],
        maxDeliveries: DEFAULT_MAX_DELIVERIES,
        queueType: flags["amqp-queue-type"],
      }),
      defaultQueue: "rmq_default",
      local: false,
    };
  }
  if (flags["sqs-certs"] || flags["sqs-default-account"])
    return { backend: sqsBackendFromSettings(flags, QUIET, env)!, defaultQueue: "sqs_default", local: false };
  if (flags["google-certs"] || flags["pubsub-project"]) {
    const backend = pubsubBackendFromSettings(flags, QUIET);
    if (backend) return { backend, defaultQueue: "pubsub_default", local: false };
  }
  return {
    backend: new LocalQueueBackend({ root: flags["queue-root"], maxDeliveries: DEFAULT_MAX_DELIVERIES }),
    defaultQueue: "local",
    local: true,
  };
}
