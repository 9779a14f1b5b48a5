// Reports to `<queue>_response` (protocol.md §7, issue #9): listens to the runner's event stream
// and sends each attempt's progress (Prestart when taken, Started when the script runs, Stopping
// when it ended and the final upload begins, then Success or Failed with the reason) and its log
// lines, in batches, to the report queue of the system the request came from — only where that
// queue exists. Reports are encrypted with the experimenter's RSA key when
// --response-signatures-dir has one for the queue's prefix, plain JSON otherwise.
//
// Reports never fail or slow an experiment: listeners only buffer; sending happens on one
// ordered chain per report queue; a send that fails or takes too long is dropped, and said once
// per queue (until a send works again). Memory is bounded: log lines wait in a per-attempt buffer
// of at most LOG_BUFFER_MAX_BYTES (beyond that they are dropped and counted, and the next batch
// says how many); log batches wait while a queue is backed up, so progress reports still find
// room; at most MAX_PENDING_REPORTS reports of any kind wait per queue.

import type { KeyObject } from "node:crypto";
import { errorMessage } from "../errors.ts";
import type { RunnerEventMap, RunnerEvents } from "../observe/events.ts";
import { sealResponse } from "../request/envelope/seal.ts";
import {
  loggingReport,
  progressReport,
  type Report,
  type ReportIdentity,
  type TaskState,
} from "./response/report-format.ts";
import { responseQueueName, type ResponsePublisher, type ResponseTarget } from "../queue/response-publisher.ts";

/** Log lines are sent at most this often per attempt (unless a batch fills first). */
export const LOG_FLUSH_INTERVAL_MS = 1_000;
/** One logging report carries at most this much text. */
export const LOG_BATCH_MAX_BYTES = 64 * 1024;
/** Log text an attempt may have waiting; further lines are dropped and counted. */
export const LOG_BUFFER_MAX_BYTES = 256 * 1024;
/** A longer line is cut to this many characters. */
export const LOG_LINE_MAX_CHARS = 4 * 1024;
/** Reports waiting to be sent to one queue; further reports are dropped. */
export const MAX_PENDING_REPORTS = 64;
/** Log batches are held back (buffered, then dropped) while this many reports wait for a queue. */
const LOG_BATCHES_WAITING_MAX = MAX_PENDING_REPORTS / 4;
/** A send taking longer than this counts as failed (the report is dropped). */
export const SEND_TIMEOUT_MS = 10_000;
/** How long "this report queue exists" is believed. */
const TARGET_TTL_MS = 60_000;
/** How long "this report queue does not exist" is believed (a queue made later is found this soon). */
const ABSENT_TTL_MS = 10_000;
const ERROR_MSG_MAX_CHARS = 4 * 1024;
const PUBLISHER_CLOSE_WAIT_MS = 2_000;

export type ReportsLog = { info(message: string): void; warn(message: string): void };

export type ResponseReportsOptions = {
  events: RunnerEvents;
  /** One per queue backend kind the runner serves. */
  publishers: ResponsePublisher[];
  /** The experimenter's RSA public key for reports of a work queue (longest prefix), if any. */
  keyFor?: (workQueue: string) => KeyObject | undefined;
  /** The host (or pod) name reports carry as executor_id. */
  executorId: string;
  log: ReportsLog;
  logFlushIntervalMs?: number;
};

type QueueState = {
  label: string;
  publisher: ResponsePublisher;
  workQueue: string;
  target?: { value: ResponseTarget | undefined; atMs: number };
  chain: Promise<void>;
  pending: number;
  dropped: number;
  failing: boolean;
  announced: boolean;
};

type AttemptState = {
  who: ReportIdentity;
  queue: QueueState;
  lines: string[];
  bytes: number;
  droppedLines: number;
  timer?: ReturnType<typeof setTimeout>;
};

