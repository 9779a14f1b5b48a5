// A real Prometheus server (Debian's package) for tests: scrapes the given targets every second,
// keeps its data in a temporary directory, listens on a free loopback port, stopped by pid.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

export const PROMETHEUS_BINARY = "/usr/bin/prometheus";

export const prometheusAvailable = () => existsSync(PROMETHEUS_BINARY);

/** A free loopback port (bound and released at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export type PrometheusSample = { metric: Record<string, string>; value: [number, string] };

export class PrometheusServer {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    private output: { text: string },
  ) {}

  /** Start Prometheus scraping `targets` (host:port) every scrapeIntervalS; resolves once it is ready. */
  static async start(dir: string, targets: string[], scrapeIntervalS = 1): Promise<PrometheusServer> {
    mkdirSync(join(dir, "tsdb"), { recursive: true });
    const config = join(dir, "prometheus.yml");
    writeFileSync(
      config,
      [
        "global:",
        `  scrape_interval: ${scrapeIntervalS}s`,
        `  evaluation_interval: ${scrapeIntervalS}s`,
        "scrape_configs:",
        "  - job_name: studio-runner",
        `    scrape_timeout: ${scrapeIntervalS}s`,
        "    static_configs:",
        `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
        "",
      ].join("\n"),
    );
    const port = await freePort();
    const child = spawn(
      PROMETHEUS_BINARY,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, "tsdb")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const output = { text: "" };
    child.stdout!.on("data", (d) => (output.text += d));
    child.stderr!.on("data", (d) => (output.text += d));
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    const server = new PrometheusServer(`http://127.0.0.1:${port}`, child, exited, output);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output.text}`);
      try {
        if ((await fetch(`${server.url}/-/ready`)).ok) return server;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`prometheus not ready within 30 s:\n${output.text}`);
      }
      await Bun.sleep(200);
    }
  }

  /** An instant query through the HTTP API. */
  async query(promql: string): Promise<PrometheusSample[]> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await response.json()) as {
      status: string;
      data?: { resultType: string; result: PrometheusSample[] };
      error?: string;
    };
    if (body.status !== "success") throw new Error(`prometheus query ${promql} failed: ${body.error}`);
    return body.data!.result;
  }

  /** The single value of a query, or undefined while it has none. */
  async value(promql: string): Promise<number | undefined> {
    const result = await this.query(promql);
    return result.length ? Number(result[0]!.value[1]) : undefined;
  }

  /** The health of each scrape target ("up", "down", "unknown"). */
  async targets(): Promise<Array<{ scrapeUrl: string; health: string; lastError: string }>> {
    const body = (await (await fetch(`${this.url}/api/v1/targets`)).json()) as {
      data: { activeTargets: Array<{ scrapeUrl: string; health: string; lastError: string }> };
    };
    return body.data.activeTargets;
  }

  get log(): string {
    return this.output.text;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.pid) {
      try {
        process.kill(this.child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(
        () => this.child.pid && this.child.exitCode === null && process.kill(this.child.pid, "SIGKILL"),
        10_000,
      );
      await this.exited;
      clearTimeout(timer);
    }
  }
}
