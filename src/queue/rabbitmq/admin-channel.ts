// A channel for declarations and passive checks. The broker answers some of them by closing the
// channel (404: no such queue; 406: declared differently), so it never holds messages and is
// reopened on the next use.

import type { Channel } from "amqplib";
import { EXCHANGE, EXCHANGE_OPTIONS, routingKey, type QueueType } from "./conventions.ts";
import type { AmqpSession } from "./session.ts";

/** "missing": the broker said the queue does not exist; "unknown": it could not be asked. */
export type QueueState = { ready: number } | "missing" | "unknown";

export const isNotFound = (err: unknown) => (err as { code?: unknown } | undefined)?.code === 404;
const isPreconditionFailed = (err: unknown) => (err as { code?: unknown } | undefined)?.code === 406;

export class AdminChannel {
  private channel?: Channel;
  private opening?: Promise<Channel>;

  constructor(private readonly session: AmqpSession) {}

  /** Ready (not yet delivered) messages of a queue. */
  async queueState(queue: string): Promise<QueueState> {
    try {
      const reply = await (await this.open()).checkQueue(queue);
      return { ready: reply.messageCount };
    } catch (err) {
      return isNotFound(err) ? "missing" : "unknown";
    }
  }

  /** A durable queue of the given type; one that exists already is used as it is. */
  async declareQueue(queue: string, type: QueueType): Promise<void> {
    try {
      await (await this.open()).assertQueue(queue, {
        durable: true,
        ...(type === "quorum" ? { arguments: { "x-queue-type": "quorum" } } : {}),
      });
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      await (await this.open()).checkQueue(queue);
    }
  }

  /** The studioml exchange, a durable queue, and the binding StudioML.<queue> between them. */
  async declareWorkQueue(queue: string, type: QueueType): Promise<void> {
    try {
      await (await this.open()).assertExchange(EXCHANGE, "topic", EXCHANGE_OPTIONS);
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      await (await this.open()).checkExchange(EXCHANGE);
    }
    await this.declareQueue(queue, type);
    await (await this.open()).bindQueue(queue, EXCHANGE, routingKey(queue));
  }

  private open(): Promise<Channel> {
    if (this.channel) return Promise.resolve(this.channel);
    this.opening ??= this.session
      .channel()
      .then((ch) => {
        ch.on("close", () => {
          if (this.channel === ch) this.channel = undefined;
        });
        this.channel = ch;
        return ch;
      })
      .finally(() => (this.opening = undefined));
    return this.opening;
  }
}
