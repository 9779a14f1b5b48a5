// Directory queue in the studioml layout (<root>/<queue>/<file>, oldest first), made crash-safe:
// a message is claimed by atomic rename into <root>/.inflight, deleted only on ack, recovered
// from dead runners, and moved to <root>/.failed with its reasons after too many deliveries.
// Queue writers are not trusted: a message that is a link (or not a regular file) is never read
// but moved to the failed place, a queue directory that is a link is not served, and the runner's
// own files below the root are created without following anything planted at their names.

import { waitForWake } from "../wait-for-wake.ts";
import { NETWORK_FS_RESCAN_MS, rescanIntervalMs } from "./rescan-interval.ts";
import { watch, type FSWatcher } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, stat, utimes, writeFile, type FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { RequestError } from "../../errors.ts";
import { isProcessAlive } from "../../exec/pid.ts";
import {
  at,
  kindOf,
  NotARegularFileError,
  readRegularFileNoFollow,
  replaceFileAt,
  self,
  tryOpenDirectory,
  withDirectoryBelow,
  writeFileExclusiveAt,
} from "../../fs/safe-open.ts";
import type {
  Delivery,
  NackOutcome,
  QueueBackend,
  QueueFilterOptions,
  ReceiveOptions,
  TaskQueue,
} from "../task-queue.ts";
import { describeQueues, filterOf, queueWanted } from "../task-queue.ts";
import type { ResponsePublisher } from "../response-publisher.ts";
import { LocalResponsePublisher } from "./response-publisher.ts";

export type LocalQueueOptions = QueueFilterOptions & {
  root: string;
  maxDeliveries: number;
  /** A claim whose heartbeat is older than this is taken back from its (presumed dead) owner. */
  leaseMs?: number;
  /** Fallback directory scan besides change notification (default: 1 s on network filesystems, 5 s on local ones). */
  pollMs?: number;
  log?: (message: string) => void;
};

type AttemptRecord = {
  deliveries: number;
  reasons: Array<{ time: string; reason: string; host: string }>;
  mtimeMs?: number;
};

const INFLIGHT = ".inflight";
const FAILED = ".failed";
const ATTEMPTS = ".attempts";
const INCOMING = ".incoming";
const OWNER_SEP = "@@";

const safeHost = () => hostname().replace(/[^A-Za-z0-9.-]/g, "_");

const isMessageName = (name: string) => !name.startsWith(".") && !name.endsWith(".tmp") && !name.includes(OWNER_SEP);

export class LocalQueueBackend implements QueueBackend {
  readonly kind = "local";
  readonly runnerId = crypto.randomUUID().slice(0, 8);
  readonly host = safeHost();
  private readonly owner = `${this.host}~${process.pid}~${this.runnerId}`;
  private readonly leaseMs: number;
  private readonly claims = new Set<string>();
  private watchers = new Map<string, FSWatcher>();
  private waiters = new Set<() => void>();
  private heartbeat?: ReturnType<typeof setInterval>;
  /** A directory could not be watched: rescan often. */
  private watchFailed = false;
  private rescanMs?: number;

  constructor(readonly options: LocalQueueOptions) {
    this.leaseMs = options.leaseMs ?? 60_000;
  }

  private dir(...parts: string[]) {
    return join(this.options.root, ...parts);
  }

  async discover(): Promise<string[]> {
    await mkdir(this.options.root, { recursive: true });
    this.ensureWatch(this.options.root);
    const names = await this.queueDirs();
    for (const name of names) {
      this.ensureWatch(this.dir(name));
      await this.recover(name);
    }
    return names;
  }

  /** The root is a directory this process can write; its queues listed, nothing recovered or created. */
  async check(_timeoutMs: number): Promise<string> {
    const root = this.options.root;
    if (!(await stat(root).catch(() => undefined)))
      return `${root} does not exist yet (made on the first run): no queues`;
    const probe = join(root, `.doctor-${process.pid}.tmp`);
    await writeFile(probe, "");
    await rm(probe, { force: true });
    return `${root} writable; ${describeQueues(await this.queueDirs())}`;
  }

