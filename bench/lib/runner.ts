// The compiled runner as the bench starts it: `run --log-format json` in a sandbox of queue root,
// storage, working and cache dirs; every log line kept with the time it arrived and the time the
// runner wrote into it. BENCH_RUNNER_BINARY=<path> benches that binary (another commit's build)
// instead of this checkout's dist/studio-runner, which is then neither built nor needed.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ensureBinary, runnerDefaults, type Sandbox } from "../../test/helpers/e2e.ts";
import { NO_METADATA_ENV, pipEnv } from "./bench-env.ts";

/** The binary every BenchRunner starts: BENCH_RUNNER_BINARY when set, else dist/studio-runner (built when missing). */
export function benchBinary(): string {
  const other = process.env.BENCH_RUNNER_BINARY;
  if (!other) return ensureBinary();
  const path = resolve(other);
  if (!existsSync(path)) throw new Error(`BENCH_RUNNER_BINARY=${other}: no such file`);
  return path;
}

export type LogLine = {
  /** When the bench read the line (Date.now()). */
  receivedMs: number;
  /** The runner's own timestamp of the line. */
  timeMs: number;
  level: string;
  message: string;
  fields: Record<string, unknown>;
};

export class BenchRunner {
  readonly child: ChildProcess;
  /** Date.now() just before the process was spawned. */
  readonly spawnedMs: number;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  private partial = "";
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly sandbox: Sandbox,
    args: string[],
    env: Record<string, string> = {},
  ) {
    const binary = benchBinary();
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) base[k] = v;
    this.spawnedMs = Date.now();
    this.child = spawn(
      binary,
      [
        "run",
        "--log-format",
        "json",
        "--queue-root",
        sandbox.queueRoot,
        "--working-dir",
        sandbox.workDir,
        "--cache-dir",
        sandbox.cacheDir,
        ...runnerDefaults(sandbox, args, env),
        ...args,
      ],
      { env: { ...base, ...NO_METADATA_ENV, ...pipEnv(), ...env }, stdio: ["ignore", "ignore", "pipe"] },
    );
    this.child.stderr!.on("data", (chunk: Buffer) => this.take(chunk.toString("utf8")));
    this.exited = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => resolve(code ?? (signal ? -1 : null))),
    );
    void this.exited.then(() => this.notify());
  }

  get pid(): number {
    return this.child.pid!;
  }

  private take(text: string) {
    const receivedMs = Date.now();
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    for (const raw of parts) {
      if (!raw.trim()) continue;
      try {
        const obj = JSON.parse(raw) as Record<string, unknown>;
        const { time, level, message, ...fields } = obj;
        this.lines.push({
          receivedMs,
          timeMs: Date.parse(String(time)),
          level: String(level),
          message: String(message),
          fields,
        });
      } catch {
        this.lines.push({ receivedMs, timeMs: receivedMs, level: "raw", message: raw, fields: {} });
      }
    }
    this.notify();
  }

  private notify() {
    for (const w of [...this.waiters]) w();
  }

  /** The first line (from index `from` on) matching, waiting for it up to timeoutMs. */
  async waitFor(pattern: RegExp, timeoutMs = 120_000, from = 0): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find((l) => pattern.test(l.message));
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`runner exited before its log matched ${pattern}:\n${this.text()}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`runner log never matched ${pattern} in ${timeoutMs} ms:\n${this.text().slice(-4000)}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 1000));
        this.waiters.add(done);
      });
    }
  }

  /** Wait until `count` lines match. */
  async waitForCount(pattern: RegExp, count: number, timeoutMs = 300_000): Promise<LogLine[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.filter((l) => pattern.test(l.message));
      if (found.length >= count) return found;
      if (this.child.exitCode !== null)
        throw new Error(
          `runner exited with ${found.length}/${count} lines matching ${pattern}:\n${this.text().slice(-4000)}`,
        );
      if (Date.now() > deadline)
        throw new Error(
          `only ${found.length}/${count} lines matched ${pattern} in ${timeoutMs} ms:\n${this.text().slice(-4000)}`,
        );
      await Bun.sleep(20);
    }
  }

  text(): string {
    return this.lines.map((l) => `${new Date(l.timeMs).toISOString()} ${l.level} ${l.message}`).join("\n");
  }

  /** SIGTERM (drain), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const done = await Promise.race([this.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
    if (!done) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }
}
