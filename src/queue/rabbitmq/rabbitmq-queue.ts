// RabbitMQ queues in the studioml layout (exchange StudioML.topic, one queue per name bound with
// StudioML.<queue>): discovery through the management API, one message at a time with manual
// acks, delivery counts that survive across runners, a failed place, and reconnects.

import type { GetMessage, Options } from "amqplib";
import { randomUUID } from "node:crypto";
import { RetryableError } from "../../errors.ts";
import {
  describeQueues,
  filterOf,
  type Delivery,
  type QueueBackend,
  type QueueFilterOptions,
  type ReceiveOptions,
  type TaskQueue,
} from "../task-queue.ts";
import { probeAmqpConnection } from "./connection-probe.ts";
import { listStudioQueues } from "./management-api.ts";
import { AdminChannel } from "./admin-channel.ts";
import type { BackoffOptions } from "./backoff.ts";
import { managementAddress, parseAmqpUrl, type AmqpAddress, type ManagementAddress } from "./broker-address.ts";
import {
  APP_ID,
  CONTENT_TYPE,
  EXCHANGE,
  failedQueueName,
  HEADER,
  PERSISTENT,
  routingKey,
  type QueueType,
} from "./conventions.ts";
import type { DeliveryHost, QueueLog, RabbitDelivery, SettledHow } from "./delivery.ts";
import { HoldRegistry } from "./hold-registry.ts";
import { copyProperties, type Reason } from "./message-copy.ts";
import { NewWorkWatch } from "./new-work-watch.ts";
import { ExchangeTap } from "./exchange-tap.ts";
import { ConfirmedPublisher, UnroutableError } from "./publisher.ts";
import { QueueDiscovery, wantedQueues } from "./queue-discovery.ts";
import type { ResponsePublisher } from "../response-publisher.ts";
import { RabbitResponsePublisher } from "./response-publisher.ts";
import { Receiver } from "./receiver.ts";
import { AmqpSession } from "./session.ts";

export type RabbitQueueOptions = QueueFilterOptions & {
  /** amqp[s]://user:password@host:port/vhost */
  url: string;
  /** Management API; default http://<host>:<port + 10000> with the AMQP URL's credentials. */
  managementUrl?: string;
  /** Queues to serve while the management API cannot be reached. */
  fallbackQueues?: string[];
  maxDeliveries: number;
  /** Type of the queues this backend declares: work queues it publishes to, failed places. */
  queueType?: QueueType;
  /** How often waitForWork looks at the queues' ready counts. */
  pollIntervalMs?: number;
  /** How long a discovery answer is reused. */
  discoveryIntervalMs?: number;
  /** How often queues that this runner holds messages from are checked for deletion. */
  revocationCheckMs?: number;
  /** Messages a receive() may look at and give back before it stops looking. */
  maxRefusedPerReceive?: number;
  managementTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** How the broker lists this runner's connection (default: studio-runner <host> pid <pid>). */
  connectionName?: string;
  log?: QueueLog;
};

const RECLAIM_MAX_REFUSED = 16;
const PUBLISH_CONNECT_WAIT_MS = 30_000;
/** Close gives a scan in flight this long (a dead connection is noticed by heartbeats only). */
const CLOSE_WAIT_MS = 3_000;

const QUIET_LOG: QueueLog = { info: () => undefined, warn: () => undefined };

export class RabbitQueueBackend implements QueueBackend, DeliveryHost {
  readonly kind = "rabbitmq";
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  readonly address: AmqpAddress;
  readonly management: ManagementAddress;
  private readonly session: AmqpSession;
  private readonly admin: AdminChannel;
  private readonly publisher: ConfirmedPublisher;
  private readonly holds = new HoldRegistry();
  private readonly queueType: QueueType;
  private readonly discovery: QueueDiscovery;
  private readonly watch: NewWorkWatch;
  private readonly receiver: Receiver;
  /** Wakes the runner as soon as a request is published (the poll remains the fallback). */
  private readonly tap: ExchangeTap;
  private readonly declaredWork = new Set<string>();
  private readonly declaredFailed = new Set<string>();
  private revocationTimer?: ReturnType<typeof setInterval>;
  private checkingHeld = false;
  private reclaimTimer?: ReturnType<typeof setTimeout>;
  private closed = false;

