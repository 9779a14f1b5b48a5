// The bench command: `node_modules/.bin/bun bench/run.ts [--quick] [--only a,b] [--no-build]` runs
// the benchmarks against the compiled runner (dist/studio-runner, built from this checkout first
// unless --no-build) and prints
// one Markdown table (median, min, max, runs, target, met?) with the machine, the date and the
// notes. Names: dispatch, completion, throughput, environment, freeze, transfer, footprint.
// BENCH_RUNNER_BINARY=<path> benches that binary instead (nothing is built: see bench/lib/runner.ts).

import { spawnSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { REPO } from "../test/helpers/e2e.ts";
import { runCompletion } from "./completion.ts";
import { runDispatch } from "./dispatch.ts";
import { runEnvironment } from "./environment.ts";
import { runFreeze } from "./environment-freeze.ts";
import { runFootprint } from "./footprint.ts";
import { applyBenchEnv } from "./lib/bench-env.ts";
import type { BenchOptions } from "./lib/options.ts";
import { loadAverage } from "./lib/proc.ts";
import { markdownTable, met, notes, type Row } from "./lib/report.ts";
import { benchBinary } from "./lib/runner.ts";
import { runThroughput } from "./throughput.ts";
import { runTransfer } from "./transfer.ts";

const BENCHES: Record<string, (o: BenchOptions) => Promise<Row[]>> = {
  dispatch: runDispatch,
  completion: runCompletion,
  throughput: runThroughput,
  environment: runEnvironment,
  freeze: runFreeze,
  transfer: runTransfer,
  footprint: runFootprint,
};

function parseArgs(argv: string[]): { quick: boolean; only: string[] } {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--only");
  const only =
    at >= 0
      ? (argv[at + 1] ?? "")
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : Object.keys(BENCHES);
  const unknown = only.filter((n) => !BENCHES[n]);
  if (unknown.length) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(BENCHES).join(", ")}\n`);
    process.exit(2);
  }
  return { quick, only };
}

function machine(): string {
  const bun = Bun.version;
  const kernel = spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim();
  const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
  return `${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${kernel}, Bun ${bun}, commit ${commit}`;
}

async function main() {
  const { quick, only } = parseArgs(process.argv.slice(2));
  applyBenchEnv();
  if (!process.argv.includes("--no-build") && !process.env.BENCH_RUNNER_BINARY) {
    const built = spawnSync(join(REPO, "node_modules/.bin/bun"), ["run", "build.ts"], {
      cwd: REPO,
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (built.status !== 0) throw new Error("the build failed");
  }
  const binary = benchBinary();
  const version = spawnSync(binary, ["--version"], { encoding: "utf8" }).stdout.trim();
  const say = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  const started = Date.now();
  const loadBefore = loadAverage();
  const rows: Row[] = [];
  for (const name of only) {
    const t = Date.now();
    say(`${name}: starting (load average ${loadAverage().toFixed(2)})`);
    try {
      rows.push(...(await BENCHES[name]!({ quick, say })));
    } catch (err) {
      say(`${name}: FAILED: ${(err as Error).stack ?? err}`);
      rows.push({
        bench: name,
        figure: "(failed)",
        unit: "",
        summary: { median: NaN, min: NaN, max: NaN, runs: 0 },
        note: `failed: ${(err as Error).message.split("\n")[0]}`,
      });
    }
    say(`${name}: done in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  }
  const unmet = rows.filter((r) => met(r) === false).length;
  console.log(`## studio-runner bench${quick ? " (--quick)" : ""}\n`);
  console.log(
    `- command: \`node_modules/.bin/bun bench/run.ts ${process.argv.slice(2).join(" ")}\``.replace(/ `$/, "`"),
  );
  console.log(`- date: ${new Date(started).toISOString()}, ${((Date.now() - started) / 60000).toFixed(1)} min`);
  console.log(`- machine: ${machine()}`);
  console.log(
    `- binary: ${binary} (${version || "no --version"})${process.env.BENCH_RUNNER_BINARY ? " from BENCH_RUNNER_BINARY" : ""}`,
  );
  console.log(`- load average (1 min) before: ${loadBefore.toFixed(2)}, after: ${loadAverage().toFixed(2)}\n`);
  console.log(markdownTable(rows));
  const n = notes(rows);
  if (n) console.log(`\n${n}`);
  console.log(`\n${rows.filter((r) => met(r) === true).length} targets met, ${unmet} not met`);
  process.exit(0);
}

void main();
