// Throughput: 100 trivial experiments published at once to the local queue of one warm runner
// (2 cores, each experiment asking for 1 CPU as the client's default does, so two run at a
// time); experiments per second from the first publish to the last ack.

import { rmSync } from "node:fs";
import { enqueue, makeSandbox } from "../test/helpers/e2e.ts";
import { trivialMessages } from "./lib/experiments.ts";
import type { BenchOptions } from "./lib/options.ts";
import { row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";

export const THROUGHPUT_TARGET_PER_S = 10;
const EXPERIMENTS = 100;
const QUEUE = "local_bench";

/** One batch through a fresh warm runner: experiments per second. */
export async function batchThroughput(
  count: number,
): Promise<{ perSecond: number; runner: BenchRunner; cleanup: () => Promise<void> }> {
  const sb = await makeSandbox("bench-throughput");
  const messages = trivialMessages(sb.storageRoot, count + 1);
  const runner = new BenchRunner(sb, ["--max-cores", "2"]);
  const cleanup = async () => {
    await runner.stop();
    rmSync(sb.dir, { recursive: true, force: true });
  };
  try {
    enqueue(sb.queueRoot, QUEUE, messages[0]!.message);
    await runner.waitFor(new RegExp(`experiment ${messages[0]!.key} finished`), 300_000);
    await Bun.sleep(500);
    const before = runner.lines.length;
    const startMs = Date.now();
    for (const m of messages.slice(1)) enqueue(sb.queueRoot, QUEUE, m.message);
    const done = await runner.waitForCount(/^experiment \S+ finished/, count + 1, 600_000);
    const last = Math.max(...done.slice(1).map((l) => l.timeMs));
    const failed = runner.lines.slice(before).filter((l) => /finished: exited with (?!code 0)/.test(l.message)).length;
    if (failed) throw new Error(`${failed} experiment(s) did not exit 0`);
    return { perSecond: count / ((last - startMs) / 1000), runner, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export async function runThroughput(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 1 : 3;
  const values: number[] = [];
  for (let i = 0; i < runs; i++) {
    options.say(`throughput: batch ${i + 1}/${runs} of ${EXPERIMENTS}`);
    const batch = await batchThroughput(EXPERIMENTS);
    await batch.cleanup();
    values.push(batch.perSecond);
  }
  return [
    row("throughput", `${EXPERIMENTS} trivial experiments, one runner, 2 cores`, "exp/s", values, {
      value: THROUGHPUT_TARGET_PER_S,
      direction: "higher",
    }),
  ];
}
