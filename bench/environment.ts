// Python environments: a warm cache hit (the runner's own "reused in N ms" line in the
// experiment's log), and a cold build of a small environment by the runner versus the same
// `python -m venv` + `pip install` run by hand with the same interpreter, the same packages and
// the same pip configuration (the offline wheelhouse), alternating which goes first.

import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { enqueue, makeSandbox } from "../test/helpers/e2e.ts";
import { experimentLog, trivialMessages } from "./lib/experiments.ts";
import type { BenchOptions } from "./lib/options.ts";
import { row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";
import { pipEnv } from "./lib/bench-env.ts";

export const WARM_HIT_TARGET_S = 0.2;
export const COLD_RATIO_TARGET = 1.1;
/** A small environment: requests and its four dependencies, plus six. */
export const SMALL_ENV = ["requests", "six"];
const QUEUE = "local_bench";

type Marker = { interpreter: string; buildMs: number; failed: unknown[] };

function readMarker(cacheDir: string): Marker {
  const root = join(cacheDir, "venvs");
  const hash = readdirSync(root).find((n) => !n.endsWith(".lock"));
  if (!hash) throw new Error(`no venv in ${root}`);
  return JSON.parse(readFileSync(join(root, hash, ".studio-runner-venv.json"), "utf8")) as Marker;
}

/** python -m venv + pip install by hand; milliseconds. */
function byHand(interpreter: string, dir: string): number {
  const env = { ...process.env, ...pipEnv() };
  const t = performance.now();
  const venv = spawnSync(interpreter, ["-m", "venv", dir], { env, encoding: "utf8" });
  if (venv.status !== 0) throw new Error(`python -m venv failed: ${venv.stderr}`);
  const pip = spawnSync(join(dir, "bin", "pip"), ["install", "--no-input", ...SMALL_ENV], { env, encoding: "utf8" });
  if (pip.status !== 0) throw new Error(`pip install failed: ${pip.stderr}`);
  return performance.now() - t;
}

export async function runEnvironment(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 1 : 4;
  const hitsPerRun = options.quick ? 3 : 5;
  const cold: number[] = [];
  const manual: number[] = [];
  const ratios: number[] = [];
  const hits: number[] = [];
  // An untimed build first, so that neither side pays alone for reading the wheelhouse and the
  // interpreter from a cold disk; then the two alternate which goes first.
  {
    const warm = await makeSandbox("bench-env-warmup");
    options.say("environment: untimed warm-up build by hand");
    byHand(
      spawnSync("python3.11", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim() ||
        "python3",
      join(warm.dir, "venv"),
    );
    rmSync(warm.dir, { recursive: true, force: true });
  }
  for (let i = 0; i < runs; i++) {
    const sb = await makeSandbox("bench-env");
    const messages = trivialMessages(sb.storageRoot, hitsPerRun + 1, { requirements: SMALL_ENV });
    let runnerMs = NaN;
    let handMs = NaN;
    let interpreter = "";
    const runnerBuild = async () => {
      const runner = new BenchRunner(sb, ["--max-cores", "2"]);
      try {
        enqueue(sb.queueRoot, QUEUE, messages[0]!.message);
        await runner.waitFor(new RegExp(`experiment ${messages[0]!.key} finished`), 600_000);
        const marker = readMarker(sb.cacheDir);
        if (marker.failed.length) throw new Error(`the runner could not install ${JSON.stringify(marker.failed)}`);
        runnerMs = marker.buildMs;
        interpreter = marker.interpreter;
        for (const m of messages.slice(1)) {
          enqueue(sb.queueRoot, QUEUE, m.message);
          await runner.waitFor(new RegExp(`experiment ${m.key} finished`), 60_000);
          const reused = /python environment \S+ reused in (\d+)ms/.exec(experimentLog(m));
          if (!reused) throw new Error(`no "reused in" line in the log of ${m.key}`);
          hits.push(Number(reused[1]) / 1000);
        }
      } finally {
        await runner.stop();
      }
    };
    const handBuild = () => {
      const dir = join(sb.dir, "by-hand-venv");
      handMs = byHand(interpreter || "python3", dir);
      rmSync(dir, { recursive: true, force: true });
    };
    options.say(`environment: cold build ${i + 1}/${runs}, ${i % 2 ? "by hand first" : "runner first"}`);
    if (i % 2 === 0) {
      await runnerBuild();
      handBuild();
    } else {
      // The interpreter the runner will pick: the newest 3.11 it finds, as in the message.
      interpreter = spawnSync("python3.11", ["-c", "import sys; print(sys.executable)"], {
        encoding: "utf8",
      }).stdout.trim();
      handBuild();
      await runnerBuild();
    }
    cold.push(runnerMs / 1000);
    manual.push(handMs / 1000);
    ratios.push(runnerMs / handMs);
    rmSync(sb.dir, { recursive: true, force: true });
  }
  const uv = spawnSync("bash", ["-c", "command -v uv"], { encoding: "utf8" }).stdout.trim();
  return [
    row("environment", "warm cache hit (venv reused)", "s", hits, { value: WARM_HIT_TARGET_S, direction: "lower" }),
    row("environment", `cold build by the runner (${SMALL_ENV.join(", ")} + deps)`, "s", cold),
    row(
      "environment",
      "cold build: runner ÷ by hand",
      "×",
      ratios,
      { value: COLD_RATIO_TARGET, direction: "lower" },
      uv
        ? `uv found at ${uv}`
        : "uv is not on this machine nor in its offline wheelhouse: the runner builds with venv + pip only",
    ),
    row("environment", "cold build by hand (peer)", "s", manual),
  ];
}
