// Replay protection: the experiments this runner has completed (acked), kept in a runner-only
// file, so that a message re-published after its experiment completed is refused. A redelivery of a
// message that was never acked (requeue after a runner fault, nack, crash, lost lease) is the same
// message the broker still holds: it is never in this record, so it always runs. The record is
// bounded by --max-request-age (older requests are refused by their age anyway) or, with no age
// limit, by a number of entries. It also remembers which experiments this runner has started, so a
// message it gave back uncounted (a drain) is not refused for an age it reached while running here.

import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { appendPrivateLine, ensurePrivateDir, replacePrivateFile } from "../fs/private-files.ts";

export type ReplayEntry = {
  key: string;
  /** sha256 of the message as delivered (hex), once completed. */
  digest?: string;
  /** When its ack succeeded; absent while only started. */
  completedAtMs?: number;
  /** When this runner first admitted it. */
  startedAtMs?: number;
  timeAddedMs?: number;
};

export type ReplayGuardOptions = {
  /** A runner-only directory (made 0700): <working-dir>/studio-runner/.completed. */
  dir: string;
  /** --max-request-age; 0 = no age limit (then only maxEntries bounds the record). */
  maxAgeMs: number;
  /** Most entries kept (the oldest go first). */
  maxEntries?: number;
  now?: () => number;
  log?: (message: string) => void;
};

export const DEFAULT_REPLAY_ENTRIES = 100_000;

/** sha256 of a message body, hex. */
export const messageDigest = (body: Uint8Array) => createHash("sha256").update(body).digest("hex");

export class ReplayGuard {
  private readonly file: string;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private completedByKey = new Map<string, ReplayEntry>();
  private knownSize = -1;

  constructor(private readonly options: ReplayGuardOptions) {
    this.file = join(options.dir, "completed.jsonl");
    this.maxEntries = options.maxEntries ?? DEFAULT_REPLAY_ENTRIES;
    this.now = options.now ?? Date.now;
  }

  /** Read the record (made when missing), drop what is out of its bounds and write it back compacted. */
  load(): this {
    ensurePrivateDir(this.options.dir, { mode: 0o700, label: "the replay record's directory" });
    this.read();
    this.compact();
    return this;
  }

  /** Why this request must be refused as a replay, or undefined. */
  refusal(key: string, body: Uint8Array): string | undefined {
    this.rereadIfChanged();
    const done = this.completedByKey.get(key);
    if (done?.completedAtMs === undefined) return undefined;
    const same =
      done.digest === messageDigest(body) ? "the same message" : "the same experiment key in another message";
    return (
      `experiment.key: ${JSON.stringify(key)} was already completed by this runner ` +
      `at ${new Date(done.completedAtMs).toISOString()} (${same}): refused as a replay; ` +
      "a new run of an experiment gets a new key from the client"
    );
  }

  /** This runner has started the experiment (a later delivery of it is not judged by its age). Never throws. */
  started(key: string, timeAddedMs: number | undefined): void {
    this.rereadIfChanged();
    if (this.completedByKey.get(key)?.startedAtMs !== undefined) return;
    this.add({ key, startedAtMs: this.now(), timeAddedMs });
  }

  /** Whether this runner has started (admitted) the experiment before. */
  wasStarted(key: string): boolean {
    this.rereadIfChanged();
    return this.completedByKey.get(key)?.startedAtMs !== undefined;
  }

  /** The request was acked: from now on a new delivery of its key is a replay. Never throws. */
  completed(key: string, body: Uint8Array, timeAddedMs: number | undefined): void {
    this.add({ key, digest: messageDigest(body), completedAtMs: this.now(), timeAddedMs });
  }

  private add(update: ReplayEntry): void {
    const key = update.key;
    const entry: ReplayEntry = { ...this.completedByKey.get(key), ...update };
    this.completedByKey.delete(key);
    this.completedByKey.set(key, entry);
    try {
      this.rereadIfChanged();
      appendPrivateLine(this.file, JSON.stringify(update));
      this.knownSize = statSync(this.file).size;
      if (this.completedByKey.size > this.maxEntries * 1.25) this.compact();
    } catch (err) {
      this.options.log?.(`could not record experiment ${key} for replay protection: ${(err as Error).message}`);
    }
  }

  /** How many completions are remembered. */
  get size(): number {
    return this.completedByKey.size;
  }

  private read(): void {
    let text = "";
    try {
      text = readFileSync(this.file, "utf8");
      this.knownSize = Buffer.byteLength(text);
    } catch {
      this.knownSize = -1;
    }
    const map = new Map<string, ReplayEntry>();
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as ReplayEntry;
        if (typeof e.key !== "string" || (typeof e.completedAtMs !== "number" && typeof e.startedAtMs !== "number"))
          continue;
        const merged = { ...map.get(e.key), ...e };
        map.delete(e.key);
        map.set(e.key, merged);
      } catch {
        // a torn last line of a crash: skip it
      }
    }
    // Entries this process added that another writer's file does not show yet stay.
    for (const [k, e] of this.completedByKey) if (!map.has(k)) map.set(k, e);
    this.completedByKey = map;
  }

  private rereadIfChanged(): void {
    let size = -1;
    try {
      size = statSync(this.file).size;
    } catch {
      // none yet
    }
    if (size !== this.knownSize) this.read();
  }

  /**
   * Drop completed entries no request could still be accepted for (older than the age limit), and
   * the oldest beyond maxEntries. Started ones stay until they complete: they may run for days.
   */
  private compact(): void {
    const now = this.now();
    const maxAge = this.options.maxAgeMs;
    const last = (e: ReplayEntry) => Math.max(e.completedAtMs ?? 0, e.startedAtMs ?? 0, e.timeAddedMs ?? 0);
    const kept = [...this.completedByKey.values()].filter(
      (e) => maxAge <= 0 || e.completedAtMs === undefined || last(e) + maxAge > now,
    );
    kept.sort((a, b) => last(a) - last(b));
    const bounded = kept.slice(Math.max(0, kept.length - this.maxEntries));
    this.completedByKey = new Map(bounded.map((e) => [e.key, e]));
    const text = bounded.map((e) => JSON.stringify(e)).join("\n");
    replacePrivateFile(this.file, text ? `${text}\n` : "");
    this.knownSize = Buffer.byteLength(text ? `${text}\n` : "");
  }
}
