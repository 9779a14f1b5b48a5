// Completion latency: the script's last line (just before it exits) → its results uploaded and
// the message acked, for a small output. The ack time is the runner's timestamp of "experiment
// … finished", which it logs right after the ack.

import { row, type Row } from "./lib/report.ts";
import type { BenchOptions } from "./lib/options.ts";
import { sequentialSamples, type QueueKind } from "./lib/sequential.ts";

export const COMPLETION_TARGET_S = 0.2;

export async function runCompletion(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 5 : 20;
  const rows: Row[] = [];
  for (const kind of ["local", "rabbitmq"] as QueueKind[]) {
    options.say(`completion: ${runs} experiments one at a time on the ${kind} queue`);
    const result = await sequentialSamples(kind, runs);
    const values = result.samples.map((s) => (s.ackedMs - s.scriptEndMs) / 1000);
    rows.push(row("completion", `script exit → uploaded + acked, ${kind} queue (p50)`, "s", values, { value: COMPLETION_TARGET_S, direction: "lower" }, result.skipped ? `not run: ${result.skipped}` : undefined));
  }
  return rows;
}
