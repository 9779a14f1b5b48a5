// One Pub/Sub message held by this runner: ack, give back (counted by republishing a copy, or
// not), keep in the failed place. Its ack deadline is renewed while it is held.

import { errorMessage } from "../../errors.ts";
import type { Delivery, NackOutcome } from "../task-queue.ts";
import type { Lease } from "./lease.ts";
import { newReason, type MessageFacts, type Reason } from "./message-facts.ts";

export type QueueLog = { info(message: string): void; warn(message: string): void };

/** The message as pulled. */
export type PulledMessage = { ackId: string; messageId: string; data: Uint8Array; attributes: Record<string, string> };

/** What a delivery needs from its backend. */
export interface DeliveryHost {
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  acknowledge(subscription: string, ackId: string): Promise<void>;
  /** modifyAckDeadline 0: the message is given back at once. */
  giveBack(subscription: string, ackId: string): Promise<void>;
  /** Publish a counted copy into the work queue's topic. */
  requeueCopy(
    queue: string,
    message: PulledMessage,
    facts: MessageFacts,
    deliveries: number,
    reasons: Reason[],
  ): Promise<void>;
  /** Publish a copy into the queue's failed place. */
  keepFailed(
    queue: string,
    message: PulledMessage,
    facts: MessageFacts,
    reasons: Reason[],
    because: string,
  ): Promise<void>;
  /** It is settled: no longer this runner's. */
  done(delivery: PubsubDelivery): void;
}

export class PubsubDelivery implements Delivery {
  readonly id: string;
  readonly body: Uint8Array;
  readonly deliveryCount: number;
  readonly revoked: AbortSignal;
  private readonly revocation = new AbortController();
  private settled = false;

  constructor(
    readonly queue: string,
    readonly subscription: string,
    readonly message: PulledMessage,
    readonly facts: MessageFacts,
    readonly lease: Lease,
    private readonly host: DeliveryHost,
  ) {
    this.id = facts.identity;
    this.body = message.data;
    this.deliveryCount = facts.deliveryCount;
    this.revoked = this.revocation.signal;
  }

  /** The request was withdrawn (its subscription was deleted): tell the attempt. */
  revoke(reason: string): void {
    if (!this.revocation.signal.aborted) this.revocation.abort(new Error(reason));
  }

  get where(): string {
    return `${this.queue}/${this.id}`;
  }

  get isSettled(): boolean {
    return this.settled;
  }

  extendLease(): Promise<void> {
    return this.lease.renew();
  }

  async ack(): Promise<void> {
    this.settle();
    if (!this.revoked.aborted) await this.send("ack");
  }

  async nack(reason: string, options: { countDelivery?: boolean } = {}): Promise<NackOutcome> {
    this.settle();
    const counted = options.countDelivery !== false;
    if (this.revoked.aborted) {
      const reasons = counted ? [...this.facts.reasons, newReason(reason)] : this.facts.reasons;
      return (await this.keepFailed(reasons, `its subscription was deleted while it was held (${reason})`))
        ? "failed"
        : "requeued";
    }
    if (!counted) {
      await this.send("give back");
      return "requeued";
    }
    const reasons = [...this.facts.reasons, newReason(reason)];
    if (this.deliveryCount >= this.host.maxDeliveries) {
      return (await this.keepFailed(reasons, `gave up after ${this.deliveryCount} deliveries: ${reason}`))
        ? "failed"
        : "requeued";
    }
    try {
      await this.host.requeueCopy(this.queue, this.message, this.facts, this.deliveryCount, reasons);
    } catch (err) {
      this.host.log.warn(
        `could not put a counted copy of ${this.where} back in its queue (${errorMessage(err)}): ` +
          "giving back the original instead",
      );
      await this.send("give back");
      return "requeued";
    }
    await this.send("ack", true);
    return "requeued";
  }

  async reject(reason: string): Promise<void> {
    this.settle();
    await this.keepFailed([...this.facts.reasons, newReason(reason)], reason);
  }

  /** Stop holding it without settling (the backend closes): Pub/Sub redelivers it. */
  release(): Promise<void> {
    if (this.settled) return Promise.resolve();
    this.settle();
    return this.send("give back");
  }

  private settle() {
    if (this.settled) throw new Error(`delivery ${this.where} was already settled`);
    this.settled = true;
    this.lease.stop();
    this.host.done(this);
  }

  /** Copy it into the failed place, then ack the original. False when that failed and it went back instead. */
  private async keepFailed(reasons: Reason[], because: string): Promise<boolean> {
    try {
      await this.host.keepFailed(this.queue, this.message, this.facts, reasons, because);
    } catch (err) {
      this.host.log.warn(
        `could not keep ${this.where} in the failed place (${errorMessage(err)}): it goes back to its queue instead`,
      );
      if (!this.revoked.aborted) await this.send("give back");
      return false;
    }
    if (!this.revoked.aborted) await this.send("ack", true);
    return true;
  }

  /** ack or give back; a failure is logged, never thrown (the deadline then runs out and Pub/Sub redelivers). */
  private async send(what: "ack" | "give back", copied = false): Promise<void> {
    try {
      if (what === "ack") await this.host.acknowledge(this.subscription, this.message.ackId);
      else await this.host.giveBack(this.subscription, this.message.ackId);
    } catch (err) {
      this.host.log.warn(
        `the ${what === "ack" ? "acknowledgement" : "give-back"} of ${this.where} failed (${errorMessage(err)}); ` +
          "Pub/Sub redelivers it when its ack deadline runs out" +
          (copied ? ", so the request may be in the queue twice" : ""),
      );
    }
  }
}
