// A directory of per-queue-prefix key files (file name = queue-name prefix), re-read when the files
// change (stat checked at most every refreshMs) and searched by the longest prefix of a queue name.
// A file that cannot be read or parsed is remembered as broken: the queues whose longest prefix it
// is are refused (fail closed), never served as if no key were registered for them.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export type PrefixEntry<K> = { prefix: string; key: K };

/** Names the Go runner also skips: dot files (Kubernetes' ..data links) and the "info" placeholder. */
const skipped = (name: string) => name.startsWith(".") || name === "info";

export class PrefixKeyStore<K> {
  private entries = new Map<string, { stamp: string; key: K }>();
  /** Prefixes whose file is there but cannot be read or parsed, with the problem. */
  private broken = new Map<string, string>();
  private checkedAt = -Infinity;
  private lastProblems: string[] = [];

  constructor(
    readonly dir: string,
    private readonly parse: (text: string, file: string) => K,
    private readonly refreshMs: number,
    private readonly onProblem: (problem: string) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Re-read changed files when the last look is older than refreshMs (or always with force). */
  refresh(force = false): void {
    const t = this.now();
    if (!force && t - this.checkedAt < this.refreshMs) return;
    this.checkedAt = t;
    const problems: string[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => !skipped(n));
    } catch (err) {
      // Keep what we had: a directory being swapped by a secret update is not a reason to forget keys.
      this.report([`${this.dir}: ${(err as Error).message}`]);
      return;
    }
    const seen = new Set<string>();
    const broken = new Map<string, string>();
    for (const name of names) {
      const file = join(this.dir, name);
      let stamp: string;
      try {
        const st = statSync(file); // follows symlinks, as mounted secrets are
        if (!st.isFile()) continue;
        stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch (err) {
        // A name that is there but cannot be looked at (dangling link, permissions): its queues are refused.
        this.entries.delete(name);
        broken.set(name, `${file}: ${(err as Error).message}`);
        problems.push(`${file}: ${(err as Error).message}`);
        continue;
      }
      seen.add(name);
      if (this.entries.get(name)?.stamp === stamp) continue;
      try {
        this.entries.set(name, { stamp, key: this.parse(readFileSync(file, "utf8"), file) });
      } catch (err) {
        // A file that no longer parses is no longer trusted, and its queues are not served without it.
        this.entries.delete(name);
        broken.set(name, `${file}: ${(err as Error).message}`);
        problems.push(`${file}: ${(err as Error).message}`);
      }
    }
    for (const name of [...this.entries.keys()]) if (!seen.has(name)) this.entries.delete(name);
    this.broken = broken;
    this.report(problems);
  }

  private report(problems: string[]): void {
    for (const p of problems) if (!this.lastProblems.includes(p)) this.onProblem(p);
    this.lastProblems = problems;
  }

  /** Problems seen at the last refresh (unreadable or unparsable files). */
  problems(): string[] {
    return [...this.lastProblems];
  }

  size(): number {
    this.refresh();
    return this.entries.size;
  }

  /**
   * Why `queue` must not be served: its longest matching prefix is a file that cannot be read or
   * parsed (a shorter prefix's key must not stand in for it). Undefined when the queue is fine.
   */
  brokenFor(queue: string): string | undefined {
    this.refresh();
    let best: string | undefined;
    for (const prefix of [...this.entries.keys(), ...this.broken.keys()]) {
      if (queue.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
    }
    return best === undefined ? undefined : this.broken.get(best);
  }

  /** The entry registered under the longest prefix of `queue` (an exact name counts as a prefix). */
  select(queue: string): PrefixEntry<K> | undefined {
    this.refresh();
    let best: string | undefined;
    for (const prefix of this.entries.keys()) {
      if (queue.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
    }
    return best === undefined ? undefined : { prefix: best, key: this.entries.get(best)!.key };
  }
}