  /** The wanted queue directories under the root, sorted (dot-directories are the runner's own). */
  private async queueDirs(): Promise<string[]> {
    const entries = await readdir(this.options.root, { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && !e.name.startsWith(".") && queueWanted(e.name, filterOf(this.options)))
      .map((e) => e.name)
      .sort();
  }

  open(name: string): TaskQueue {
    if (name.includes("/") || name.startsWith(".")) throw new RequestError("queue", name, "is not a local queue name");
    return { name, receive: (options?: ReceiveOptions) => this.receive(name, options) };
  }

  async publish(queue: string, body: Uint8Array | string): Promise<string> {
    const id = crypto.randomUUID();
    const tmp = this.dir(INCOMING, `${id}.tmp`);
    await mkdir(this.dir(INCOMING), { recursive: true });
    await mkdir(this.dir(queue), { recursive: true });
    await writeFile(tmp, body, { flush: true });
    await rename(tmp, this.dir(queue, id));
    return id;
  }

  waitForWork(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.rescanMs ??= rescanIntervalMs(this.options.root);
    const pollMs = this.options.pollMs ?? (this.watchFailed ? NETWORK_FS_RESCAN_MS : this.rescanMs);
    return waitForWake(Math.min(timeoutMs, pollMs), signal, this.waiters);
  }

  /** Reports go to `<root>/<queue>_response/` where that directory exists. */
  responsePublisher(): ResponsePublisher {
    return new LocalResponsePublisher(this.options.root);
  }

  async close(): Promise<void> {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const wake of [...this.waiters]) wake();
  }

  private ensureWatch(path: string) {
    if (this.watchers.has(path)) return;
    try {
      const w = watch(path, { persistent: false }, () => {
        for (const wake of [...this.waiters]) wake();
      });
      w.on("error", () => {
        this.watchFailed = true;
        w.close();
        this.watchers.delete(path);
      });
      this.watchers.set(path, w);
    } catch {
      // No change notification here: the poll in waitForWork still finds the work.
      this.watchFailed = true;
    }
  }

  /** Queues already reported as links (reported once). */
  private readonly linkedQueues = new Set<string>();

  /**
   * Messages of a queue (an open directory), oldest modification time first: regular files only.
   * Links, FIFOs, sockets and devices are moved to the failed place unread; directories are ignored.
   */
  private async pending(queue: string, dir: FileHandle): Promise<Array<{ name: string; mtimeMs: number }>> {
    let names: string[];
    try {
      names = await readdir(self(dir));
    } catch {
      return [];
    }
    const out: Array<{ name: string; mtimeMs: number }> = [];
    for (const name of names.filter(isMessageName)) {
      try {
        const s = await lstat(at(dir, name));
        if (s.isFile()) out.push({ name, mtimeMs: s.mtimeMs });
        else if (!s.isDirectory())
          await this.quarantine(
            queue,
            dir,
            name,
            new NotARegularFileError(`message ${queue}/${name}`, kindOf(s)).message,
          );
      } catch {
        // Taken by another runner meanwhile.
      }
    }
    return out.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
  }

  /** A queue's directory, never through a link (a queue that is a link to elsewhere is not served). */
  private async openQueueDir(queue: string): Promise<FileHandle | undefined> {
    const opened = await tryOpenDirectory(this.dir(queue)).catch(() => undefined);
    if (!opened) return undefined;
    if ("not" in opened) {
      if (opened.not === "a symbolic link" && !this.linkedQueues.has(queue)) {
        this.linkedQueues.add(queue);
        this.options.log?.(`queue directory ${queue} is a symbolic link: not served (links are never followed)`);
      }
      return undefined;
    }
    return opened.dir;
  }

  private async receive(queue: string, options: ReceiveOptions = {}): Promise<Delivery | undefined> {
    const dir = await this.openQueueDir(queue);
    if (!dir) return undefined;
    try {
      return await this.receiveFrom(queue, dir, options);
    } finally {
      await dir.close();
    }
  }

