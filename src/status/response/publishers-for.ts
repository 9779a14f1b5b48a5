// The report publishers for the queue backends a runner serves: each backend provides its own
// (QueueBackend.responsePublisher), reaching the report queues of its own system with the
// backend's own settings (broker address, SQS accounts and endpoint, Pub/Sub projects, local
// queue root), on clients of its own.

import type { ResponsePublisher } from "../../queue/response-publisher.ts";
import type { QueueBackend } from "../../queue/task-queue.ts";

export function responsePublishersFor(backends: QueueBackend[]): ResponsePublisher[] {
  return backends.map((b) => b.responsePublisher());
}