export class ResponseReports {
  private readonly publishers = new Map<string, ResponsePublisher>();
  private readonly queues = new Map<string, QueueState>();
  private readonly attempts = new Map<string, AttemptState>();
  private readonly unsubscribe: Array<() => void>;
  private closed = false;

  constructor(private readonly options: ResponseReportsOptions) {
    for (const p of options.publishers) this.publishers.set(p.kind, p);
    const { events } = options;
    this.unsubscribe = [
      events.on("attempt.started", (e) => this.started(e)),
      events.on("attempt.phase", (e) => this.phase(e)),
      events.on("attempt.log", (e) => this.line(e)),
      events.on("attempt.finished", (e) => this.finished(e)),
    ];
  }

  /** Flush what is buffered, wait up to timeoutMs for the sends, then close the publishers. */
  async close(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unsubscribe) off();
    for (const a of this.attempts.values()) this.flush(a);
    this.attempts.clear();
    const all = Promise.all([...this.queues.values()].map((q) => q.chain));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    // A publisher stuck connecting must not keep the runner from exiting.
    const closing = Promise.all([...this.publishers.values()].map((p) => p.close().catch(() => undefined)));
    await Promise.race([closing, new Promise<void>((r) => (timer = setTimeout(r, PUBLISHER_CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  // ── events ───────────────────────────────────────────────────────────────────────────────────

  private started(e: RunnerEventMap["attempt.started"]): void {
    const publisher = this.publishers.get(e.source);
    if (!publisher || this.closed) return;
    const queue = this.queueState(publisher, e.queue);
    const a: AttemptState = {
      who: { experimentId: e.key, uniqueId: e.attemptId, executorId: this.options.executorId },
      queue,
      lines: [],
      bytes: 0,
      droppedLines: 0,
    };
    this.attempts.set(e.attemptId, a);
    this.progress(a, "Prestart");
  }

  private phase(e: RunnerEventMap["attempt.phase"]): void {
    const a = this.attempts.get(e.attemptId);
    if (!a) return;
    if (e.phase === "run" && e.previous !== "run") this.progress(a, "Started");
    else if (e.phase === "upload") {
      this.flush(a);
      this.progress(a, "Stopping");
    }
  }

  private line(e: RunnerEventMap["attempt.log"]): void {
    const a = this.attempts.get(e.attemptId);
    if (!a) return;
    const text = e.line.length > LOG_LINE_MAX_CHARS ? `${e.line.slice(0, LOG_LINE_MAX_CHARS)}…` : e.line;
    if (a.bytes + text.length > LOG_BUFFER_MAX_BYTES) {
      a.droppedLines++;
      return;
    }
    a.lines.push(text);
    a.bytes += text.length + 1;
    if (a.bytes >= LOG_BATCH_MAX_BYTES && a.queue.pending < LOG_BATCHES_WAITING_MAX) this.flush(a);
    else this.arm(a);
  }

  private finished(e: RunnerEventMap["attempt.finished"]): void {
    const a = this.attempts.get(e.attemptId);
    if (!a) return;
    this.attempts.delete(e.attemptId);
    this.flush(a);
    const msg = (text: string) => (text.length > ERROR_MSG_MAX_CHARS ? `${text.slice(0, ERROR_MSG_MAX_CHARS)}…` : text);
    switch (e.result) {
      case "succeeded":
        this.progress(a, "Success");
        break;
      case "failed":
        this.progress(a, "Failed", { msg: msg(e.reason), code: e.exitCode ?? -1 });
        break;
      case "requeued":
        this.progress(a, "Failed", {
          msg: msg(`this attempt gave the request back for another: ${e.reason}`),
          code: -1,
        });
        break;
      default:
        this.progress(a, "Failed", { msg: msg(`the request was not run (${e.result}): ${e.reason}`), code: -1 });
    }
  }

  // ── batching and sending ─────────────────────────────────────────────────────────────────────

  private progress(a: AttemptState, state: TaskState, error?: { msg: string; code: number }): void {
    this.submit(a.queue, () => progressReport(a.who, state, error));
  }

  private arm(a: AttemptState): void {
    a.timer ??= setTimeout(() => {
      a.timer = undefined;
      // While the queue is backed up the lines stay buffered (and further ones are dropped).
      if (a.queue.pending < LOG_BATCHES_WAITING_MAX) this.flush(a);
      else this.arm(a);
    }, this.options.logFlushIntervalMs ?? LOG_FLUSH_INTERVAL_MS);
  }

  /** Send the buffered lines as one logging report. */
  private flush(a: AttemptState): void {
    clearTimeout(a.timer);
    a.timer = undefined;
    if (!a.lines.length && !a.droppedLines) return;
    const lines = a.lines;
    const dropped = a.droppedLines;
    a.lines = [];
    a.bytes = 0;
    a.droppedLines = 0;
    const fields: Record<string, string> = { source: "experiment", lines: String(lines.length) };
    if (dropped) fields.dropped_lines = String(dropped);
    this.submit(a.queue, () => loggingReport(a.who, lines.join("\n"), fields));
  }

  private queueState(publisher: ResponsePublisher, workQueue: string): QueueState {
    const id = `${publisher.kind}\0${workQueue}`;
    let q = this.queues.get(id);
    if (!q) {
      q = {
        label: `${publisher.kind} ${responseQueueName(workQueue)}`,
        publisher,
        workQueue,
        chain: Promise.resolve(),
        pending: 0,
        dropped: 0,
        failing: false,
        announced: false,
      };
      this.queues.set(id, q);
    }
    return q;
  }

  /** Queue one report for sending; `make` runs only when it will really be sent. */
  private submit(q: QueueState, make: () => Report): void {
    if (q.target && q.target.value === undefined && Date.now() - q.target.atMs < ABSENT_TTL_MS) return;
    if (q.pending >= MAX_PENDING_REPORTS) {
      q.dropped++;
      return;
    }
    const report = make();
    q.pending++;
    q.chain = q.chain.then(async () => {
      try {
        const target = await this.resolve(q);
        if (!target) return;
        const body = this.encode(q, report);
        await withTimeout(
          target.send(body),
          SEND_TIMEOUT_MS,
          `sending a report to ${target.where} took over ${SEND_TIMEOUT_MS / 1000}s`,
        );
        if (q.failing)
          this.options.log.info(
            `reports to ${target.where} are sent again${q.dropped ? ` (${q.dropped} dropped meanwhile)` : ""}`,
          );
        q.failing = false;
      } catch (err) {
        q.dropped++;
        q.target = undefined; // ask again next time: the queue may have gone, or the connection
        if (!q.failing)
          this.options.log.warn(
            `cannot send reports for ${q.label} (${errorMessage(err)}); dropping them until it works again`,
          );
        q.failing = true;
      } finally {
        q.pending--;
      }
    });
  }

  private async resolve(q: QueueState): Promise<ResponseTarget | undefined> {
    const now = Date.now();
    if (q.target && now - q.target.atMs < (q.target.value ? TARGET_TTL_MS : ABSENT_TTL_MS)) return q.target.value;
    const value = await withTimeout(
      q.publisher.target(q.workQueue),
      SEND_TIMEOUT_MS,
      `looking for ${q.label} took over ${SEND_TIMEOUT_MS / 1000}s`,
    );
    q.target = { value, atMs: Date.now() };
    if (value && !q.announced) {
      q.announced = true;
      this.options.log.info(
        `reports for queue ${q.workQueue} go to ${value.where}` +
          `${this.options.keyFor?.(q.workQueue) ? ", encrypted with the experimenter's key" : ""}`,
      );
    }
    return value;
  }

  /** The report's bytes: encrypted for the experimenter when a key is registered for the queue. */
  private encode(q: QueueState, report: Report): Uint8Array {
    const json = JSON.stringify(report);
    const key = this.options.keyFor?.(q.workQueue);
    return key ? sealResponse(json, key) : Buffer.from(json, "utf8");
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
