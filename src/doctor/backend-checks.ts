// `doctor`'s reachability checks: every queue backend the settings configure (the local queue
// root always; RabbitMQ, SQS, Pub/Sub when set) reached with its own credentials and its queues
// listed, taking no work; and this machine's own storage (--storage) reached the same way.

import { defaultQueueRoot, type RUN_OPTIONS } from "../config/options.ts";
import type { SettingsOf } from "../config/settings.ts";
import { storageUrl } from "../config/storage-options.ts";
import { errorMessage } from "../errors.ts";
import { LocalQueueBackend } from "../queue/local/local-queue.ts";
import { pubsubBackendFromSettings, type PubsubSettings } from "../queue/pubsub/settings.ts";
import { rabbitBackendFromSettings, type RabbitSettings } from "../queue/rabbitmq/settings.ts";
import { sqsBackendFromSettings, type SqsSettings } from "../queue/sqs/settings.ts";
import type { QueueBackend, QueueFilter } from "../queue/task-queue.ts";
import { filePath } from "../storage/file/file-store.ts";
import { DEFAULT_BUCKET } from "../submit/submit-options.ts";
import { submitStorage } from "../submit/submit-storage.ts";
import { type CheckResult, fail, ok, within } from "./check-result.ts";
import { dirCheck } from "./machine-checks.ts";

/** The settings the backends and the storage are made from (those of `run`). */
export type ReachSettings = RabbitSettings &
  SqsSettings &
  PubsubSettings &
  Pick<
    SettingsOf<typeof RUN_OPTIONS>,
    "queue-root" | "queue-match" | "queue-mismatch" | "max-deliveries" | "storage" | "gcs-endpoint"
  > & { "google-certs"?: string };

/** Log lines the backends write while being checked; not shown (the check's answer says it all). */
const QUIET = { info: () => undefined, warn: () => undefined };

const FIXES: Record<string, string> = {
  local: "make --queue-root writable by the runner's user",
  rabbitmq:
    "check --amqp-url (host, port, user, password, vhost) and that the management API answers " +
    "(rabbitmq-plugins enable rabbitmq_management; --amqp-mgt-url when it is elsewhere)",
  sqs:
    "check the AWS identity (--sqs-certs, or the AWS credential chain with --sqs-default-account), --aws-region " +
    "and --sqs-endpoint; the identity needs sqs:ListQueues",
  pubsub:
    "check --google-certs, GOOGLE_APPLICATION_CREDENTIALS or --pubsub-project; the identity needs " +
    "pubsub.subscriptions.list",
};

export async function queueChecks(settings: ReachSettings, timeoutMs: number): Promise<CheckResult[]> {
  const filter: QueueFilter = { match: settings["queue-match"], mismatch: settings["queue-mismatch"] };
  const backends: QueueBackend[] = [
    new LocalQueueBackend({
      root: settings["queue-root"] ?? defaultQueueRoot(),
      filter,
      maxDeliveries: settings["max-deliveries"],
      log: QUIET.info,
    }),
  ];
  const rabbit = rabbitBackendFromSettings(settings, QUIET, filter);
  if (rabbit) backends.push(rabbit);
  const sqs = sqsBackendFromSettings(settings, QUIET, process.env, filter);
  if (sqs) backends.push(sqs);
  const pubsub = pubsubBackendFromSettings(settings, QUIET, filter);
  if (pubsub) backends.push(pubsub);
  return Promise.all(
    backends.map(async (b) => {
      const name = `queue ${b.kind}`;
      try {
        return ok(name, await within(b.check(timeoutMs), timeoutMs + 1_000, b.kind));
      } catch (err) {
        return fail(name, errorMessage(err), FIXES[b.kind]);
      } finally {
        await b.close().catch(() => undefined);
      }
    }),
  );
}

/** --storage: a file: root must be writable; s3:// and gs:// are asked about a key that need not exist. */
export async function storageCheck(
  settings: ReachSettings,
  s3Endpoint: string | undefined,
  timeoutMs: number,
): Promise<CheckResult> {
  const url = storageUrl(settings.storage);
  if (/^file:/i.test(url)) {
    const r = dirCheck("storage", "--storage", filePath(url));
    return { ...r, name: "storage" };
  }
  const name = "storage";
  try {
    const storage = submitStorage(
      {
        storage: url,
        bucket: DEFAULT_BUCKET,
        "s3-endpoint": s3Endpoint,
        "google-certs": settings["google-certs"],
        "gcs-endpoint": settings["gcs-endpoint"],
      },
      process.env,
    );
    const probe = storage.locationOf("studio-runner-doctor-probe");
    await within(storage.store.head(probe), timeoutMs, url);
    return ok(name, `${url}: bucket ${storage.bucket} answers with these credentials`);
  } catch (err) {
    return fail(
      name,
      `${url}: ${errorMessage(err)}`,
      /^s3:/i.test(url)
        ? "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the bucket and --s3-endpoint"
        : "check --google-certs or GOOGLE_APPLICATION_CREDENTIALS and the bucket",
    );
  }
}
