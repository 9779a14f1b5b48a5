// One RabbitMQ message held by this runner: ack, give back (counted or not), keep in the failed
// place. Settling never throws into the attempt (only settling twice does): when the channel that
// held the message is gone, the broker has already put the message back, and this says so.

import type { GetMessage, Options } from "amqplib";
import { errorMessage } from "../../errors.ts";
import type { Delivery, NackOutcome } from "../task-queue.ts";
import type { ChannelHolder, HoldingChannel } from "./holding-channel.ts";
import { copyProperties, displayId, newReason, type MessageFacts, type Reason } from "./message-copy.ts";

export type QueueLog = { info(message: string): void; warn(message: string): void };

export type SettledHow = { kind: "ack" } | { kind: "reject"; reason: string };

/** What a delivery needs from its backend. */
export interface DeliveryHost {
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  /** Publish a copy into the work queue (confirmed). */
  requeueCopy(queue: string, msg: GetMessage, properties: Options.Publish): Promise<void>;
  /** Publish a copy into the queue's failed place (confirmed). */
  keepFailed(
    queue: string,
    id: string,
    msg: GetMessage,
    deliveries: number,
    reasons: Reason[],
    because: string,
  ): Promise<void>;
  /** Settled while its channel was gone: what to do when this copy comes back to this runner. */
  settledWhileDetached(delivery: RabbitDelivery, how: SettledHow): void;
  /** The channel holding it closed while it was unsettled. */
  detached(delivery: RabbitDelivery, reason: string): void;
  /** It is settled: no longer this runner's. */
  done(delivery: RabbitDelivery): void;
}

export class RabbitDelivery implements Delivery, ChannelHolder {
  readonly id: string;
  readonly body: Uint8Array;
  readonly deliveryCount: number;
  readonly revoked: AbortSignal;
  private readonly revocation = new AbortController();
  private hold?: { slot: HoldingChannel; msg: GetMessage };
  /** The copy this delivery was received as (kept when the hold is lost). */
  private readonly message: GetMessage;
  private settled = false;

  constructor(
    readonly queue: string,
    msg: GetMessage,
    slot: HoldingChannel,
    readonly facts: MessageFacts,
    private readonly host: DeliveryHost,
  ) {
    this.id = displayId(facts.identity);
    this.body = msg.content;
    this.deliveryCount = facts.deliveryCount;
    this.revoked = this.revocation.signal;
    this.message = msg;
    this.attach(slot, msg);
  }

  get where(): string {
    return `${this.queue}/${this.id}`;
  }

  get isAttached(): boolean {
    return this.hold !== undefined;
  }

  get isSettled(): boolean {
    return this.settled;
  }

  /** Hold msg (this delivery's message, received again after the hold was lost) on slot. */
  attach(slot: HoldingChannel, msg: GetMessage): void {
    this.hold = { slot, msg };
    slot.hold(this);
  }

  channelLost(reason: string): void {
    this.hold = undefined;
    if (!this.settled) this.host.detached(this, reason);
  }

  /** The request was withdrawn (its queue was deleted): tell the attempt. */
  revoke(reason: string): void {
    if (!this.revocation.signal.aborted) this.revocation.abort(new Error(reason));
  }

  /** RabbitMQ has no lease to renew; see consumer_timeout in the README. */
  async extendLease(): Promise<void> {}

  async ack(): Promise<void> {
    this.settle();
    const hold = this.hold;
    if (!hold) {
      if (this.revoked.aborted) return;
      this.host.settledWhileDetached(this, { kind: "ack" });
      this.host.log.warn(
        `${this.where} finished but cannot be acknowledged: ` +
          "the channel that held it closed, so the broker put it back in the queue. " +
          "If it comes back to this runner it is acknowledged without running again; another runner may run it again.",
      );
      return;
    }
    await this.send(hold, "ack", () => this.host.settledWhileDetached(this, { kind: "ack" }));
  }

