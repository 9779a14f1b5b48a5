// The --prom-address endpoint of the compiled runner: a real Prometheus scrapes it while
// experiments succeed and fail and its query API returns the true counts; /healthz turns red
// within two poll periods when the poll loop stalls inside queue discovery (and green when it
// moves again); headless Chromium shows the status page during a run (screenshot kept in
// docs/status-page.png, with --status-logs); POST /drain and /resume, with the bearer token of
// --admin-token-file, suspend and resume taking work.

import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { POLL_WAIT_MS, UNHEALTHY_AFTER_MS } from "../../src/observe/health.ts";
import type { StatusDoc } from "../../src/observe/status-state.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  runBinary,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  type Sandbox,
} from "../helpers/e2e.ts";
import { buildFakeNvml } from "../helpers/fake-nvml/build.ts";
import { prometheusAvailable, PrometheusServer } from "../helpers/prometheus.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
/** Under .test-tmp, so a test run never changes the checkout; UPDATE_SCREENSHOT=1 refreshes the committed one. */
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === "1"
    ? join(REPO, "docs", "status-page.png")
    : join(REPO, ".test-tmp", "status-page.png");

const SCRIPT = `
import os, sys, time
steps = int(os.environ.get("STEPS", "1"))
for i in range(1, steps + 1):
    print(f"step {i}/{steps}: loss={1.0 / i:.4f}", flush=True)
    time.sleep(float(os.environ.get("STEP_S", "0")))
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
`;
import { waitFor } from "../helpers/wait-for.ts";

function experiment(sb: Sandbox, env: Record<string, string> = {}) {
  return simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = env;
  });
}

/** A runner serving the endpoint on a free loopback port; resolves with its base URL. */
async function startRunner(sb: Sandbox, args: string[] = []): Promise<{ runner: RunnerProcess; url: string }> {
  const runner = new RunnerProcess(sb, ["--prom-address", "127.0.0.1:0", ...args]);
  await runner.waitForLog(/observability endpoint at http:\/\/127\.0\.0\.1:\d+/, 60_000);
  const url = /observability endpoint at (http:\/\/127\.0\.0\.1:\d+)/.exec(runner.stderr)![1]!;
  return { runner, url };
}

/** A fresh admin token in a 0600 file of the sandbox: [path, token]. */
function adminTokenFile(sb: Sandbox): [string, string] {
  const token = crypto.randomUUID().replaceAll("-", "");
  const path = join(sb.dir, "admin-token");
  writeFileSync(path, `${token}\n`);
  chmodSync(path, 0o600);
  return [path, token];
}

