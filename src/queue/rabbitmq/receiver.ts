// Taking RabbitMQ messages one at a time (basic.get, manual ack) from the head of a queue: a
// message is held only once the runner accepts it; refused ones go back at once; copies this
// runner already knows (finished while cut off, or still running here) are dealt with on sight.

import type { GetMessage } from "amqplib";
import { errorMessage, RetryableError } from "../../errors.ts";
import { RabbitDelivery, type DeliveryHost } from "./delivery.ts";
import { HoldingChannel } from "./holding-channel.ts";
import type { HoldRegistry } from "./hold-registry.ts";
import { copyProperties, displayId, messageFacts, newReason, type MessageFacts } from "./message-copy.ts";
import type { NewWorkWatch } from "./new-work-watch.ts";
import type { AmqpSession } from "./session.ts";

export type ReceiverDeps = {
  session: AmqpSession;
  host: DeliveryHost;
  holds: HoldRegistry;
  watch: NewWorkWatch;
  /** The broker says the queue does not exist. */
  onMissing(queue: string): void;
  /** A delivery was handed out. */
  onTaken(): void;
};

/** Messages one take may look at in all (refused, dealt with, taken). */
const MAX_GETS_PER_TAKE = 32;
const GET_TIMEOUT_MS = 10_000;

export class Receiver {
  private getter?: HoldingChannel;
  private takes: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ReceiverDeps) {}

  /**
   * The first message of the queue that accept() takes, held until settled; at most maxRefused
   * refused on the way. One take at a time: the channel of the messages taken is handed to their
   * deliveries and a fresh one is used for the next take.
   */
  take(queue: string, accept: (body: Uint8Array) => boolean, maxRefused: number): Promise<RabbitDelivery | undefined> {
    const run = this.takes.then(() => this.scan(queue, accept, maxRefused));
    this.takes = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no take is in progress. */
  idle(): Promise<void> {
    return this.takes.then(() => undefined);
  }

  /**
   * Take messages from the head of the queue one by one (basic.get, manual ack) until one is
   * accepted, the queue is empty, or maxRefused were refused. Refused messages are held only for
   * the few milliseconds of the scan and then given back: on classic queues each returns to its
   * place in line (nack + requeue); on quorum queues, where a nack would count as a delivery, a
   * copy with the same count goes to the tail and the original is acked. Along the way, messages
   * that this runner settled while it was cut off, or whose experiments still run here after the
   * hold was lost, are dealt with and not handed out again.
   */
  private async scan(
    queue: string,
    accept: (body: Uint8Array) => boolean,
    maxRefused: number,
  ): Promise<RabbitDelivery | undefined> {
    let slot: HoldingChannel;
    try {
      slot = await this.getterSlot();
    } catch {
      return undefined;
    }
    const refused: Array<{ msg: GetMessage; facts: MessageFacts }> = [];
    let chosen: RabbitDelivery | undefined;
    let remaining = 0;
    let empty = false;
    try {
      for (let gets = 0; gets < MAX_GETS_PER_TAKE; gets++) {
        let msg: GetMessage | false;
        try {
          msg = await this.getOne(slot, queue);
        } catch (err) {
          if ((err as { code?: unknown }).code === 404) this.deps.onMissing(queue);
          break;
        }
        if (!msg) {
          empty = true;
          break;
        }
        remaining = msg.fields.messageCount;
        const facts = messageFacts(msg);
        try {
          if (await this.meetsItsPast(queue, slot, msg, facts)) continue;
          if (facts.deliveryCount > this.deps.host.maxDeliveries) {
            await this.failUnsettled(queue, slot, msg, facts);
            continue;
          }
        } catch {
          break; // the channel died under us: the broker has put the message back
        }
        let ok = false;
        try {
          ok = accept(msg.content);
        } catch (err) {
          this.deps.host.log.warn(
            `deciding whether to take ${queue}/${displayId(facts.identity)} failed: ${errorMessage(err)}`,
          );
        }
        if (ok) {
          chosen = new RabbitDelivery(queue, msg, slot, facts, this.deps.host);
          this.deps.holds.add(chosen);
          this.deps.onTaken();
          break;
        }
        refused.push({ msg, facts });
        if (refused.length >= maxRefused) break;
      }
    } finally {
      await this.giveBack(queue, slot, refused);
      if (slot.holding > 0) {
        if (this.getter === slot) this.getter = undefined;
        slot.retire();
      }
      this.deps.watch.lookedAt(queue, (empty ? 0 : remaining) + refused.length);
    }
    return chosen;
  }

  /**
   * basic.get, bounded in time: a connection that died without closing is only noticed by
   * heartbeats, and the runner's loop (local queues too) must not wait for that. On timeout the
   * channel is dropped; whatever the broker delivered on it goes back when it closes.
   */
  private async getOne(slot: HoldingChannel, queue: string): Promise<GetMessage | false> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (this.getter === slot) this.getter = undefined;
        void slot.close();
        reject(new RetryableError(`no answer to basic.get on ${queue} within ${GET_TIMEOUT_MS / 1000}s`));
      }, GET_TIMEOUT_MS);
    });
    try {
      return await Promise.race([slot.channel.get(queue, { noAck: false }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async getterSlot(): Promise<HoldingChannel> {
    if (this.getter?.isOpen) return this.getter;
    this.getter = new HoldingChannel(await this.deps.session.channel(), (err) => this.deps.session.mask(err));
    return this.getter;
  }

  /** True when msg is a copy this runner already knows: settled while cut off, or still running here. */
  private async meetsItsPast(
    queue: string,
    slot: HoldingChannel,
    msg: GetMessage,
    facts: MessageFacts,
  ): Promise<boolean> {
    const settled = this.deps.holds.takeSettled(queue, facts.copyIdentity);
    if (settled?.kind === "ack") {
      slot.channel.ack(msg);
      this.deps.host.log.info(
        `${queue}/${displayId(facts.identity)} came back after this runner had finished it ` +
          "(the acknowledgement was lost with its channel): acknowledged without running it again",
      );
      return true;
    }
    if (settled?.kind === "reject") {
      await this.deps.host
        .keepFailed(
          queue,
          displayId(facts.identity),
          msg,
          facts.deliveryCount,
          [...facts.reasons, newReason(settled.reason)],
          settled.reason,
        )
        .then(
          () => slot.channel.ack(msg),
          (err) => {
            this.deps.host.log.warn(
              `could not keep ${queue}/${displayId(facts.identity)} in the failed place (${errorMessage(err)}): ` +
                "it stays in its queue",
            );
            slot.channel.nack(msg, false, true);
          },
        );
      return true;
    }
    const running = this.deps.holds.detachedCopy(queue, facts.copyIdentity);
    if (running) {
      running.attach(slot, msg);
      this.deps.host.log.info(
        `took ${running.where} back after losing its channel: ` +
          "the running experiment goes on and is acknowledged as usual",
      );
      return true;
    }
    return false;
  }

  /** Delivered more than --max-deliveries times and never settled (runners died holding it). */
  private async failUnsettled(queue: string, slot: HoldingChannel, msg: GetMessage, facts: MessageFacts) {
    const earlier = facts.deliveryCount - 1;
    const because =
      `delivered ${earlier} times without being settled: ` + "each runner that held it stopped or lost its connection";
    try {
      await this.deps.host.keepFailed(
        queue,
        displayId(facts.identity),
        msg,
        earlier,
        [...facts.reasons, newReason(because)],
        because,
      );
      slot.channel.ack(msg);
    } catch (err) {
      this.deps.host.log.warn(
        `could not keep ${queue}/${displayId(facts.identity)} in the failed place (${errorMessage(err)}): ` +
          "it stays in its queue",
      );
      slot.channel.nack(msg, false, true);
    }
  }

  private async giveBack(
    queue: string,
    slot: HoldingChannel,
    refused: Array<{ msg: GetMessage; facts: MessageFacts }>,
  ) {
    for (const { msg, facts } of refused) {
      try {
        if (facts.fromQuorumQueue) {
          await this.deps.host.requeueCopy(
            queue,
            msg,
            copyProperties(msg, { deliveries: facts.deliveryCount - 1, reasons: facts.reasons }),
          );
          slot.channel.ack(msg);
        } else {
          slot.channel.nack(msg, false, true);
        }
      } catch {
        try {
          slot.channel.nack(msg, false, true);
        } catch {
          // The channel is gone: the broker has put the message back already.
        }
      }
    }
  }
}
