// Reports for RabbitMQ queues: `<queue>_response` must already exist (checked with a passive
// declare, as the Go runner checked it through the management API); reports go through the
// default exchange straight to that queue (so it need not be bound to StudioML.topic), persistent,
// with publisher confirms, on a connection of their own that never holds up the work connection.

import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from "amqplib";
import { hostname } from "node:os";
import type { AmqpAddress } from "./broker-address.ts";
import { responseQueueName, type ResponsePublisher, type ResponseTarget } from "../response-publisher.ts";

const CONTENT_TYPE = "application/json";
const APP_ID = "studio-runner";
/** After a failed connect, reports wait this long before the next try (they are dropped meanwhile). */
const RECONNECT_PAUSE_MS = 5_000;
const CONNECT_TIMEOUT_MS = 10_000;

export class RabbitResponsePublisher implements ResponsePublisher {
  readonly kind = "rabbitmq";
  private connection?: Promise<{ model: ChannelModel; confirm: ConfirmChannel }>;
  private failedAtMs = -Infinity;
  private closed = false;

  constructor(private readonly address: AmqpAddress) {}

  private connect(): Promise<{ model: ChannelModel; confirm: ConfirmChannel }> {
    if (this.connection) return this.connection;
    if (Date.now() - this.failedAtMs < RECONNECT_PAUSE_MS)
      return Promise.reject(new Error("not connected to RabbitMQ (retrying shortly)"));
    const made = (async () => {
      const model = await amqp.connect(this.address.connect, {
        timeout: CONNECT_TIMEOUT_MS,
        clientProperties: { connection_name: `studio-runner reports ${hostname()} pid ${process.pid}` },
      });
      const forget = () => {
        if (this.connection === made) this.connection = undefined;
      };
      model.on("error", forget);
      model.on("close", forget);
      const confirm = await model.createConfirmChannel();
      confirm.on("error", () => undefined);
      confirm.on("close", forget);
      return { model, confirm };
    })();
    made.catch(() => {
      if (this.connection === made) this.connection = undefined;
      this.failedAtMs = Date.now();
    });
    this.connection = made;
    return made;
  }

  async target(workQueue: string): Promise<ResponseTarget | undefined> {
    if (this.closed) return undefined;
    const queue = responseQueueName(workQueue);
    const { model } = await this.connect();
    // A passive declare of a missing queue closes its channel: use a throwaway one.
    let probe: Channel | undefined;
    try {
      probe = await model.createChannel();
      probe.on("error", () => undefined);
      await probe.checkQueue(queue);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    } finally {
      await probe?.close().catch(() => undefined);
    }
    return {
      where: `RabbitMQ queue ${queue} at ${this.address.redacted}`,
      send: async (body) => {
        const { confirm } = await this.connect();
        await new Promise<void>((resolve, reject) => {
          confirm.sendToQueue(
            queue,
            Buffer.from(body.buffer, body.byteOffset, body.byteLength),
            { persistent: true, contentType: CONTENT_TYPE, appId: APP_ID, timestamp: Math.floor(Date.now() / 1000) },
            (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()),
          );
        });
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.connection;
    this.connection = undefined;
    if (c) await c.then((x) => x.model.close()).catch(() => undefined);
  }
}
