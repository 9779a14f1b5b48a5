// Reports for SQS queues: the queue `<queue>_response` in the first of the runner's SQS accounts
// that has it (looked up with GetQueueUrl, never created), one SendMessage per report.

import { GetQueueUrlCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { SqsAccount } from "./accounts.ts";
import { responseQueueName, type ResponsePublisher, type ResponseTarget } from "../response-publisher.ts";

/** SDK attempts per report call: reports are best effort and must not pile up behind retries. */
const MAX_ATTEMPTS = 2;

export type SqsResponseOptions = { accounts: SqsAccount[]; region?: string; endpoint?: string };

const missingQueue = (err: unknown) =>
  /NonExistentQueue|QueueDoesNotExist/.test(`${(err as Error)?.name} ${(err as { Code?: string })?.Code ?? ""}`);

export class SqsResponsePublisher implements ResponsePublisher {
  readonly kind = "sqs";
  private readonly clients: Array<{ name: string; client: SQSClient }>;

  constructor(options: SqsResponseOptions) {
    this.clients = options.accounts.map((account) => ({
      name: account.name,
      client: new SQSClient({
        region: account.region ?? options.region ?? "us-east-1",
        ...(options.endpoint ? { endpoint: options.endpoint, useQueueUrlAsEndpoint: false } : {}),
        ...(account.credentials ? { credentials: account.credentials } : {}),
        maxAttempts: MAX_ATTEMPTS,
      }),
    }));
  }

  async target(workQueue: string): Promise<ResponseTarget | undefined> {
    const queue = responseQueueName(workQueue);
    for (const { name, client } of this.clients) {
      let url: string | undefined;
      try {
        url = (await client.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
      } catch (err) {
        if (missingQueue(err)) continue;
        throw err;
      }
      if (!url) continue;
      const queueUrl = url;
      return {
        where: `SQS queue ${queue} (account ${name})`,
        send: async (body) => {
          await client.send(
            new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: new TextDecoder().decode(body) }),
          );
        },
      };
    }
    return undefined;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.client.destroy();
  }
}