  private async receiveFrom(queue: string, dir: FileHandle, options: ReceiveOptions): Promise<Delivery | undefined> {
    for (const { name, mtimeMs } of await this.pending(queue, dir)) {
      let body: Uint8Array;
      try {
        // Never through a link, never blocking on a FIFO swapped in after the listing.
        body = await readRegularFileNoFollow(at(dir, name), `message ${queue}/${name}`);
      } catch (err) {
        if (err instanceof NotARegularFileError)
          await this.quarantine(queue, dir, name, err.message).catch(() => undefined);
        continue;
      }
      // Writers that do not rename into place may be mid-write: give a fresh, unparsable file time.
      if (Date.now() - mtimeMs < 2000 && !isCompleteJson(body)) continue;
      if (options.accept && !options.accept(body)) continue;
      const claimed = this.dir(INFLIGHT, queue, `${name}${OWNER_SEP}${this.owner}`);
      // made, as a real directory
      await withDirectoryBelow(this.options.root, [INFLIGHT, queue], async () => undefined);
      try {
        await rename(at(dir, name), claimed);
      } catch {
        continue; // another runner won the race
      }
      const now = new Date();
      await utimes(claimed, now, now);
      const record = await this.readAttempts(queue, name);
      record.deliveries += 1;
      record.mtimeMs ??= mtimeMs;
      await this.writeAttempts(queue, name, record);
      this.claims.add(claimed);
      this.startHeartbeat();
      return this.delivery(queue, name, claimed, body, record);
    }
    return undefined;
  }

  /**
   * A queue entry that is not a regular file goes to the failed place unread, with a reason that
   * says what it is (never a link's target or any content).
   */
  private async quarantine(queue: string, dir: FileHandle, name: string, summary: string): Promise<void> {
    const reasonDoc = {
      queue,
      message: name,
      failedAt: new Date().toISOString(),
      summary,
      deliveries: 0,
      reasons: [{ time: new Date().toISOString(), reason: summary, host: this.host }],
    };
    const moved = await withDirectoryBelow(this.options.root, [FAILED, queue], async (failed) => {
      try {
        await rename(at(dir, name), at(failed, name));
      } catch {
        return false; // gone, or another runner moved it first
      }
      await writeFileExclusiveAt(failed, `${name}.reason.json`, JSON.stringify(reasonDoc, null, 2));
      return true;
    });
    if (moved) this.options.log?.(`message ${queue}/${name} moved to ${this.dir(FAILED, queue)}: ${summary}`);
  }

  private delivery(queue: string, name: string, claimed: string, body: Uint8Array, record: AttemptRecord): Delivery {
    let settled = false;
    const settle = () => {
      if (settled) throw new Error(`delivery ${queue}/${name} was already settled`);
      settled = true;
      this.claims.delete(claimed);
    };
    return {
      id: name,
      queue,
      body,
      deliveryCount: record.deliveries,
      extendLease: async () => {
        const now = new Date();
        await utimes(claimed, now, now).catch(() => undefined);
      },
      ack: async () => {
        settle();
        await rm(claimed, { force: true });
        await rm(this.attemptsPath(queue, name), { force: true });
      },
      nack: async (reason, options = {}): Promise<NackOutcome> => {
        settle();
        const current = await this.readAttempts(queue, name);
        if (options.countDelivery === false) current.deliveries = Math.max(0, current.deliveries - 1);
        this.addReason(current, reason);
        if (current.deliveries >= this.options.maxDeliveries) {
          await this.moveToFailed(queue, name, claimed, current, `gave up after ${current.deliveries} deliveries`);
          return "failed";
        }
        await this.writeAttempts(queue, name, current);
        await this.restore(queue, name, claimed, current);
        return "requeued";
      },
      reject: async (reason) => {
        settle();
        const current = await this.readAttempts(queue, name);
        this.addReason(current, reason);
        await this.moveToFailed(queue, name, claimed, current, reason);
      },
    };
  }

  private addReason(record: AttemptRecord, reason: string) {
    record.reasons.push({ time: new Date().toISOString(), reason, host: this.host });
  }

  private startHeartbeat() {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(
      () => {
        const now = new Date();
        for (const claimed of this.claims) utimes(claimed, now, now).catch(() => undefined);
      },
      Math.max(1000, Math.floor(this.leaseMs / 4)),
    );
    this.heartbeat.unref?.();
  }

