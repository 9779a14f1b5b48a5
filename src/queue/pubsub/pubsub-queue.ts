// Google Pub/Sub queues of one project: the project's subscriptions are the queues (`<queue>_sub`
// serves queue `<queue>`), one message pulled per free slot with its ack deadline renewed while
// held, delivery counts carried by republished copies, and a failed place per queue.

import { waitForWake } from "../wait-for-wake.ts";
import { PubSub, v1, type Topic } from "@google-cloud/pubsub";
import { errorMessage } from "../../errors.ts";
import {
  describeQueues,
  filterOf,
  queueWanted,
  type Delivery,
  type QueueBackend,
  type QueueFilterOptions,
  type ReceiveOptions,
  type TaskQueue,
} from "../task-queue.ts";
import {
  ATTRIBUTE,
  failedTopicName,
  isFailedPlace,
  queueOfSubscription,
  shortName,
  SUBSCRIPTION_SUFFIX,
  subscriptionFor,
} from "./conventions.ts";
import { PubsubDelivery, type DeliveryHost, type PulledMessage, type QueueLog } from "./delivery.ts";
import { Lease } from "./lease.ts";
import { copyAttributes, messageFacts, type MessageFacts, type Reason } from "./message-facts.ts";
import type { ResponsePublisher } from "../response-publisher.ts";
import { PubsubResponsePublisher } from "./response-publisher.ts";
import type { ProjectSource } from "./service-accounts.ts";

export type PubsubQueueOptions = QueueFilterOptions & {
  projectId: string;
  /** A service-account JSON file; without it the client's default credentials (or the emulator). */
  keyFilename?: string;
  maxDeliveries: number;
  /** Ack deadline this runner keeps on a held message, renewed at half of it (10..600 s). */
  ackDeadlineS?: number;
  /** The longest waitForWork waits before the runner pulls again. */
  pollIntervalMs?: number;
  /** How long a discovery answer is reused. */
  discoveryIntervalMs?: number;
  /** Messages a receive() may look at and give back before it stops looking. */
  maxRefusedPerReceive?: number;
  log?: QueueLog;
};

/** gRPC status codes the backend tells apart. */
const GRPC = { NOT_FOUND: 5, ALREADY_EXISTS: 6 } as const;
const PULL_TIMEOUT_MS = 20_000;
const DEFAULT_ACK_DEADLINE_S = 60;
const QUIET_LOG: QueueLog = { info: () => undefined, warn: () => undefined };

const grpcCode = (err: unknown) =>
  typeof err === "object" && err !== null && "code" in err ? (err as { code: unknown }).code : undefined;

export class PubsubQueueBackend implements QueueBackend, DeliveryHost {
  readonly kind = "pubsub";
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  readonly projectId: string;
  private readonly pubsub: PubSub;
  private subscriber?: Promise<v1.SubscriberClient>;
  private readonly held = new Set<PubsubDelivery>();
  private readonly topics = new Map<string, Topic>();
  private readonly ensured = new Set<string>();
  private readonly topicOfSubscription = new Map<string, string>();
  private answer?: { queues: Map<string, string>; atMs: number };
  private lastQueues = new Map<string, string>();
  private listingFailed = false;
  /** Queues whose last pull failed (said once until one works). */
  private readonly pullFailing = new Set<string>();
  private readonly wakers = new Set<() => void>();
  private closed = false;

  constructor(readonly options: PubsubQueueOptions) {
    this.projectId = options.projectId;
    this.maxDeliveries = options.maxDeliveries;
    this.log = options.log ?? QUIET_LOG;
    this.pubsub = new PubSub({ projectId: options.projectId, keyFilename: options.keyFilename });
  }

  // ── QueueBackend ─────────────────────────────────────────────────────────────────────────────

  async discover(): Promise<string[]> {
    return [...(await this.queues()).keys()].sort();
  }

