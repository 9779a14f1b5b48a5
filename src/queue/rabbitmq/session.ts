// One AMQP connection kept open: connects with capped, jittered exponential back-off, reconnects
// when the connection drops, tells listeners when it comes up or goes down, and opens channels.

import amqp, { type Channel, type ChannelModel, type ConfirmChannel } from "amqplib";
import { hostname } from "node:os";
import { RetryableError, errorMessage } from "../../errors.ts";
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.ts";
import { maskSecrets, type AmqpAddress } from "./broker-address.ts";

export type SessionLog = { info(message: string): void; warn(message: string): void };

export type SessionOptions = {
  address: AmqpAddress;
  backoff?: BackoffOptions;
  connectTimeoutMs?: number;
  /** Shown by the broker (management UI, rabbitmqctl list_connections). */
  connectionName?: string;
  log: SessionLog;
};

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** A broker (or a dead socket) that does not answer connection.close within this is cut off. */
const CLOSE_TIMEOUT_MS = 3_000;
/** While the broker stays away, repeat the warning only every this many failed attempts. */
const WARN_EVERY_FAILURES = 10;

export class AmqpSession {
  private model?: ChannelModel;
  private connecting?: Promise<void>;
  private closed = false;
  private cancelSleep?: () => void;
  private readonly upListeners = new Set<() => void>();
  private readonly downListeners = new Set<(reason: string) => void>();
  private readonly readyWaiters = new Set<() => void>();
  private downSinceMs?: number;
  private firstAttemptDone = false;

  constructor(private readonly options: SessionOptions) {}

  /** Begin connecting (in the background); idempotent. */
  start(): void {
    if (!this.model && !this.connecting && !this.closed)
      this.connecting = this.connectLoop().finally(() => (this.connecting = undefined));
  }

  get isUp(): boolean {
    return this.model !== undefined;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  onUp(listener: () => void): void {
    this.upListeners.add(listener);
  }

  onDown(listener: (reason: string) => void): void {
    this.downListeners.add(listener);
  }

  /** The connection once it is up; undefined when it is not up within waitMs or the session closed. */
  async ready(waitMs: number): Promise<ChannelModel | undefined> {
    this.start();
    if (this.model || this.closed || waitMs <= 0) return this.model;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.readyWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.readyWaiters.add(done);
    });
    return this.model;
  }

  /**
   * Up now, or as soon as the very first connection attempt succeeds (a fresh backend's first
   * calls should not miss the broker); during a later outage this does not wait.
   */
  async upOrFirstAttempt(): Promise<boolean> {
    this.start();
    if (!this.model && !this.firstAttemptDone && !this.closed)
      await this.ready(this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    return this.isUp;
  }

  /** A channel on the current connection; RetryableError when there is none. */
  async channel(): Promise<Channel> {
    const ch = await this.current().createChannel();
    ch.on("error", () => undefined); // owners listen too; an unheard channel error must never crash the runner
    return ch;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    const ch = await this.current().createConfirmChannel();
    ch.on("error", () => undefined);
    return ch;
  }

  mask(err: unknown): string {
    return maskSecrets(errorMessage(err), this.options.address.secrets);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cancelSleep?.();
    for (const wake of [...this.readyWaiters]) wake();
    const model = this.model;
    this.model = undefined;
    if (model) await closeWithin(model, CLOSE_TIMEOUT_MS);
    await this.connecting?.catch(() => undefined);
  }

  private current(): ChannelModel {
    if (!this.model) throw new RetryableError(`not connected to ${this.options.address.redacted}`);
    return this.model;
  }

  private async connectLoop(): Promise<void> {
    const { address, log } = this.options;
    for (let failures = 0; !this.closed; ) {
      try {
        const model = await amqp.connect(address.connect, {
          timeout: this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
          clientProperties: {
            connection_name: this.options.connectionName ?? `studio-runner ${hostname()} pid ${process.pid}`,
          },
        });
        if (this.closed) {
          await model.close().catch(() => undefined);
          return;
        }
        this.attach(model);
        this.firstAttemptDone = true;
        const outage =
          this.downSinceMs !== undefined ? ` after ${((Date.now() - this.downSinceMs) / 1000).toFixed(1)}s` : "";
        this.downSinceMs = undefined;
        log.info(`connected to RabbitMQ at ${address.redacted}${outage}`);
        for (const wake of [...this.readyWaiters]) wake();
        for (const listener of [...this.upListeners]) listener();
        return;
      } catch (err) {
        failures++;
        this.downSinceMs ??= Date.now();
        if (!this.firstAttemptDone) {
          this.firstAttemptDone = true;
          for (const wake of [...this.readyWaiters]) wake();
        }
        const delayMs = backoffDelayMs(failures, this.options.backoff ?? DEFAULT_BACKOFF);
        if (failures === 1 || failures % WARN_EVERY_FAILURES === 0) {
          log.warn(
            `cannot connect to RabbitMQ at ${address.redacted} (attempt ${failures}): ${this.mask(err)}; ` +
              `retrying in ${(delayMs / 1000).toFixed(1)}s`,
          );
        }
        await this.sleep(delayMs);
      }
    }
  }

  private attach(model: ChannelModel) {
    let lastError: unknown;
    model.on("error", (err: unknown) => (lastError = err));
    model.on("blocked", (reason: unknown) =>
      this.options.log.warn(`RabbitMQ blocks publishing (${String(reason)}): publishes wait until it unblocks`),
    );
    model.on("unblocked", () => this.options.log.info("RabbitMQ unblocked publishing"));
    model.on("close", (err?: unknown) => {
      if (this.model !== model) return;
      this.model = undefined;
      const reason = (err ?? lastError) ? this.mask(err ?? lastError) : "closed";
      this.downSinceMs = Date.now();
      for (const listener of [...this.downListeners]) listener(reason);
      if (this.closed) return;
      this.options.log.warn(
        `lost the connection to RabbitMQ at ${this.options.address.redacted} (${reason}); reconnecting`,
      );
      this.start();
    });
    this.model = model;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.cancelSleep = done;
    });
  }
}

/** amqplib waits for close-ok forever when the socket dies during the close: give up and destroy it. */
async function closeWithin(model: ChannelModel, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    model.close().then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (!closed) (model.connection as unknown as { stream?: { destroy(): void } }).stream?.destroy();
}