  /** Put back the claims of runners that are gone: same host and dead pid, or a stale heartbeat. */
  async recover(queue: string): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir(INFLIGHT, queue));
    } catch {
      return 0;
    }
    let recovered = 0;
    for (const claimedName of names) {
      const cut = claimedName.indexOf(OWNER_SEP);
      if (cut < 0) continue;
      const name = claimedName.slice(0, cut);
      const [host, pidText, runnerId] = claimedName.slice(cut + OWNER_SEP.length).split("~");
      const pid = Number(pidText);
      const claimed = this.dir(INFLIGHT, queue, claimedName);
      if (this.claims.has(claimed)) continue;
      let dead = false;
      if (host === this.host) {
        dead = pid === process.pid ? runnerId !== this.runnerId : !isProcessAlive(pid);
      }
      if (!dead) {
        try {
          dead = Date.now() - (await stat(claimed)).mtimeMs > this.leaseMs;
        } catch {
          continue;
        }
      }
      if (!dead) continue;
      const record = await this.readAttempts(queue, name);
      this.addReason(record, `runner ${host} pid ${pidText} stopped while holding the message`);
      // Take it over atomically first, so two recovering runners do not both act on it.
      const mine = this.dir(INFLIGHT, queue, `${name}${OWNER_SEP}${this.owner}`);
      try {
        await rename(claimed, mine);
      } catch {
        continue;
      }
      if (record.deliveries >= this.options.maxDeliveries) {
        await this.moveToFailed(
          queue,
          name,
          mine,
          record,
          `runner died during each of ${record.deliveries} deliveries`,
        );
      } else {
        await this.writeAttempts(queue, name, record);
        await this.restore(queue, name, mine, record);
      }
      this.options.log?.(`recovered message ${queue}/${name} from a stopped runner (${host} pid ${pidText})`);
      recovered++;
    }
    return recovered;
  }

  private async restore(queue: string, name: string, claimed: string, record: AttemptRecord) {
    const back = this.dir(queue, name);
    await mkdir(this.dir(queue), { recursive: true });
    if (record.mtimeMs !== undefined) {
      const t = new Date(record.mtimeMs);
      await utimes(claimed, t, t).catch(() => undefined);
    }
    await rename(claimed, back);
  }

  private async moveToFailed(queue: string, name: string, claimed: string, record: AttemptRecord, summary: string) {
    const reasonDoc = { queue, message: name, failedAt: new Date().toISOString(), summary, ...record };
    await withDirectoryBelow(this.options.root, [FAILED, queue], async (failed) => {
      await writeFileExclusiveAt(failed, `${name}.reason.json`, JSON.stringify(reasonDoc, null, 2));
      await rename(claimed, at(failed, name));
    });
    await rm(this.attemptsPath(queue, name), { force: true });
    this.options.log?.(`message ${queue}/${name} moved to ${this.dir(FAILED, queue)}: ${summary}`);
  }

  private attemptsPath(queue: string, name: string) {
    return this.dir(ATTEMPTS, queue, `${name}.json`);
  }

  private async readAttempts(queue: string, name: string): Promise<AttemptRecord> {
    try {
      const text = await withDirectoryBelow(this.options.root, [ATTEMPTS, queue], (dir) =>
        readRegularFileNoFollow(at(dir, `${name}.json`), `attempts of ${queue}/${name}`),
      );
      const doc = JSON.parse(text.toString("utf8"));
      return {
        deliveries: Number(doc.deliveries) || 0,
        reasons: Array.isArray(doc.reasons) ? doc.reasons : [],
        mtimeMs: doc.mtimeMs,
      };
    } catch {
      return { deliveries: 0, reasons: [] };
    }
  }

  private async writeAttempts(queue: string, name: string, record: AttemptRecord) {
    await withDirectoryBelow(this.options.root, [ATTEMPTS, queue], (dir) =>
      replaceFileAt(dir, `${name}.json`, JSON.stringify(record)),
    );
  }
}

function isCompleteJson(body: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder().decode(body));
    return true;
  } catch {
    return false;
  }
}
