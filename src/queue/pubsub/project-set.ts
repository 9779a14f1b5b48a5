// The Pub/Sub backend the runner serves: one PubsubQueueBackend per Google project, the set of
// projects rescanned from --google-certs, each queue name served by the first project that has it.

import { errorMessage } from "../../errors.ts";
import type { QueueBackend, QueueFilterOptions, ReceiveOptions, TaskQueue } from "../task-queue.ts";
import type { QueueLog } from "./delivery.ts";
import { PubsubQueueBackend } from "./pubsub-queue.ts";
import type { ResponsePublisher } from "../response-publisher.ts";
import { PubsubResponsePublisher } from "./response-publisher.ts";
import type { ProjectSource } from "./service-accounts.ts";

export type ProjectSetOptions = QueueFilterOptions & {
  /** Scans the projects (and says what it could not use). */
  scan: () => { projects: ProjectSource[]; problems: string[] };
  /** How often the projects are scanned again (on discover). */
  rescanIntervalMs?: number;
  maxDeliveries: number;
  ackDeadlineS?: number;
  log: QueueLog;
};

/** Thrown by publish when there is no project to publish into. */
export class NoPubsubProjectError extends Error {
  constructor() {
    super(
      "no Google Pub/Sub project to publish into " +
        "(set --google-certs, GOOGLE_APPLICATION_CREDENTIALS or --pubsub-project)",
    );
    this.name = "NoPubsubProjectError";
  }
}

const DEFAULT_RESCAN_MS = 30_000;
const POLL_MS = 1000;
/** How long a scan of the projects is reused by the report publisher. */
const PROJECT_SCAN_REUSE_MS = 30_000;

export class PubsubProjectSet implements QueueBackend {
  readonly kind = "pubsub";
  /** Source key (project + key file) → its backend; removed sources stay until close (their held messages still
   * renew). */
  private readonly backends = new Map<string, PubsubQueueBackend>();
  private active: string[] = [];
  private owner = new Map<string, PubsubQueueBackend>();
  private scannedAtMs = -Infinity;
  private readonly reported = new Set<string>();
  private closed = false;

  constructor(readonly options: ProjectSetOptions) {}

  /** The projects served now (scanning when due). */
  projects(): string[] {
    this.rescanIfDue();
    return this.active.map((k) => this.backends.get(k)!.projectId);
  }

  async discover(): Promise<string[]> {
    this.rescanIfDue();
    const owner = new Map<string, PubsubQueueBackend>();
    for (const key of this.active) {
      const b = this.backends.get(key)!;
      let names: string[];
      try {
        names = await b.discover();
      } catch (err) {
        this.reportOnce(
          `discover ${key}`,
          `cannot list the queues of Pub/Sub project ${b.projectId}: ${errorMessage(err)}`,
        );
        continue;
      }
      for (const name of names) {
        const first = owner.get(name);
        if (!first) owner.set(name, b);
        else
          this.reportOnce(
            `dup ${name} ${b.projectId}`,
            `Pub/Sub queue ${name} exists in projects ${first.projectId} and ${b.projectId}: ` +
              `serving it from ${first.projectId} only`,
          );
      }
    }
    this.owner = owner;
    return [...owner.keys()].sort();
  }

  /** Every project found is listed with its own credentials; none found, or any refusing, throws. */
  async check(timeoutMs: number): Promise<string> {
    const { projects, problems } = this.options.scan();
    if (!projects.length)
      throw new Error(`no Google project to serve${problems.length ? `: ${problems.join("; ")}` : ""}`);
    const lines: string[] = [];
    for (const source of projects) {
      const backend = new PubsubQueueBackend({
        projectId: source.projectId,
        keyFilename: source.keyFilename,
        maxDeliveries: this.options.maxDeliveries,
        match: this.options.match,
        mismatch: this.options.mismatch,
        filter: this.options.filter,
        log: this.options.log,
      });
      try {
        lines.push(`${await backend.check(timeoutMs)} (credentials: ${source.origin})`);
      } finally {
        await backend.close();
      }
    }
    return [...lines, ...problems].join("; ");
  }

  open(name: string): TaskQueue {
    return {
      name,
      receive: async (options?: ReceiveOptions) => {
        const b = this.owner.get(name);
        return b && !this.closed ? b.open(name).receive(options) : undefined;
      },
    };
  }

  async publish(queue: string, body: Uint8Array | string): Promise<string> {
    this.rescanIfDue();
    const b = this.owner.get(queue) ?? this.backends.get(this.active[0] ?? "");
    if (!b) throw new NoPubsubProjectError();
    const id = await b.publish(queue, body);
    this.owner.set(queue, this.owner.get(queue) ?? b);
    return id;
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const live = this.active.map((k) => this.backends.get(k)!);
    if (this.closed) return Promise.resolve();
    if (!live.length) return Bun.sleep(Math.min(timeoutMs, POLL_MS));
    return Promise.race(live.map((b) => b.waitForWork(timeoutMs, signal)));
  }

  /** Reports go to the topic `<queue>_response` of the first project that has it, from a scan of its own (reused
   * for PROJECT_SCAN_REUSE_MS). */
  responsePublisher(): ResponsePublisher {
    let scanned: { atMs: number; projects: ProjectSource[] } | undefined;
    return new PubsubResponsePublisher(() => {
      if (!scanned || Date.now() - scanned.atMs > PROJECT_SCAN_REUSE_MS)
        scanned = { atMs: Date.now(), projects: this.options.scan().projects };
      return scanned.projects;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.backends.values()].map((b) => b.close()));
  }

  private rescanIfDue() {
    if (this.closed || Date.now() - this.scannedAtMs < (this.options.rescanIntervalMs ?? DEFAULT_RESCAN_MS)) return;
    this.scannedAtMs = Date.now();
    const { projects, problems } = this.options.scan();
    for (const p of problems) this.reportOnce(`problem ${p}`, p);
    const active: string[] = [];
    for (const source of projects) {
      const key = `${source.projectId} ${source.keyFilename ?? ""}`;
      if (!this.backends.has(key)) {
        this.backends.set(
          key,
          new PubsubQueueBackend({
            projectId: source.projectId,
            keyFilename: source.keyFilename,
            maxDeliveries: this.options.maxDeliveries,
            ackDeadlineS: this.options.ackDeadlineS,
            match: this.options.match,
            mismatch: this.options.mismatch,
            filter: this.options.filter,
            log: this.options.log,
          }),
        );
        this.options.log.info(
          `serving the Pub/Sub subscriptions of project ${source.projectId} (credentials: ${source.origin})`,
        );
      }
      active.push(key);
    }
    for (const key of this.active) {
      if (!active.includes(key))
        this.options.log.info(
          `no longer taking work from Pub/Sub project ${this.backends.get(key)!.projectId}: ` +
            "its credentials file is gone",
        );
    }
    this.active = active;
  }

  private reportOnce(key: string, message: string) {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.options.log.warn(message);
  }
}