const status = async (url: string): Promise<StatusDoc> => (await fetch(`${url}/status`)).json() as Promise<StatusDoc>;
const code = async (url: string, path: string, init?: RequestInit) => (await fetch(`${url}${path}`, init)).status;

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe("observability endpoint (--prom-address)", () => {
  test("an unusable --prom-address is a configuration error (exit 2)", () => {
    const r = runBinary(["run", "--prom-address", "localhost", "--queue-root", "/nonexistent-queue-root"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--prom-address");
  });

  const fakeNvml = buildFakeNvml();
  // The stand-in NVML (two cards: one at 7 % utilisation, one out of service for ECC errors
  // without a utilisation reading).
  test.skipIf(!fakeNvml)(
    "GPU gauges and utilisation come from NVML through the binary (stand-in NVML)",
    async () => {
      const sb = await makeSandbox("observe-gpu");
      const runner = new RunnerProcess(sb, ["--prom-address", "127.0.0.1:0"], {
        STUDIO_RUNNER_NVML_LIBRARY: fakeNvml!,
      });
      cleanups.push(() => runner.stop());
      await runner.waitForLog(/observability endpoint at http:\/\/127\.0\.0\.1:\d+/, 60_000);
      const url = /observability endpoint at (http:\/\/127\.0\.0\.1:\d+)/.exec(runner.stderr)![1]!;
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toContain(
        'runner_gpu_utilization_ratio{uuid="GPU-11111111-2222-3333-4444-555555555555",index="0"} 0.07',
      );
      expect(text).not.toContain('runner_gpu_utilization_ratio{uuid="GPU-aaaaaaaa');
      expect(text).toContain("runner_gpu_cards_total 1\n");
      expect(text).toContain("runner_gpu_cards_allocated 0\n");
      const cards = (await status(url)).gpus.cards;
      expect(cards.map((c) => [c.index, c.inService, c.utilizationGpuPct])).toEqual([
        [0, true, 7],
        [1, false, undefined],
      ]);
      await runner.stop();
    },
    120_000,
  );

  test("Prometheus scrapes the runner: its query API returns the true succeeded and failed counts", async () => {
    if (!prometheusAvailable()) {
      if (process.env.CI === "true") throw new Error("prometheus is not installed (.ci/run installs it)");
      console.warn("SKIPPED: /usr/bin/prometheus missing (apt-get install prometheus)");
      return;
    }
    const sb = await makeSandbox("observe-prom", { cacheDir: SHARED_CACHE });
    const { runner, url } = await startRunner(sb);
    cleanups.push(() => runner.stop());
    const prom = await PrometheusServer.start(join(sb.dir, "prometheus"), [url.replace("http://", "")], 1);
    cleanups.push(() => prom.stop());
    await waitFor("the first scrape", async () => (await prom.value('up{job="studio-runner"}')) === 1, 30_000, 500);

    const succeeding = [1, 2, 3].map(() => experiment(sb, { STEPS: "2" }));
    const failing = experiment(sb, { STEPS: "1", EXIT_CODE: "1" });
    for (const e of [...succeeding, failing]) enqueue(sb.queueRoot, "local_prom", e.message);
    const done = await waitFor(
      "all four experiments to finish",
      async () => {
        const s = await status(url);
        return s.totals.succeeded + s.totals.failed >= 4 && s;
      },
      300_000,
      500,
    );
    expect(done.totals).toMatchObject({ started: 4, succeeded: 3, failed: 1, requeued: 0, poisoned: 0, rejected: 0 });

    const succeeded = await waitFor(
      "Prometheus to see 3 succeeded",
      async () => {
        const v = await prom.value("sum(runner_experiments_succeeded_total)");
        return v === 3 && v;
      },
      30_000,
      500,
    );
    expect(succeeded).toBe(3);
    expect(
      await waitFor(
        "Prometheus to see 1 failed",
        async () => (await prom.value("sum(runner_experiments_failed_total)")) === 1 && 1,
        30_000,
        500,
      ),
    ).toBe(1);
    // The Go runner's names come through too.
    expect(await prom.value('sum(runner_project_completed{queue_name="local_prom"})')).toBe(4);
    expect(await prom.value('runner_queue_checked{queue_name="local_prom"}')).toBeGreaterThanOrEqual(4);
    expect(await prom.value('runner_phase_duration_seconds_count{phase="run"}')).toBe(4);
    expect(await prom.value("runner_experiments_running")).toBe(0);
    expect(await prom.value("process_resident_memory_bytes")).toBeGreaterThan(0);
    const targets = await prom.targets();
    expect(targets.map((t) => t.health)).toEqual(["up"]);
    await runner.stop();
  }, 420_000);

  test("/healthz turns red within two poll periods when discovery hangs, and green " +
    "when the loop moves again", async () => {
    const sb = await makeSandbox("observe-health", { cacheDir: SHARED_CACHE });
    // Discovery lists the SQS queues of every account on each pass. An SQS endpoint that answers
    // ListQueues (AWS JSON protocol, no queues) until the test holds its answers makes discover()
    // and with it the whole poll loop wait — in the runner's real code, while the process and its
    // HTTP server stay up. (A FIFO in the local queue used to do this; the local queue no longer
    // opens anything but regular files.)
    let release: (() => void) | undefined;
    let held: Promise<void> | undefined;
    const sqs = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch() {
        if (held) await held;
        return new Response(JSON.stringify({ QueueUrls: [] }), {
          headers: { "content-type": "application/x-amz-json-1.0" },
        });
      },
    });
    cleanups.push(async () => {
      release?.();
      sqs.stop(true);
    });
    const certs = join(sb.dir, "sqs-certs", "stall");
    mkdirSync(certs, { recursive: true });
    writeFileSync(
      join(certs, "credentials"),
      "[default]\naws_access_key_id = AKIASTALL\naws_secret_access_key = stall-secret-not-real\n",
    );
    writeFileSync(join(certs, "config"), "[default]\nregion = us-east-1\n");
    const { runner, url } = await startRunner(sb, [
      "--sqs-certs",
      join(sb.dir, "sqs-certs"),
      "--sqs-endpoint",
      `http://127.0.0.1:${sqs.port}`,
    ]);
    cleanups.push(() => runner.stop());
    await waitFor("ready", async () => (await code(url, "/readyz")) === 200, 60_000);
    expect(await code(url, "/healthz")).toBe(200);

    held = new Promise<void>((resolve) => (release = resolve));
    const stalledAtMs = Date.now();
    const red = await waitFor(
      "/healthz to turn red",
      async () => {
        const r = await fetch(`${url}/healthz`);
        return r.status === 503 && ((await r.json()) as { sinceLastPassMs: number; reason: string });
      },
      UNHEALTHY_AFTER_MS + POLL_WAIT_MS + 15_000,
    );
    const redAfterMs = Date.now() - stalledAtMs;
    // Red as soon as two poll periods passed without a pass (checked every 250 ms) …
    expect(red.sinceLastPassMs).toBeGreaterThan(UNHEALTHY_AFTER_MS);
    expect(red.sinceLastPassMs).toBeLessThan(UNHEALTHY_AFTER_MS + 1_500);
    expect(red.reason).toContain("has not completed a pass");
    // … and at most one loop wait (plus the 2 s the SQS list is reused) later than that.
    expect(redAfterMs).toBeLessThan(UNHEALTHY_AFTER_MS + POLL_WAIT_MS + 4_000);
    // The process and the endpoint are alive; only the loop is stuck.
    expect(runner.child.exitCode).toBeNull();
    expect(await code(url, "/metrics")).toBe(200);
    expect((await status(url)).runner.healthy).toBe(false);

    // Let the answers go: the loop moves on and takes work again.
    held = undefined;
    release!();
    await waitFor("/healthz to turn green again", async () => (await code(url, "/healthz")) === 200, 30_000);
    const exp = experiment(sb, { STEPS: "1" });
    enqueue(sb.queueRoot, "local_stall", exp.message);
    const after = await waitFor(
      "the experiment queued after the stall to finish",
      async () => {
        const s = await status(url);
        return s.finished.find((f) => f.key === exp.key);
      },
      180_000,
      500,
    );
    expect(after.result).toBe("succeeded");
    await runner.stop();
  }, 300_000);

  test("the status page shows a running experiment with its phase and log while it runs (screenshot)", async () => {
    if (!existsSync(CHROMIUM)) {
      if (process.env.CI === "true") throw new Error("chromium is not installed (.ci/run installs it)");
      console.warn("SKIPPED: /usr/bin/chromium missing (apt-get install chromium)");
      return;
    }
    const sb = await makeSandbox("observe-page", { cacheDir: SHARED_CACHE });
    const { runner, url } = await startRunner(sb, ["--status-logs"]);
    cleanups.push(() => runner.stop());
    const quick = experiment(sb, { STEPS: "2" });
    const long = experiment(sb, { STEPS: "40", STEP_S: "0.5" });
    enqueue(sb.queueRoot, "local_page", quick.message);
    await waitFor(
      "the quick experiment to finish",
      async () => (await status(url)).finished.some((f) => f.key === quick.key),
      180_000,
      500,
    );
    enqueue(sb.queueRoot, "local_page", long.message);

    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(url);
      const card = page.locator(`.experiment[data-key="${long.key}"]`);
      await card.waitFor({ timeout: 120_000 });
      // Evaluated in the page: the card is in the run phase and its log shows the script's lines.
      await page.waitForFunction(
        `(() => { const el = document.querySelector('.experiment[data-key="${long.key}"]');
          return el?.getAttribute("data-phase") === "run"
            && /step [3-9]\\/40: loss=/.test(el.querySelector("pre.log")?.textContent ?? ""); })()`,
        undefined,
        { timeout: 120_000 },
      );
      expect(await page.textContent("#state")).toBe("running");
      expect(await page.textContent("#health")).toBe("healthy");
      expect(await card.locator(".badge.phase").textContent()).toBe("run");
      expect(await card.locator("pre.log").textContent()).toMatch(/step \d+\/40: loss=/);
      expect(await card.locator(".elapsed").textContent()).toMatch(/^running \d+ s$/);
      expect(await page.locator("#queues").textContent()).toContain("local / local_page");
      expect(await page.locator("#finished").textContent()).toContain(quick.key);
      expect(await page.locator("#finished .badge.succeeded").count()).toBe(1);
      expect(await page.locator("#resources").textContent()).toContain("CPUs1 / ");
      mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    } finally {
      await browser?.close();
    }
    await waitFor(
      "the long experiment to finish",
      async () => (await status(url)).finished.some((f) => f.key === long.key),
      120_000,
      500,
    );
    await runner.stop();
  }, 420_000);

  test("HTTP drain: POST /drain lets the running experiment finish and takes no new " +
    "work; POST /resume takes it; /drain?exit=true exits", async () => {
    const sb = await makeSandbox("observe-drain", { cacheDir: SHARED_CACHE });
    const [tokenPath, token] = adminTokenFile(sb);
    const auth = { authorization: `Bearer ${token}` };
    const { runner, url } = await startRunner(sb, ["--admin-token-file", tokenPath]);
    expect(runner.stderr).toContain(`POST /drain /resume with the bearer token of --admin-token-file ${tokenPath}`);
    cleanups.push(() => runner.stop());
    const first = experiment(sb, { STEPS: "12", STEP_S: "0.5" });
    const second = experiment(sb, { STEPS: "1" });
    enqueue(sb.queueRoot, "local_drain", first.message);
    await waitFor(
      "the first experiment to run",
      async () => (await status(url)).running.find((r) => r.key === first.key && r.phase === "run"),
      180_000,
    );

    expect(await code(url, "/drain", { method: "GET", headers: auth })).toBe(405);
    expect(await code(url, "/drain", { method: "POST" })).toBe(401);
    expect((await status(url)).runner.state).toBe("running");
    const drained = await fetch(`${url}/drain`, { method: "POST", headers: auth });
    expect(drained.status).toBe(200);
    expect(await drained.json()).toEqual({ state: "suspended" });
    expect(await code(url, "/readyz")).toBe(503);
    expect(await code(url, "/healthz")).toBe(200);
    const id = enqueue(sb.queueRoot, "local_drain", second.message);

    const finished = await waitFor(
      "the first experiment to finish",
      async () => (await status(url)).finished.find((f) => f.key === first.key),
      120_000,
    );
    expect(finished.result).toBe("succeeded");
    // A negative check (nothing is taken while suspended): a fixed time, more than a loop period.
    await Bun.sleep(POLL_WAIT_MS + 2_000);
    const suspended = await status(url);
    expect(suspended.runner.state).toBe("suspended");
    expect(suspended.running).toEqual([]);
    expect(suspended.totals.started).toBe(1);
    expect(filesIn(join(sb.queueRoot, "local_drain"))).toEqual([id]);
    expect(await code(url, "/healthz")).toBe(200); // suspended is alive

    const resumed = await fetch(`${url}/resume`, { method: "POST", headers: auth });
    expect(await resumed.json()).toEqual({ state: "running" });
    expect(await code(url, "/readyz")).toBe(200);
    const second_ = await waitFor(
      "the second experiment to finish",
      async () => (await status(url)).finished.find((f) => f.key === second.key),
      180_000,
    );
    expect(second_.result).toBe("succeeded");
    expect(runner.stderr).toContain("suspended (HTTP POST /drain)");
    expect(runner.stderr).toContain("resumed (HTTP POST /resume)");

    const exiting = await fetch(`${url}/drain?exit=true`, { method: "POST", headers: auth });
    expect(await exiting.json()).toEqual({ state: "terminating" });
    expect(await runner.exited).toBe(0);
    expect(runner.stderr).toContain("refused POST /drain from 127.0.0.1: no bearer token");
    expect(runner.stderr).not.toContain(token);
  }, 420_000);

  test("an unusable --admin-token-file stops the start (exit 2); the token is never printed", async () => {
    const sb = await makeSandbox("observe-token");
    const [tokenPath, token] = adminTokenFile(sb);
    chmodSync(tokenPath, 0o644);
    const r = runBinary([
      "run",
      "--prom-address",
      "127.0.0.1:0",
      "--admin-token-file",
      tokenPath,
      "--queue-root",
      sb.queueRoot,
      "--working-dir",
      sb.workDir,
      "--cache-dir",
      sb.cacheDir,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--admin-token-file ${tokenPath}: mode 0644 lets other users read or change it`);
    expect(r.stderr + r.stdout).not.toContain(token);
  }, 60_000);
});