  constructor(readonly options: RabbitQueueOptions) {
    this.address = parseAmqpUrl(options.url);
    this.management = managementAddress(this.address, options.managementUrl);
    this.maxDeliveries = options.maxDeliveries;
    this.queueType = options.queueType ?? "classic";
    this.log = options.log ?? QUIET_LOG;
    this.session = new AmqpSession({
      address: this.address,
      backoff: options.backoff,
      connectionName: options.connectionName,
      log: this.log,
    });
    this.admin = new AdminChannel(this.session);
    this.publisher = new ConfirmedPublisher(this.session);
    this.discovery = new QueueDiscovery({
      api: this.management,
      vhost: this.address.vhost,
      fallbackQueues: options.fallbackQueues ?? [],
      match: options.match,
      mismatch: options.mismatch,
      filter: options.filter,
      reuseMs: options.discoveryIntervalMs ?? 2000,
      timeoutMs: options.managementTimeoutMs ?? 3000,
      log: this.log,
      mask: (err) => this.session.mask(err),
    });
    this.watch = new NewWorkWatch({
      admin: this.admin,
      discovery: this.discovery,
      isUp: () => this.session.isUp && !this.closed,
      pollIntervalMs: options.pollIntervalMs ?? 300,
      onMissing: (queue) => this.queueMissing(queue),
    });
    this.receiver = new Receiver({
      session: this.session,
      host: this,
      holds: this.holds,
      watch: this.watch,
      onMissing: (queue) => this.queueMissing(queue),
      onTaken: () => this.startRevocationChecks(),
    });
    this.tap = new ExchangeTap(this.session, () => this.watch.wakeAll());
    this.session.onUp(() => {
      this.watch.wakeAll();
      this.scheduleReclaim(0);
      this.tap.reset();
      void this.tap.open();
    });
  }

  // ── QueueBackend ─────────────────────────────────────────────────────────────────────────────

  async discover(): Promise<string[]> {
    this.session.start();
    void this.tap.open();
    return this.discovery.names();
  }

  /** The management API lists the queues and one AMQP connection opens with these credentials. */
  async check(timeoutMs: number): Promise<string> {
    await probeAmqpConnection(this.address, timeoutMs);
    const fallback = this.options.fallbackQueues ?? [];
    let names: string[];
    let source = `management API ${this.management.redacted}`;
    try {
      names = await listStudioQueues(this.management, this.address.vhost, timeoutMs);
    } catch (err) {
      // Without the API the runner serves the --amqp-queues list, when there is one.
      if (!fallback.length) throw err;
      names = fallback;
      source = `management API unreachable (${this.session.mask(err)}), --amqp-queues`;
    }
    return `connected to ${this.address.redacted}; ${source}: ${describeQueues(wantedQueues(names, filterOf(this.options)))}`;
  }

  open(name: string): TaskQueue {
    return { name, receive: (options?: ReceiveOptions) => this.receive(name, options) };
  }

  async publish(queue: string, body: Uint8Array | string): Promise<string> {
    if (!(await this.session.ready(PUBLISH_CONNECT_WAIT_MS)))
      throw new RetryableError(`not connected to RabbitMQ at ${this.address.redacted}`);
    const content =
      typeof body === "string" ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const id = randomUUID();
    const properties: Options.Publish = {
      contentType: CONTENT_TYPE,
      appId: APP_ID,
      messageId: id,
      persistent: true,
      deliveryMode: PERSISTENT,
      timestamp: Math.floor(Date.now() / 1000),
    };
    for (let attempt = 0; ; attempt++) {
      if (!this.declaredWork.has(queue)) {
        await this.admin.declareWorkQueue(queue, this.queueType);
        this.declaredWork.add(queue);
      }
      try {
        await this.publisher.publish(EXCHANGE, routingKey(queue), content, properties);
        break;
      } catch (err) {
        // Unroutable: the queue was deleted since it was declared here; declare it again, once.
        if (!(err instanceof UnroutableError) || attempt >= 1) throw err;
        this.declaredWork.delete(queue);
      }
    }
    this.discovery.invalidate();
    return id;
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.session.start();
    if (this.closed) return Promise.resolve();
    return this.watch.wait(timeoutMs, signal);
  }

