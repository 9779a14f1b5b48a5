// The queue-name filter shared by every queue backend, changeable while the runner runs: the
// Kubernetes ConfigMap's QUEUE_MATCH / QUEUE_MISMATCH replace the --queue-match /
// --queue-mismatch regexes without a restart. Backends hold the object by reference and read it at
// each discovery, so a change applies from the next discovery on.

import type { QueueFilter } from "./task-queue.ts";

/** A regular expression from the outside (a ConfigMap value) that does not compile. */
export class QueueFilterError extends Error {
  constructor(
    readonly field: "QUEUE_MATCH" | "QUEUE_MISMATCH",
    readonly value: string,
    reason: string,
  ) {
    super(`${field} ${JSON.stringify(value)} is not a regular expression (${reason})`);
    this.name = "QueueFilterError";
  }
}

/** What the ConfigMap says; undefined (or an empty value) means "the configured flag". */
export type QueueFilterOverride = { match?: string; mismatch?: string };

export class LiveQueueFilter implements QueueFilter {
  private currentMatch: RegExp | undefined;
  private currentMismatch: RegExp | undefined;

  /** configured: the --queue-match / --queue-mismatch values, used wherever no override is given. */
  constructor(readonly configured: QueueFilter) {
    this.currentMatch = configured.match;
    this.currentMismatch = configured.mismatch;
  }

  get match(): RegExp | undefined {
    return this.currentMatch;
  }

  get mismatch(): RegExp | undefined {
    return this.currentMismatch;
  }

  /**
   * Apply an override: each field given (non-empty) replaces its regex, each absent one goes back
   * to the configured value. A field that does not compile keeps its previous regex and is
   * returned as a QueueFilterError; the other field is still applied. Returns the changes made,
   * as text for the log, and the problems.
   */
  apply(override: QueueFilterOverride): { changes: string[]; problems: QueueFilterError[] } {
    const changes: string[] = [];
    const problems: QueueFilterError[] = [];
    const next = (
      field: "QUEUE_MATCH" | "QUEUE_MISMATCH",
      text: string | undefined,
      configured: RegExp | undefined,
      current: RegExp | undefined,
    ): RegExp | undefined => {
      if (text === undefined || text === "") return configured;
      try {
        return new RegExp(text);
      } catch (err) {
        problems.push(new QueueFilterError(field, text, (err as Error).message));
        return current;
      }
    };
    const match = next("QUEUE_MATCH", override.match, this.configured.match, this.currentMatch);
    const mismatch = next("QUEUE_MISMATCH", override.mismatch, this.configured.mismatch, this.currentMismatch);
    if (describe(match) !== describe(this.currentMatch))
      changes.push(`queue match ${describe(this.currentMatch)} → ${describe(match)}`);
    if (describe(mismatch) !== describe(this.currentMismatch))
      changes.push(`queue mismatch ${describe(this.currentMismatch)} → ${describe(mismatch)}`);
    this.currentMatch = match;
    this.currentMismatch = mismatch;
    return { changes, problems };
  }
}

const describe = (re: RegExp | undefined) => (re ? `/${re.source}/` : "(none)");
