// Dispatch latency: message published → the experiment's first output line, with a warm
// environment and an idle runner, on the local queue and on RabbitMQ. The first line's time is
// the script's own clock (time.time()), the publish time the bench's, on the same machine.

import { row, type Row } from "./lib/report.ts";
import type { BenchOptions } from "./lib/options.ts";
import { sequentialSamples, type QueueKind, type SandboxMode } from "./lib/sequential.ts";

export const DISPATCH_TARGET_S = 0.1;

export async function runDispatch(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 5 : 20;
  const rows: Row[] = [];
  // Sandboxed (the default) on both backends; unsandboxed on the local queue for comparison.
  const cases: Array<[QueueKind, SandboxMode]> = [
    ["local", "bwrap"],
    ["local", "none"],
    ["rabbitmq", "bwrap"],
  ];
  for (const [kind, sandbox] of cases) {
    options.say(`dispatch: ${runs} experiments one at a time on the ${kind} queue, sandbox ${sandbox}`);
    const result = await sequentialSamples(kind, runs, sandbox);
    const values = result.samples.map((s) => (s.firstLineMs - s.publishMs) / 1000);
    const what = `publish → first output line, ${kind} queue, sandbox ${sandbox === "bwrap" ? "on" : "off"} (p50)`;
    rows.push(
      row(
        "dispatch",
        what,
        "s",
        values,
        { value: DISPATCH_TARGET_S, direction: "lower" },
        result.skipped ? `not run: ${result.skipped}` : undefined,
      ),
    );
  }
  return rows;
}