  async nack(reason: string, options: { countDelivery?: boolean } = {}): Promise<NackOutcome> {
    this.settle();
    const counted = options.countDelivery !== false;
    const reasons = counted ? [...this.facts.reasons, newReason(reason)] : this.facts.reasons;
    if (this.revoked.aborted) {
      return (await this.keepFailed(reasons, `its queue was deleted while it was held (${reason})`))
        ? "failed"
        : "requeued";
    }
    const hold = this.hold;
    if (!hold) {
      this.host.log.warn(
        `${this.where} cannot be given back (${reason}): ` +
          "the channel that held it closed, so the broker has put it back in the queue already",
      );
      return "requeued";
    }
    if (counted && this.deliveryCount >= this.host.maxDeliveries) {
      return (await this.keepFailed(reasons, `gave up after ${this.deliveryCount} deliveries: ${reason}`))
        ? "failed"
        : "requeued";
    }
    if (!counted && !this.facts.fromQuorumQueue) {
      // Classic queue: the original goes back to its place in line and its count stays as it was.
      await this.send(hold, "requeue");
      return "requeued";
    }
    const properties = copyProperties(hold.msg, {
      deliveries: counted ? this.deliveryCount : this.deliveryCount - 1,
      reasons,
    });
    try {
      await this.host.requeueCopy(this.queue, hold.msg, properties);
    } catch (err) {
      this.host.log.warn(
        `could not put a counted copy of ${this.where} back in its queue (${errorMessage(err)}): ` +
          "giving back the original instead",
      );
      await this.send(hold, "requeue");
      return "requeued";
    }
    await this.send(hold, "ack", () => this.warnTwice());
    return "requeued";
  }

  async reject(reason: string): Promise<void> {
    this.settle();
    const reasons = [...this.facts.reasons, newReason(reason)];
    if (!this.hold && !this.revoked.aborted) {
      this.host.settledWhileDetached(this, { kind: "reject", reason });
      this.host.log.warn(
        `${this.where} cannot be moved to the failed place now (${reason}): the channel that held it closed; ` +
          "if it comes back to this runner it goes there at once",
      );
      return;
    }
    await this.keepFailed(reasons, reason);
  }

  private settle() {
    if (this.settled) throw new Error(`delivery ${this.where} was already settled`);
    this.settled = true;
    this.host.done(this);
  }

  /** Copy it into the failed place, then let go of the original. False when that failed and it went back instead. */
  private async keepFailed(reasons: Reason[], because: string): Promise<boolean> {
    const hold = this.hold;
    try {
      await this.host.keepFailed(this.queue, this.id, this.message, this.deliveryCount, reasons, because);
    } catch (err) {
      this.host.log.warn(
        `could not keep ${this.where} in the failed place (${errorMessage(err)}): it goes back to its queue instead`,
      );
      if (hold) await this.send(hold, "requeue");
      return false;
    }
    if (hold) await this.send(hold, "ack", () => this.warnTwice());
    return true;
  }

  private warnTwice() {
    this.host.settledWhileDetached(this, { kind: "ack" });
    this.host.log.warn(
      `${this.where}: a copy was published but the original could not be acknowledged, ` +
        "so the request may be in the queue twice",
    );
  }

  /** ack or requeue the held message; a channel that died meanwhile is logged, never thrown. */
  private async send(
    hold: { slot: HoldingChannel; msg: GetMessage },
    what: "ack" | "requeue",
    onUncertain?: () => void,
  ): Promise<void> {
    try {
      if (what === "ack") hold.slot.channel.ack(hold.msg);
      else hold.slot.channel.nack(hold.msg, false, true);
      await hold.slot.release(this);
    } catch (err) {
      onUncertain?.();
      this.host.log.warn(
        `the ${what === "ack" ? "acknowledgement" : "give-back"} of ${this.where} ` +
          `may not have reached the broker (${errorMessage(err)})` +
          (what === "ack" ? "; if the message comes back to this runner it is acknowledged without running again" : ""),
      );
    }
  }
}
