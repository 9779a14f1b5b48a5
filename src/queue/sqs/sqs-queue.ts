// SQS queues in the studioml layout (one queue per name, `sqs_…`): discovery with ListQueues,
// one message per receive with a renewed visibility lease, counts from ApproximateReceiveCount,
// and a failed place per queue.
//
// Decisions:
// - Counting: deliveryCount = the copy's `studio_deliveries` attribute (0 when absent) + SQS's
//   ApproximateReceiveCount, so a runner that dies holding a message is counted. A counted nack is
//   ChangeMessageVisibility 0 (the next receive counts). Deliveries that must not count (a message
//   this runner refuses because it does not fit, nack with countDelivery=false at shutdown) are
//   given back as a copy carrying the count before them, and the original is deleted: SQS cannot
//   lower a receive count. Such a copy goes to the back of the queue and gets a new SQS message id;
//   its `studio_id` attribute keeps the first id.
// - A message received more than --max-deliveries times (runners died holding it) goes to the
//   failed place when it is received, without running.
// - Failed place: the queue `studioml_failed_<queue>` (see conventions.ts), never served by the
//   default --queue-match. The copy carries the body unchanged and attributes studio_queue,
//   studio_failed_because, studio_failed_at, studio_failed_deliveries and studio_reasons (JSON).
//   The original is deleted only after the copy was sent.
// - The 12-hour ceiling: SQS refuses a visibility reaching past 12 h after the receive. Renewals
//   stop 5 minutes before it, after one last renewal up to the ceiling, and a warning says when the
//   message becomes visible again (another runner may then run it a second time). A re-sent copy
//   would be visible to other runners at once (DelaySeconds is at most 15 min), so it would not
//   avoid the double run; the ack of the first run still deletes the message when its receipt
//   handle is accepted. Keep experiments on SQS under 12 h, or use another queue.
// - Waiting: SQS cannot notify; waitForWork resolves after at most a second and receive long-polls
//   for up to `waitSeconds` (default 1 s) per queue.

import { waitForWake } from "../wait-for-wake.ts";
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
  type Message,
  type MessageAttributeValue,
} from "@aws-sdk/client-sqs";
import { errorMessage, RetryableError } from "../../errors.ts";
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
import type { SqsAccount } from "./accounts.ts";
import { ATTR, failedQueueName, queueNameOfUrl, type Reason } from "./conventions.ts";
import { SqsDelivery, type QueueLog, type ReceivedMessage, type SqsDeliveryHost } from "./delivery.ts";
import { VisibilityLease } from "./lease.ts";
import { QueueMissingError, sqsFault } from "./sqs-errors.ts";
import type { ResponsePublisher } from "../response-publisher.ts";
import { SqsResponsePublisher } from "./response-publisher.ts";

export type SqsQueueOptions = QueueFilterOptions & {
  accounts: SqsAccount[];
  /** Region when an account has none. */
  region?: string;
  /** http(s)://host:port of an SQS-compatible server; AWS's own endpoints when absent. */
  endpoint?: string;
  maxDeliveries: number;
  /** Visibility lease of a held message; renewed every half lease. */
  leaseMs?: number;
  /** Long poll of one receive, in whole seconds (0–20). */
  waitSeconds?: number;
  /** How long a ListQueues answer is reused. */
  discoveryIntervalMs?: number;
  /** Renewals stop this long after the receive (default: 12 h minus 5 min). */
  ceilingMs?: number;
  log?: QueueLog;
};

const DEFAULT_LEASE_MS = 5 * 60 * 1000;
const WAIT_FOR_WORK_MAX_MS = 1000;
const MAX_MESSAGE_ATTRIBUTES = 10;
const QUIET_LOG: QueueLog = { info: () => undefined, warn: () => undefined };

type Account = { account: SqsAccount; client: SQSClient; where: string };
type QueueRef = { account: Account; url: string };

const encoder = new TextEncoder();
const stringAttr = (value: string): MessageAttributeValue => ({ DataType: "String", StringValue: value });

export class SqsQueueBackend implements QueueBackend, SqsDeliveryHost {
  readonly kind = "sqs";
  readonly maxDeliveries: number;
  readonly log: QueueLog;
  readonly leaseMs: number;
  private readonly accounts: Account[];
  private readonly urls = new Map<string, QueueRef>();
  private readonly held = new Set<SqsDelivery>();
  private discovered?: { atMs: number; names: string[] };
  private readonly warned = new Set<string>();
  private closed = false;

