// Daemon footprint: start → first poll (spawn to the "serving local queue" line, which the first
// poll writes), idle RSS, idle CPU over 60 s, and RSS after 100 experiments.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox } from "../test/helpers/e2e.ts";
import type { BenchOptions } from "./lib/options.ts";
import { cpuSecondsOf, kibToMB, memoryOf } from "./lib/proc.ts";
import { row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";
import { batchThroughput } from "./throughput.ts";

export const FIRST_POLL_TARGET_MS = 100;
export const IDLE_RSS_TARGET_MB = 40;
export const IDLE_CPU_TARGET_PERCENT = 0.1;
export const RSS_AFTER_TARGET_MB = 150;
const SETTLE_MS = 3000;
const EXPERIMENTS = 100;

export async function runFootprint(options: BenchOptions): Promise<Row[]> {
  const starts = options.quick ? 3 : 10;
  const idleMs = options.quick ? 10_000 : 60_000;
  const firstPoll: number[] = [];
  const idleRss: number[] = [];
  const sb = await makeSandbox("bench-footprint");
  mkdirSync(join(sb.queueRoot, "local_bench"), { recursive: true });
  try {
    options.say(`footprint: ${starts} starts to the first poll`);
    for (let i = 0; i < starts; i++) {
      const runner = new BenchRunner(sb, ["--max-cores", "2"]);
      const line = await runner.waitFor(/^serving local queue/, 30_000);
      firstPoll.push(line.receivedMs - runner.spawnedMs);
      await runner.stop();
    }
    options.say(`footprint: idle for ${idleMs / 1000} s`);
    const runner = new BenchRunner(sb, ["--max-cores", "2"]);
    await runner.waitFor(/^serving local queue/, 30_000);
    await Bun.sleep(SETTLE_MS);
    const cpuBefore = cpuSecondsOf(runner.pid) ?? NaN;
    const t0 = performance.now();
    const samples: number[] = [];
    while (performance.now() - t0 < idleMs) {
      await Bun.sleep(1000);
      const m = memoryOf(runner.pid);
      if (m) samples.push(kibToMB(m.rssKiB));
    }
    const cpuAfter = cpuSecondsOf(runner.pid) ?? NaN;
    const idleCpuPercent = ((cpuAfter - cpuBefore) / ((performance.now() - t0) / 1000)) * 100;
    idleRss.push(...samples);
    await runner.stop();
    const rssAfter: number[] = [];
    const batches = options.quick ? 1 : 3;
    for (let i = 0; i < batches; i++) {
      options.say(`footprint: RSS after ${EXPERIMENTS} experiments (${i + 1}/${batches})`);
      const batch = await batchThroughput(EXPERIMENTS);
      await Bun.sleep(1000);
      const m = memoryOf(batch.runner.pid);
      await batch.cleanup();
      if (m) rssAfter.push(kibToMB(m.rssKiB));
    }
    return [
      row("footprint", "start → first poll", "ms", firstPoll, { value: FIRST_POLL_TARGET_MS, direction: "lower" }),
      row("footprint", "idle RSS (sampled each second)", "MB", idleRss, {
        value: IDLE_RSS_TARGET_MB,
        direction: "lower",
      }),
      row("footprint", `idle CPU over ${idleMs / 1000} s`, "%", [idleCpuPercent], {
        value: IDLE_CPU_TARGET_PERCENT,
        direction: "lower",
      }),
      row("footprint", `RSS after ${EXPERIMENTS} experiments`, "MB", rssAfter, {
        value: RSS_AFTER_TARGET_MB,
        direction: "lower",
      }),
    ];
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
}
