// One SQS message held by this runner: its visibility lease, ack (delete), give-backs counted or
// not, and the failed place. Settling never throws into the attempt (only settling twice does).

import { errorMessage } from "../../errors.ts";
import type { Delivery, NackOutcome } from "../task-queue.ts";
import { newReason, type Reason } from "./conventions.ts";
import type { VisibilityLease } from "./lease.ts";

export type QueueLog = { info(message: string): void; warn(message: string): void };

/** A received message as this runner reads it. */
export type ReceivedMessage = {
  queue: string;
  queueUrl: string;
  receiptHandle: string;
  /** The id it was first published with (kept across the copies this runner sends). */
  id: string;
  body: Uint8Array;
  /** Counted deliveries carried by the copy (studio_deliveries) plus SQS's ApproximateReceiveCount. */
  deliveryCount: number;
  reasons: Reason[];
  /** Message attributes of others, carried along on copies. */
  foreignAttributes: Record<string, { DataType: string; StringValue?: string; BinaryValue?: Uint8Array }>;
};

/** What a delivery needs from its backend. */
export interface SqsDeliveryHost {
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  /** Visible again now: the next receive counts as a delivery (ApproximateReceiveCount grows). */
  makeVisible(msg: ReceivedMessage): Promise<void>;
  remove(msg: ReceivedMessage): Promise<void>;
  /** Send a copy carrying `deliveries` counted deliveries, then delete the original. */
  replaceWithCopy(msg: ReceivedMessage, deliveries: number): Promise<void>;
  /** Send a copy with the reasons to the failed place, then delete the original. */
  moveToFailed(msg: ReceivedMessage, reasons: Reason[], because: string): Promise<void>;
  done(delivery: SqsDelivery): void;
}

export class SqsDelivery implements Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Uint8Array;
  readonly deliveryCount: number;
  private settled = false;

  constructor(
    readonly message: ReceivedMessage,
    private readonly lease: VisibilityLease,
    private readonly host: SqsDeliveryHost,
  ) {
    this.id = message.id;
    this.queue = message.queue;
    this.body = message.body;
    this.deliveryCount = message.deliveryCount;
  }

  get where(): string {
    return `${this.queue}/${this.id}`;
  }

  get isSettled(): boolean {
    return this.settled;
  }

  extendLease(): Promise<void> {
    return this.lease.renewNow();
  }

  /** Stop renewing without settling: SQS makes the message visible again when the lease runs out. */
  abandon(): Promise<void> {
    return this.lease.stop();
  }

  async ack(): Promise<void> {
    await this.settle();
    try {
      await this.host.remove(this.message);
    } catch (err) {
      this.host.log.warn(
        `${this.where} finished but could not be deleted from SQS (${errorMessage(err)}): ` +
          "it will be delivered again when its visibility runs out",
      );
    }
  }

  async nack(reason: string, options: { countDelivery?: boolean } = {}): Promise<NackOutcome> {
    await this.settle();
    if (options.countDelivery === false) {
      await this.giveBackUncounted(reason);
      return "requeued";
    }
    const reasons = [...this.message.reasons, newReason(reason)];
    if (this.deliveryCount >= this.host.maxDeliveries) {
      return (await this.keepFailed(reasons, `gave up after ${this.deliveryCount} deliveries: ${reason}`))
        ? "failed"
        : "requeued";
    }
    try {
      await this.host.makeVisible(this.message);
    } catch (err) {
      this.host.log.warn(
        `could not give ${this.where} back (${errorMessage(err)}): ` +
          "it becomes visible again when its visibility runs out",
      );
    }
    return "requeued";
  }

  async reject(reason: string): Promise<void> {
    await this.settle();
    await this.keepFailed([...this.message.reasons, newReason(reason)], reason);
  }

  /** Give back without counting this delivery: a copy with the count before it replaces the original. */
  async giveBackUncounted(reason: string): Promise<void> {
    try {
      await this.host.replaceWithCopy(this.message, this.deliveryCount - 1);
    } catch (err) {
      this.host.log.warn(
        `could not give ${this.where} back uncounted (${reason}; ${errorMessage(err)}): ` +
          "made visible instead, so this delivery counts",
      );
      await this.host.makeVisible(this.message).catch(() => undefined);
    }
  }

  private async settle() {
    if (this.settled) throw new Error(`delivery ${this.where} was already settled`);
    this.settled = true;
    await this.lease.stop();
    this.host.done(this);
  }

  /** False when the copy could not be kept and the original was made visible again instead. */
  private async keepFailed(reasons: Reason[], because: string): Promise<boolean> {
    try {
      await this.host.moveToFailed(this.message, reasons, because);
      return true;
    } catch (err) {
      this.host.log.warn(
        `could not keep ${this.where} in the failed place (${errorMessage(err)}): it goes back to its queue instead`,
      );
      await this.host.makeVisible(this.message).catch(() => undefined);
      return false;
    }
  }
}
