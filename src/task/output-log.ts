// The experiment's log file (output/output): merged stdout+stderr and the runner's own notes,
// masked line by line, written to the file in batches (a write per line was the bottleneck of a
// job that floods its log).

import { createWriteStream, type WriteStream } from "node:fs";
import type { SecretMasker } from "../log/secret-mask.ts";

/** Masked lines are gathered up to this size (or until the event loop turns) before one file write. */
const BATCH_MAX_BYTES = 64 * 1024;

export class OutputLog {
  private stream: WriteStream;
  private closed = false;
  private pending: string[] = [];
  private pendingBytes = 0;
  private writeScheduled = false;
  /** Why the file could not be written (disk full …); lines after it are dropped. */
  private writeError?: Error;

  constructor(
    readonly path: string,
    private masker: SecretMasker,
    private echo?: (line: string) => void,
  ) {
    this.stream = createWriteStream(path, { flags: "a" });
    // A write fault must not become an uncaught stream error: remember it, stop writing.
    this.stream.on("error", (err) => {
      this.writeError ??= err;
      this.closed = true;
    });
  }

  /** Set once the log file could not be written; the attempt then fails as a runner fault. */
  get failure(): Error | undefined {
    return this.writeError;
  }

  setMasker(masker: SecretMasker) {
    this.masker = masker;
  }

  /** One line from the experiment. */
  write(line: string): void {
    if (this.closed) return;
    const masked = this.masker.mask(line);
    this.pending.push(masked, "\n");
    this.pendingBytes += masked.length + 1;
    if (this.pendingBytes >= BATCH_MAX_BYTES) this.writeOut();
    else if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(() => this.writeOut());
    }
    this.echo?.(masked);
  }

  /** The gathered lines go to the file in one write. */
  private writeOut(): void {
    this.writeScheduled = false;
    if (!this.pending.length) return;
    const text = this.pending.join("");
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.closed) this.stream.write(text);
  }

  /** One line from the runner, marked as such. */
  note(line: string): void {
    this.write(line.startsWith("[studio-runner]") ? line : `[studio-runner] ${line}`);
  }

  /** True while more is buffered than the file takes in: the job's output should wait. */
  get congested(): boolean {
    return !this.closed && this.stream.writableNeedDrain;
  }

  /** Calls back once the buffered lines have been written out. */
  onceDrained(callback: () => void): void {
    if (!this.congested) return callback();
    this.stream.once("drain", callback);
  }

  /** Wait until everything written so far is on disk. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.writeOut();
    return new Promise((resolve) => this.stream.write("", () => resolve()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.writeOut();
    this.closed = true;
    await new Promise<void>((resolve) => {
      this.stream.once("error", () => resolve());
      this.stream.end(() => resolve());
    });
  }
}
