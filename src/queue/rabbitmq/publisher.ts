// Publishing with publisher confirms: one confirm channel, one message at a time, always
// mandatory, so that a message no queue would take is an error instead of silently dropped.

import type { ConfirmChannel, Options } from "amqplib";
import { RetryableError } from "../../errors.ts";
import type { AmqpSession } from "./session.ts";

const DEFAULT_CONFIRM_TIMEOUT_MS = 60_000;

/** The broker confirmed the message but no queue was bound to take it (it was not stored). */
export class UnroutableError extends RetryableError {}

export class ConfirmedPublisher {
  private channel?: ConfirmChannel;
  private queue: Promise<unknown> = Promise.resolve();
  private returned = false;

  constructor(
    private readonly session: AmqpSession,
    private readonly confirmTimeoutMs = DEFAULT_CONFIRM_TIMEOUT_MS,
  ) {}

  /** Resolves once the broker confirmed the message into at least one queue. */
  publish(exchange: string, routingKey: string, body: Buffer, options: Options.Publish): Promise<void> {
    const run = this.queue.then(() => this.publishNow(exchange, routingKey, body, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async open(): Promise<ConfirmChannel> {
    if (this.channel) return this.channel;
    const ch = await this.session.confirmChannel();
    ch.on("return", () => (this.returned = true));
    ch.on("close", () => {
      if (this.channel === ch) this.channel = undefined;
    });
    this.channel = ch;
    return ch;
  }

  private async publishNow(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
  ): Promise<void> {
    const ch = await this.open();
    const where = `${exchange ? `exchange ${exchange}` : "the default exchange"}, routing key ${routingKey}`;
    this.returned = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Start over on a fresh channel: a late confirm or return must not be taken for the next message's.
        if (this.channel === ch) this.channel = undefined;
        void ch.close().catch(() => undefined);
        reject(
          new RetryableError(
            `the broker did not confirm a message to ${where} within ${this.confirmTimeoutMs / 1000}s`,
          ),
        );
      }, this.confirmTimeoutMs);
      try {
        ch.publish(exchange, routingKey, body, { ...options, mandatory: true }, (err: unknown) => {
          clearTimeout(timer);
          if (err) reject(new RetryableError(`the broker refused a message to ${where}`, {}, { cause: err }));
          else resolve();
        });
      } catch (err) {
        clearTimeout(timer);
        reject(new RetryableError(`could not publish to ${where}: ${(err as Error).message}`, {}, { cause: err }));
      }
    });
    // The broker sends basic.return before the confirm of the same message.
    if (this.returned) throw new UnroutableError(`no queue took the message published to ${where}`);
  }
}
