// Completion latency: the script's last line (just before it exits) → its results uploaded and
// the message acked, for a small output. The ack time is the runner's timestamp of "experiment
// … finished", which it logs right after the ack.

import { row, type Row } from "./lib/report.ts";
import type { BenchOptions } from "./lib/options.ts";
import { sequentialSamples, type QueueKind, type SandboxMode } from "./lib/sequential.ts";

export const COMPLETION_TARGET_S = 0.2;

export async function runCompletion(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 5 : 20;
  const rows: Row[] = [];
  // Sandboxed (the default) on both backends; unsandboxed on the local queue for comparison.
  const cases: Array<[QueueKind, SandboxMode]> = [
    ["local", "bwrap"],
    ["local", "none"],
    ["rabbitmq", "bwrap"],
  ];
  for (const [kind, sandbox] of cases) {
    options.say(`completion: ${runs} experiments one at a time on the ${kind} queue, sandbox ${sandbox}`);
    const result = await sequentialSamples(kind, runs, sandbox);
    const values = result.samples.map((s) => (s.ackedMs - s.scriptEndMs) / 1000);
    const what = `script exit → uploaded + acked, ${kind} queue, sandbox ${sandbox === "bwrap" ? "on" : "off"} (p50)`;
    rows.push(
      row(
        "completion",
        what,
        "s",
        values,
        { value: COMPLETION_TARGET_S, direction: "lower" },
        result.skipped ? `not run: ${result.skipped}` : undefined,
      ),
    );
  }
  return rows;
}