  /** Reports go to `<queue>_response` on this broker, on a connection of their own. */
  responsePublisher(): ResponsePublisher {
    return new RabbitResponsePublisher(this.address);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.revocationTimer);
    clearTimeout(this.reclaimTimer);
    this.watch.wakeAll();
    this.tap.close();
    await Promise.race([this.receiver.idle(), new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref?.())]);
    await this.session.close();
  }

  // ── DeliveryHost ─────────────────────────────────────────────────────────────────────────────

  async requeueCopy(queue: string, msg: GetMessage, properties: Options.Publish): Promise<void> {
    await this.publisher.publish("", queue, msg.content, properties);
  }

  async keepFailed(
    queue: string,
    id: string,
    msg: GetMessage,
    deliveries: number,
    reasons: Reason[],
    because: string,
  ): Promise<void> {
    const failed = failedQueueName(queue);
    const properties = copyProperties(msg, {
      deliveries: 0,
      reasons,
      keepExpiration: false,
      extra: {
        [HEADER.queue]: queue,
        [HEADER.failedAt]: new Date().toISOString(),
        [HEADER.failedBecause]: because,
        [HEADER.failedDeliveries]: String(deliveries),
      },
    });
    for (let attempt = 0; ; attempt++) {
      if (!this.declaredFailed.has(failed)) {
        await this.admin.declareQueue(failed, this.queueType);
        this.declaredFailed.add(failed);
      }
      try {
        await this.publisher.publish("", failed, msg.content, properties);
        break;
      } catch (err) {
        if (!(err instanceof UnroutableError) || attempt >= 1) throw err;
        this.declaredFailed.delete(failed);
      }
    }
    this.log.warn(`request ${queue}/${id} kept in the failed place (queue ${failed}): ${because}`);
  }

  settledWhileDetached(delivery: RabbitDelivery, how: SettledHow): void {
    this.holds.rememberSettled(delivery, how);
  }

  detached(delivery: RabbitDelivery, reason: string): void {
    if (this.closed) return;
    this.log.warn(
      `lost the hold on ${delivery.where} (${reason}): the broker has put it back in the queue. ` +
        "The experiment goes on; " +
        "this runner takes the message back when it sees it again, otherwise another runner may run it a second time",
    );
    this.scheduleReclaim(0);
  }

  done(delivery: RabbitDelivery): void {
    this.holds.remove(delivery);
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────────

  private async receive(queue: string, options: ReceiveOptions = {}): Promise<Delivery | undefined> {
    if (this.closed || !(await this.session.upOrFirstAttempt())) return undefined;
    return this.receiver.take(queue, options.accept ?? (() => true), this.options.maxRefusedPerReceive ?? 4);
  }

  // ── queues that disappear, holds that are lost ───────────────────────────────────────────────

  /** The broker says the queue does not exist: stop what runs from it (the Go runner does the same). */
  private queueMissing(queue: string) {
    this.watch.missing(queue);
    const held = this.holds.inQueue(queue).filter((d) => !d.revoked.aborted);
    if (!held.length) return;
    this.log.warn(`queue ${queue} was deleted: stopping ${held.length} experiment(s) taken from it`);
    for (const d of held) d.revoke(`queue ${queue} was deleted`);
  }

  private startRevocationChecks() {
    if (this.revocationTimer || this.closed) return;
    this.revocationTimer = setInterval(() => void this.checkHeldQueues(), this.options.revocationCheckMs ?? 2000);
    this.revocationTimer.unref?.();
  }

  private async checkHeldQueues() {
    if (!this.session.isUp || this.checkingHeld) return;
    this.checkingHeld = true;
    try {
      for (const queue of this.holds.queues()) {
        if ((await this.admin.queueState(queue)) === "missing") this.queueMissing(queue);
      }
    } finally {
      this.checkingHeld = false;
    }
  }

  private scheduleReclaim(delayMs: number) {
    if (this.closed || this.reclaimTimer) return;
    this.reclaimTimer = setTimeout(() => {
      this.reclaimTimer = undefined;
      void this.reclaim();
    }, delayMs);
    this.reclaimTimer.unref?.();
  }

  /** Look for the messages of experiments that still run here but lost their hold, and take them back. */
  private async reclaim() {
    if (!this.session.isUp) return;
    for (const queue of this.holds.queuesWithDetached()) {
      await this.receiver.take(queue, () => false, RECLAIM_MAX_REFUSED).catch(() => undefined);
    }
  }
}