  /** The project's subscriptions listed with this backend's credentials (the caller bounds the wait too). */
  async check(timeoutMs: number): Promise<string> {
    try {
      const [subs] = await this.pubsub.getSubscriptions({ gaxOpts: { timeout: timeoutMs } });
      const queues = this.wantedQueues(subs.map((x) => shortName(x.name)));
      return `project ${this.projectId}: ${describeQueues([...queues.keys()].sort())}`;
    } catch (err) {
      throw new Error(`cannot list the subscriptions of Pub/Sub project ${this.projectId}: ${errorMessage(err)}`);
    }
  }

  open(name: string): TaskQueue {
    return { name, receive: (options?: ReceiveOptions) => this.receive(name, options) };
  }

  async publish(queue: string, body: Uint8Array | string): Promise<string> {
    const data =
      typeof body === "string" ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const id = await this.publishTo(queue, data, undefined);
    this.answer = undefined;
    this.wake();
    return id;
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.resolve();
    return waitForWake(Math.min(timeoutMs, this.options.pollIntervalMs ?? 1000), signal, this.wakers);
  }

  /** Reports go to the topic `<queue>_response` of this backend's project. */
  responsePublisher(): ResponsePublisher {
    const source: ProjectSource = {
      projectId: this.options.projectId,
      keyFilename: this.options.keyFilename,
      origin: "queue backend",
    };
    return new PubsubResponsePublisher(() => [source]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    const unsettled = [...this.held];
    if (unsettled.length)
      this.log.warn(`closing with ${unsettled.length} unsettled Pub/Sub message(s): giving them back`);
    await Promise.all(unsettled.map((d) => d.release()));
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber) await subscriber.then((c) => c.close()).catch(() => undefined);
    await this.pubsub.close().catch(() => undefined);
  }

  // ── DeliveryHost ─────────────────────────────────────────────────────────────────────────────

  async acknowledge(subscription: string, ackId: string): Promise<void> {
    const client = await this.client();
    await client.acknowledge({ subscription: this.subscriptionPath(subscription), ackIds: [ackId] });
  }

  async giveBack(subscription: string, ackId: string): Promise<void> {
    await this.setDeadline(subscription, ackId, 0);
  }

  async requeueCopy(
    queue: string,
    message: PulledMessage,
    facts: MessageFacts,
    deliveries: number,
    reasons: Reason[],
  ): Promise<void> {
    const topic = await this.topicOf(this.subscriptionOf(queue));
    await this.publishTo(
      topic,
      Buffer.from(message.data),
      copyAttributes(message.attributes, { identity: facts.identity, deliveries, reasons }),
    );
  }

  async keepFailed(
    queue: string,
    message: PulledMessage,
    facts: MessageFacts,
    reasons: Reason[],
    because: string,
  ): Promise<void> {
    const failed = failedTopicName(queue);
    const attributes = copyAttributes(message.attributes, {
      identity: facts.identity,
      deliveries: 0,
      reasons,
      extra: {
        [ATTRIBUTE.queue]: queue,
        [ATTRIBUTE.failedAt]: new Date().toISOString(),
        [ATTRIBUTE.failedBecause]: because,
        [ATTRIBUTE.failedDeliveries]: String(facts.deliveryCount),
      },
    });
    await this.publishTo(failed, Buffer.from(message.data), attributes);
    this.log.warn(
      `request ${queue}/${facts.identity} kept in the failed place ` +
        `(topic ${failed}, subscription ${subscriptionFor(failed)}): ${because}`,
    );
  }

  done(delivery: PubsubDelivery): void {
    this.held.delete(delivery);
  }

  // ── discovery ────────────────────────────────────────────────────────────────────────────────