  constructor(readonly options: SqsQueueOptions) {
    if (!options.accounts.length) throw new Error("SQS needs at least one account");
    this.maxDeliveries = options.maxDeliveries;
    this.log = options.log ?? QUIET_LOG;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.accounts = options.accounts.map((account) => {
      const region = account.region ?? options.region ?? "us-east-1";
      const client = new SQSClient({
        region,
        ...(options.endpoint ? { endpoint: options.endpoint, useQueueUrlAsEndpoint: false } : {}),
        // No credentials given (--sqs-default-account): the SDK's default chain resolves and refreshes them.
        ...(account.credentials ? { credentials: account.credentials } : {}),
        maxAttempts: 3,
      });
      return { account, client, where: `SQS account ${account.name} (${options.endpoint ?? region})` };
    });
  }

  // ── QueueBackend ─────────────────────────────────────────────────────────────────────────────

  async discover(): Promise<string[]> {
    const reuseMs = this.options.discoveryIntervalMs ?? 2000;
    if (this.discovered && Date.now() - this.discovered.atMs < reuseMs) return this.discovered.names;
    const names = new Set<string>();
    for (const account of this.accounts) {
      try {
        for (const url of await this.listQueueUrls(account)) {
          const name = queueNameOfUrl(url);
          if (!queueWanted(name, filterOf(this.options))) continue;
          if (names.has(name) && this.urls.get(name)?.account !== account) {
            this.warnOnce(
              `duplicate ${name}`,
              `queue ${name} exists in more than one SQS account; ` +
                `serving the one in account ${this.urls.get(name)!.account.account.name}`,
            );
            continue;
          }
          names.add(name);
          this.urls.set(name, { account, url });
        }
      } catch (err) {
        this.warnOnce(
          `list ${account.account.name} ${errorMessage(err)}`,
          `cannot list the queues of ${account.where}: ${errorMessage(err)}`,
        );
      }
    }
    const list = [...names].sort();
    this.discovered = { atMs: Date.now(), names: list };
    return list;
  }

  open(name: string): TaskQueue {
    return { name, receive: (options?: ReceiveOptions) => this.receive(name, options) };
  }

