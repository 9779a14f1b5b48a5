// Reports for Google Pub/Sub queues: the topic `<queue>_response` in the first project served by
// this runner that has it (never created: the experimenter makes the topic and a subscription
// to read it). Projects come from the same scan as the queue backend's (--google-certs,
// --pubsub-project, GOOGLE_APPLICATION_CREDENTIALS).

import { PubSub, type Topic } from "@google-cloud/pubsub";
import type { ProjectSource } from "./service-accounts.ts";
import { responseQueueName, type ResponsePublisher, type ResponseTarget } from "../response-publisher.ts";

export class PubsubResponsePublisher implements ResponsePublisher {
  readonly kind = "pubsub";
  private readonly clients = new Map<string, PubSub>();
  private readonly topics = new Map<string, Topic>();

  constructor(private readonly projects: () => ProjectSource[]) {}

  private client(source: ProjectSource): PubSub {
    const key = `${source.projectId} ${source.keyFilename ?? ""}`;
    let c = this.clients.get(key);
    if (!c) this.clients.set(key, (c = new PubSub({ projectId: source.projectId, keyFilename: source.keyFilename })));
    return c;
  }

  async target(workQueue: string): Promise<ResponseTarget | undefined> {
    const name = responseQueueName(workQueue);
    for (const source of this.projects()) {
      const client = this.client(source);
      const [exists] = await client.topic(name).exists();
      if (!exists) continue;
      const key = `${source.projectId}/${name}`;
      let topic = this.topics.get(key);
      if (!topic) this.topics.set(key, (topic = client.topic(name, { batching: { maxMessages: 1 } })));
      const t = topic;
      return {
        where: `Pub/Sub topic ${name} (project ${source.projectId})`,
        send: async (body) => {
          await t.publishMessage({ data: Buffer.from(body.buffer, body.byteOffset, body.byteLength) });
        },
      };
    }
    return undefined;
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close().catch(() => undefined)));
  }
}