  /** Wanted queue → its subscription id; reused for discoveryIntervalMs. */
  private async queues(): Promise<Map<string, string>> {
    const reuseMs = this.options.discoveryIntervalMs ?? 2000;
    if (this.answer && Date.now() - this.answer.atMs < reuseMs) return this.answer.queues;
    let subscriptions: string[];
    try {
      const [subs] = await this.pubsub.getSubscriptions();
      subscriptions = subs.map((s) => shortName(s.name));
      if (this.listingFailed) this.log.info(`Pub/Sub project ${this.projectId}: subscriptions can be listed again`);
      this.listingFailed = false;
    } catch (err) {
      if (!this.listingFailed)
        this.log.warn(
          `cannot list the subscriptions of Pub/Sub project ${this.projectId} (${errorMessage(err)}): ` +
            "serving the queues it listed last",
        );
      this.listingFailed = true;
      this.answer = { queues: this.lastQueues, atMs: Date.now() };
      return this.lastQueues;
    }
    const queues = this.wantedQueues(subscriptions);
    this.lastQueues = queues;
    this.answer = { queues, atMs: Date.now() };
    return queues;
  }

  /** Wanted queue → its subscription, from subscription ids (the failed places are never work). */
  private wantedQueues(subscriptions: string[]): Map<string, string> {
    const queues = new Map<string, string>();
    for (const sub of [...subscriptions].sort()) {
      if (isFailedPlace(sub)) continue;
      const queue = queueOfSubscription(sub);
      if (!queueWanted(queue, filterOf(this.options))) continue;
      // `<queue>_sub` (the python client's) wins over a subscription named like the queue itself.
      if (!queues.has(queue) || sub.endsWith(SUBSCRIPTION_SUFFIX)) queues.set(queue, sub);
    }
    return queues;
  }