  async publish(queue: string, body: Uint8Array | string): Promise<string> {
    const ref = await this.queueRef(queue, { create: true });
    const text = typeof body === "string" ? body : new TextDecoder().decode(body);
    const sent = await this.call(ref.account, "SendMessage", queue, () =>
      ref.account.client.send(new SendMessageCommand({ QueueUrl: ref.url, MessageBody: text })),
    );
    this.discovered = undefined;
    return sent.MessageId ?? "";
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed) return Promise.resolve();
    return waitForWake(Math.min(timeoutMs, WAIT_FOR_WORK_MAX_MS), signal);
  }

  /** Reports go to `<queue>_response` in the first of this backend's accounts that has it. */
  responsePublisher(): ResponsePublisher {
    return new SqsResponsePublisher({
      accounts: this.options.accounts,
      region: this.options.region,
      endpoint: this.options.endpoint,
    });
  }

  /** Stops renewing the messages still held (SQS shows them again when their lease runs out). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const held = [...this.held];
    this.held.clear();
    await Promise.all(held.map((d) => d.abandon()));
    if (held.length)
      this.log.warn(
        `closed while holding ${held.length} SQS message(s): ` +
          `they become visible again within ${Math.round(this.leaseMs / 1000)}s`,
      );
    for (const a of this.accounts) a.client.destroy();
  }

  // ── SqsDeliveryHost ──────────────────────────────────────────────────────────────────────────

  async makeVisible(msg: ReceivedMessage): Promise<void> {
    await this.changeVisibility(msg, 0);
  }

  async remove(msg: ReceivedMessage): Promise<void> {
    const ref = await this.queueRef(msg.queue);
    await this.call(ref.account, "DeleteMessage", msg.queue, () =>
      ref.account.client.send(new DeleteMessageCommand({ QueueUrl: msg.queueUrl, ReceiptHandle: msg.receiptHandle })),
    );
  }

  async replaceWithCopy(msg: ReceivedMessage, deliveries: number): Promise<void> {
    const ref = await this.queueRef(msg.queue);
    const attributes = this.copyAttributes(msg, {
      [ATTR.deliveries]: { DataType: "Number", StringValue: String(Math.max(0, deliveries)) },
      [ATTR.originalId]: stringAttr(msg.id),
      ...(msg.reasons.length ? { [ATTR.reasons]: stringAttr(JSON.stringify(msg.reasons)) } : {}),
    });
    await this.call(ref.account, "SendMessage", msg.queue, () =>
      ref.account.client.send(
        new SendMessageCommand({
          QueueUrl: ref.url,
          MessageBody: new TextDecoder().decode(msg.body),
          MessageAttributes: attributes,
        }),
      ),
    );
    await this.remove(msg);
  }

  async moveToFailed(msg: ReceivedMessage, reasons: Reason[], because: string): Promise<void> {
    const home = await this.queueRef(msg.queue);
    const failed = failedQueueName(msg.queue);
    const ref = await this.queueRef(failed, { create: true, account: home.account });
    const attributes = this.copyAttributes(msg, {
      [ATTR.originalId]: stringAttr(msg.id),
      [ATTR.queue]: stringAttr(msg.queue),
      [ATTR.failedBecause]: stringAttr(because),
      [ATTR.failedAt]: stringAttr(new Date().toISOString()),
      [ATTR.failedDeliveries]: { DataType: "Number", StringValue: String(msg.deliveryCount) },
      [ATTR.reasons]: stringAttr(JSON.stringify(reasons)),
    });
    await this.call(ref.account, "SendMessage", failed, () =>
      ref.account.client.send(
        new SendMessageCommand({
          QueueUrl: ref.url,
          MessageBody: new TextDecoder().decode(msg.body),
          MessageAttributes: attributes,
        }),
      ),
    );
    try {
      await this.remove(msg);
    } catch (err) {
      this.log.warn(
        `${msg.queue}/${msg.id} was copied to ${failed} but the original could not be deleted ` +
          `(${errorMessage(err)}): it may come back once`,
      );
    }
    this.log.warn(`request ${msg.queue}/${msg.id} kept in the failed place (queue ${failed}): ${because}`);
  }

  done(delivery: SqsDelivery): void {
    this.held.delete(delivery);
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────────

  private async receive(queue: string, options: ReceiveOptions = {}): Promise<Delivery | undefined> {
    if (this.closed) return undefined;
    let ref: QueueRef;
    try {
      ref = await this.queueRef(queue);
    } catch (err) {
      if (err instanceof QueueMissingError) return undefined;
      throw err;
    }
    const receivedAtMs = Date.now();
    const answer = await this.call(ref.account, "ReceiveMessage", queue, () =>
      ref.account.client.send(
        new ReceiveMessageCommand({
          QueueUrl: ref.url,
          MaxNumberOfMessages: 1,
          WaitTimeSeconds: this.options.waitSeconds ?? 1,
          VisibilityTimeout: Math.max(1, Math.ceil(this.leaseMs / 1000)),
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
          MessageAttributeNames: ["All"],
        }),
      ),
    );
    const raw = answer.Messages?.[0];
    if (!raw?.ReceiptHandle) return undefined;
    const msg = this.readMessage(queue, ref.url, raw);
    const delivery = this.hold(msg, receivedAtMs);
    if (this.closed) {
      await delivery.abandon();
      return undefined;
    }
    if (msg.deliveryCount > this.maxDeliveries) {
      await delivery.reject(
        `delivered ${msg.deliveryCount} times without being settled (the runners holding it stopped); ` +
          `--max-deliveries is ${this.maxDeliveries}`,
      );
      return undefined;
    }
    if (options.accept && !options.accept(msg.body)) {
      this.held.delete(delivery);
      await delivery.abandon();
      await delivery.giveBackUncounted("not accepted by this runner");
      return undefined;
    }
    return delivery;
  }

  private hold(msg: ReceivedMessage, receivedAtMs: number): SqsDelivery {
    const where = `${msg.queue}/${msg.id}`;
    const lease = new VisibilityLease({
      leaseMs: this.leaseMs,
      receivedAtMs,
      ceilingMs: this.options.ceilingMs,
      renew: (seconds) => this.changeVisibility(msg, seconds),
      onRenewFailed: (why) => this.log.warn(`could not renew the visibility of ${where} (${why}); retrying`),
      onCeiling: (atMs) =>
        this.log.warn(
          `${where} has been held close to SQS's 12-hour visibility ceiling: ` +
            `it becomes visible again at ${new Date(atMs).toISOString()} ` +
            "and another runner may run it a second time; this run goes on and deletes it when it finishes",
        ),
    });
    const delivery = new SqsDelivery(msg, lease, this);
    this.held.add(delivery);
    return delivery;
  }

  private readMessage(queue: string, queueUrl: string, raw: Message): ReceivedMessage {
    const attributes = raw.MessageAttributes ?? {};
    const carried = Number(attributes[ATTR.deliveries]?.StringValue ?? 0);
    const received = Number(raw.Attributes?.ApproximateReceiveCount ?? 1);
    let reasons: Reason[] = [];
    try {
      const parsed = JSON.parse(attributes[ATTR.reasons]?.StringValue ?? "[]");
      if (Array.isArray(parsed)) reasons = parsed as Reason[];
    } catch {
      reasons = [];
    }
    const foreign: ReceivedMessage["foreignAttributes"] = {};
    for (const [k, v] of Object.entries(attributes)) {
      if (!k.startsWith("studio_") && v.DataType)
        foreign[k] = { DataType: v.DataType, StringValue: v.StringValue, BinaryValue: v.BinaryValue };
    }
    return {
      queue,
      queueUrl,
      receiptHandle: raw.ReceiptHandle!,
      id: attributes[ATTR.originalId]?.StringValue ?? raw.MessageId ?? raw.ReceiptHandle!,
      body: encoder.encode(raw.Body ?? ""),
      deliveryCount:
        (Number.isFinite(carried) ? carried : 0) + (Number.isFinite(received) && received > 0 ? received : 1),
      reasons,
      foreignAttributes: foreign,
    };
  }

  /** Ours override theirs; theirs are dropped past SQS's 10 attributes. */
  private copyAttributes(
    msg: ReceivedMessage,
    ours: Record<string, MessageAttributeValue>,
  ): Record<string, MessageAttributeValue> {
    const room = MAX_MESSAGE_ATTRIBUTES - Object.keys(ours).length;
    const theirs = Object.entries(msg.foreignAttributes).slice(0, Math.max(0, room));
    return { ...Object.fromEntries(theirs), ...ours };
  }

  // ── SQS calls ────────────────────────────────────────────────────────────────────────────────

  private async changeVisibility(msg: ReceivedMessage, seconds: number): Promise<void> {
    const ref = await this.queueRef(msg.queue);
    await this.call(ref.account, "ChangeMessageVisibility", msg.queue, () =>
      ref.account.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: msg.queueUrl,
          ReceiptHandle: msg.receiptHandle,
          VisibilityTimeout: seconds,
        }),
      ),
    );
  }

  /** Every account lists its queues with its own credentials; the first that cannot throws. */
  async check(_timeoutMs: number): Promise<string> {
    const lines: string[] = [];
    for (const account of this.accounts) {
      let urls: string[];
      try {
        urls = await this.listQueueUrls(account);
      } catch (err) {
        throw new Error(`cannot list the queues of ${account.where}: ${errorMessage(err)}`);
      }
      const names = urls.map(queueNameOfUrl).filter((n) => queueWanted(n, filterOf(this.options)));
      lines.push(`${account.where}: ${describeQueues(names.sort())}`);
    }
    return lines.join("; ");
  }

  private async listQueueUrls(account: Account): Promise<string[]> {
    const urls: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call(account, "ListQueues", "all queues", () =>
        account.client.send(new ListQueuesCommand({ MaxResults: 1000, NextToken: token })),
      );
      urls.push(...(page.QueueUrls ?? []));
      token = page.NextToken;
    } while (token);
    return urls;
  }

  /** The queue's URL (cached); with create, the queue is created when missing. */
  private async queueRef(queue: string, how: { create?: boolean; account?: Account } = {}): Promise<QueueRef> {
    const known = this.urls.get(queue);
    if (known) return known;
    const account = how.account ?? this.accounts[0]!;
    let url: string | undefined;
    if (how.create) {
      url = (
        await this.call(account, "CreateQueue", queue, () =>
          account.client.send(new CreateQueueCommand({ QueueName: queue })),
        )
      ).QueueUrl;
    } else {
      url = (
        await this.call(account, "GetQueueUrl", queue, () =>
          account.client.send(new GetQueueUrlCommand({ QueueName: queue })),
        )
      ).QueueUrl;
    }
    if (!url) throw new RetryableError(`SQS gave no URL for queue ${queue} in ${account.where}`);
    const ref = { account, url };
    this.urls.set(queue, ref);
    return ref;
  }

  private async call<T>(account: Account, operation: string, queue: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const fault = sqsFault(err, operation, `${queue} in ${account.where}`);
      if (fault instanceof QueueMissingError) {
        this.urls.delete(queue);
        this.discovered = undefined;
      }
      throw fault;
    }
  }

  private warnOnce(key: string, message: string) {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log.warn(message);
  }
}
