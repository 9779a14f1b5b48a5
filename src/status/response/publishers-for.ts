// The report publishers for the queue backends a runner serves: each reaches the report queues
// of its own system with the backend's own settings (broker address, SQS accounts and endpoint,
// Pub/Sub projects, local queue root), on clients of its own.

import { LocalQueueBackend } from "../../queue/local/local-queue.ts";
import { PubsubProjectSet } from "../../queue/pubsub/project-set.ts";
import { PubsubQueueBackend } from "../../queue/pubsub/pubsub-queue.ts";
import type { ProjectSource } from "../../queue/pubsub/service-accounts.ts";
import { RabbitQueueBackend } from "../../queue/rabbitmq/rabbitmq-queue.ts";
import { SqsQueueBackend } from "../../queue/sqs/sqs-queue.ts";
import type { QueueBackend } from "../../queue/task-queue.ts";
import { LocalResponsePublisher } from "./local-publisher.ts";
import type { ResponsePublisher } from "./publisher.ts";
import { PubsubResponsePublisher } from "./pubsub-publisher.ts";
import { RabbitResponsePublisher } from "./rabbitmq-publisher.ts";
import { SqsResponsePublisher } from "./sqs-publisher.ts";

/** How long a scan of the Pub/Sub projects is reused. */
const PROJECT_SCAN_REUSE_MS = 30_000;

export function responsePublishersFor(backends: QueueBackend[]): ResponsePublisher[] {
  const out: ResponsePublisher[] = [];
  for (const b of backends) {
    if (b instanceof LocalQueueBackend) out.push(new LocalResponsePublisher(b.options.root));
    else if (b instanceof RabbitQueueBackend) out.push(new RabbitResponsePublisher(b.address));
    else if (b instanceof SqsQueueBackend) out.push(new SqsResponsePublisher({ accounts: b.options.accounts, region: b.options.region, endpoint: b.options.endpoint }));
    else if (b instanceof PubsubQueueBackend) {
      const source: ProjectSource = { projectId: b.options.projectId, keyFilename: b.options.keyFilename, origin: "queue backend" };
      out.push(new PubsubResponsePublisher(() => [source]));
    } else if (b instanceof PubsubProjectSet) {
      let scanned: { atMs: number; projects: ProjectSource[] } | undefined;
      out.push(
        new PubsubResponsePublisher(() => {
          if (!scanned || Date.now() - scanned.atMs > PROJECT_SCAN_REUSE_MS) scanned = { atMs: Date.now(), projects: b.options.scan().projects };
          return scanned.projects;
        }),
      );
    }
  }
  return out;
}
