// Hears about new work the moment it is published: an exclusive, server-named queue (amq.gen-…)
// bound to StudioML.topic for every studioml routing key and consumed without acks. A message
// arriving there only wakes the runner; the request itself is still taken from its own queue,
// one at a time, as before. The tap keeps at most one message (drop-head), so a burst of
// publishes costs the broker nothing lasting. Without the exchange (nothing bound yet) or while
// the connection is down there is no tap, and the ready-count poll finds the work instead.

import type { Channel } from "amqplib";
import { EXCHANGE } from "./conventions.ts";
import type { AmqpSession } from "./session.ts";

/** Every routing key studioml publishes with (StudioML.<queue>). */
const TAP_BINDING = "StudioML.#";
/** After a failed attempt (no exchange yet), wait this long before trying again. */
const RETRY_AFTER_MS = 10_000;

/** Names the broker gives server-named queues; never studioml work queues (clients cannot declare them). */
export const isServerNamedQueue = (name: string) => name.startsWith("amq.");

export class ExchangeTap {
  private channel?: Channel;
  private opening = false;
  private notBeforeMs = 0;
  /** Bumped by reset() and close(): an open() begun before then gives up what it made. */
  private generation = 0;

  constructor(
    private readonly session: AmqpSession,
    private readonly onPublish: () => void,
  ) {}

  /** Open the tap on the current connection unless it is open; does nothing when it cannot. */
  async open(): Promise<void> {
    if (this.channel || this.opening || !this.session.isUp || Date.now() < this.notBeforeMs) return;
    this.opening = true;
    const generation = this.generation;
    let ch: Channel | undefined;
    try {
      ch = await this.session.channel();
      const opened = ch;
      opened.on("close", () => {
        if (this.channel === opened) this.channel = undefined;
      });
      await opened.checkExchange(EXCHANGE);
      const q = await opened.assertQueue("", {
        exclusive: true,
        autoDelete: true,
        durable: false,
        arguments: { "x-max-length": 1, "x-overflow": "drop-head" },
      });
      await opened.bindQueue(q.queue, EXCHANGE, TAP_BINDING);
      await opened.consume(q.queue, () => this.onPublish(), { noAck: true });
      if (generation !== this.generation) throw new Error("reset meanwhile");
      this.channel = opened;
    } catch {
      // No exchange yet, or the connection went: the poll covers it; try again a little later.
      this.notBeforeMs = Date.now() + RETRY_AFTER_MS;
      void ch?.close().catch(() => undefined);
    } finally {
      if (generation === this.generation) this.opening = false;
    }
  }

  /** After a reconnect: try at once. */
  reset(): void {
    this.generation++;
    this.channel = undefined;
    this.opening = false;
    this.notBeforeMs = 0;
  }

  /** No more taps; the channel goes with the connection (never awaited: it may be dead). */
  close(): void {
    this.generation++;
    const ch = this.channel;
    this.channel = undefined;
    this.notBeforeMs = Infinity;
    void ch?.close().catch(() => undefined);
  }
}