  private subscriptionOf(queue: string): string {
    return this.answer?.queues.get(queue) ?? this.lastQueues.get(queue) ?? subscriptionFor(queue);
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────────

  private async receive(queue: string, options: ReceiveOptions = {}): Promise<Delivery | undefined> {
    if (this.closed) return undefined;
    const accept = options.accept ?? (() => true);
    const subscription = this.subscriptionOf(queue);
    const refused: PulledMessage[] = [];
    try {
      for (let looked = 0; looked <= (this.options.maxRefusedPerReceive ?? 4); looked++) {
        let received;
        try {
          const client = await this.client();
          [{ receivedMessages: received }] = await client.pull(
            { subscription: this.subscriptionPath(subscription), maxMessages: 1, returnImmediately: true },
            { timeout: PULL_TIMEOUT_MS },
          );
        } catch (err) {
          if (grpcCode(err) === GRPC.NOT_FOUND) {
            this.answer = undefined; // deleted: discovery drops it
            return undefined;
          }
          if (!this.pullFailing.has(queue))
            this.log.warn(
              `cannot pull from Pub/Sub subscription ${this.projectId}/${subscription} (${errorMessage(err)}); ` +
                "trying again quietly",
            );
          this.pullFailing.add(queue);
          return undefined;
        }
        if (this.pullFailing.delete(queue))
          this.log.info(`pulling from Pub/Sub subscription ${this.projectId}/${subscription} works again`);
        const m = received?.[0];
        if (!m?.ackId || !m.message) return undefined;
        const message: PulledMessage = {
          ackId: m.ackId,
          messageId: m.message.messageId ?? m.ackId,
          data: m.message.data instanceof Uint8Array ? m.message.data : Buffer.from(m.message.data ?? "", "base64"),
          attributes: { ...(m.message.attributes ?? {}) },
        };
        if (this.closed || !accept(message.data)) {
          refused.push(message);
          if (this.closed) return undefined;
          continue;
        }
        return await this.hold(queue, subscription, message);
      }
      return undefined;
    } finally {
      for (const r of refused) await this.giveBack(subscription, r.ackId).catch(() => undefined);
    }
  }

  private async hold(queue: string, subscription: string, message: PulledMessage): Promise<PubsubDelivery> {
    const facts = messageFacts(message.messageId, message.attributes);
    const lease = new Lease(
      this.options.ackDeadlineS ?? DEFAULT_ACK_DEADLINE_S,
      (deadlineS) => this.setDeadline(subscription, message.ackId, deadlineS),
      (err) => this.leaseFault(delivery, err),
    );
    const delivery: PubsubDelivery = new PubsubDelivery(queue, subscription, message, facts, lease, this);
    this.held.add(delivery);
    await lease.start();
    return delivery;
  }

  /** A renewal failed: a deleted subscription withdraws the request, anything else is said. */
  private leaseFault(delivery: PubsubDelivery, err: unknown) {
    if (delivery.isSettled) return;
    if (grpcCode(err) === GRPC.NOT_FOUND) {
      if (delivery.revoked.aborted) return;
      this.log.warn(
        `subscription ${this.projectId}/${delivery.subscription} was deleted: ` +
          `stopping the experiment of ${delivery.where}`,
      );
      delivery.lease.stop();
      delivery.revoke(`subscription ${delivery.subscription} of queue ${delivery.queue} was deleted`);
      this.answer = undefined;
      return;
    }
    this.log.warn(
      `cannot extend the ack deadline of ${delivery.where} (${errorMessage(err)}); ` +
        "Pub/Sub may hand it to another runner",
    );
  }

  // ── clients, topics, publishing ──────────────────────────────────────────────────────────────

  private client(): Promise<v1.SubscriberClient> {
    if (!this.subscriber) {
      const made = this.pubsub
        .getClientConfig()
        .then(
          (config) =>
            new v1.SubscriberClient({ ...config, port: config.port === undefined ? undefined : Number(config.port) }),
        );
      // A failure (e.g. unusable credentials) is not kept: the next call tries again.
      made.catch(() => {
        if (this.subscriber === made) this.subscriber = undefined;
      });
      this.subscriber = made;
    }
    return this.subscriber;
  }

  private subscriptionPath(subscription: string): string {
    return `projects/${this.projectId}/subscriptions/${subscription}`;
  }

  private async setDeadline(subscription: string, ackId: string, deadlineS: number): Promise<void> {
    const client = await this.client();
    await client.modifyAckDeadline({
      subscription: this.subscriptionPath(subscription),
      ackIds: [ackId],
      ackDeadlineSeconds: deadlineS,
    });
  }

  /** The topic a subscription reads (`projects/<p>/topics/<id>`), asked once. */
  private async topicOf(subscription: string): Promise<string> {
    let topic = this.topicOfSubscription.get(subscription);
    if (!topic) {
      const client = await this.client();
      const [meta] = await client.getSubscription({ subscription: this.subscriptionPath(subscription) });
      topic = meta.topic ?? undefined;
      if (!topic) throw new Error(`subscription ${subscription} has no topic`);
      this.topicOfSubscription.set(subscription, topic);
    }
    return topic;
  }

  /** Publish to a topic (id or full path); a topic id gets its topic and `<id>_sub` made when missing. */
  private async publishTo(
    topicName: string,
    data: Buffer,
    attributes: Record<string, string> | undefined,
  ): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      if (!topicName.includes("/")) await this.ensureTopic(topicName);
      let topic = this.topics.get(topicName);
      if (!topic) {
        topic = this.pubsub.topic(topicName, { batching: { maxMessages: 1 } });
        this.topics.set(topicName, topic);
      }
      try {
        return await topic.publishMessage({ data, attributes });
      } catch (err) {
        // Deleted since it was made here: make it again, once.
        if (grpcCode(err) !== GRPC.NOT_FOUND || attempt >= 1) throw err;
        this.ensured.delete(topicName);
        this.topics.delete(topicName);
      }
    }
  }

  private async ensureTopic(topic: string): Promise<void> {
    if (this.ensured.has(topic)) return;
    await this.pubsub.createTopic(topic).catch(ignoreExisting);
    await this.pubsub.createSubscription(topic, subscriptionFor(topic)).catch(ignoreExisting);
    this.ensured.add(topic);
  }

  private wake() {
    for (const w of [...this.wakers]) w();
  }
}

function ignoreExisting(err: unknown): void {
  if (grpcCode(err) !== GRPC.ALREADY_EXISTS) throw err;
}
