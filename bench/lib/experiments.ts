// Trivial experiments for the bench: the captured client message on file: storage, a script
// that prints its own clock at its first and last line, and readers of what it left in storage.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { simpleExperiment, tarMember } from "../../test/helpers/e2e.ts";

/** Prints the wall clock first and last, so publish → first line and exit → ack can be timed. */
export const CLOCK_SCRIPT = `import time
print("T_FIRST %.6f" % time.time(), flush=True)
print("T_END %.6f" % time.time(), flush=True)
`;

export type BenchMessage = { message: Record<string, any>; key: string; experimentDir: string };

/**
 * `count` messages that differ only in their experiment key, all sharing one workspace tar (so
 * after the first the workspace comes from the artifact cache, as for a user's repeated runs).
 */
export function trivialMessages(
  storageRoot: string,
  count: number,
  options: { script?: string; requirements?: string[]; edit?: (m: Record<string, any>) => void } = {},
): BenchMessage[] {
  const first = simpleExperiment(storageRoot, { "main.py": options.script ?? CLOCK_SCRIPT }, (m) => {
    m.experiment.pythonver = "3.11";
    m.experiment.pythonenv = options.requirements ?? [];
    delete m.config.database;
    options.edit?.(m);
  });
  const template = JSON.stringify(first.message);
  const out: BenchMessage[] = [];
  for (let i = 0; i < count; i++) {
    const key = `${Math.floor(Date.now() / 1000)}_bench-${crypto.randomUUID()}`;
    const message = JSON.parse(template.replaceAll(first.key, key));
    out.push({ message, key, experimentDir: first.experimentDir.replace(first.key, key) });
  }
  return out;
}

/** The experiment's log (output/output) from output.tar in file: storage. */
export function experimentLog(m: BenchMessage): string {
  const tar = join(m.experimentDir, "output.tar");
  return existsSync(tar) ? tarMember(tar, "output") || tarMember(tar) : "";
}

/** Wall-clock times (ms) the clock script printed. */
export function scriptClock(log: string): { firstMs: number; endMs: number } {
  const first = Number(/T_FIRST ([\d.]+)/.exec(log)?.[1]) * 1000;
  const end = Number(/T_END ([\d.]+)/.exec(log)?.[1]) * 1000;
  return { firstMs: first, endMs: end };
}
