// The bench's result rows and the table they print as: median, min, max, runs, target, met.

import { summarize, type Summary } from "./stats.ts";

/** lower: the figure should be at most the target; higher: at least. */
export type Direction = "lower" | "higher";

export type Row = {
  /** Which benchmark file made it (dispatch, throughput …). */
  bench: string;
  /** What was measured, e.g. "publish → first output line, local queue". */
  figure: string;
  unit: string;
  summary: Summary;
  /** Undefined: a figure reported for comparison only (a peer's). */
  target?: { value: number; direction: Direction };
  /** Why a target is not met, or how the figure was taken. */
  note?: string;
};

export function row(
  bench: string,
  figure: string,
  unit: string,
  values: number[],
  target?: Row["target"],
  note?: string,
): Row {
  return { bench, figure, unit, summary: summarize(values), target, note };
}

export function met(r: Row): boolean | undefined {
  if (!r.target || !Number.isFinite(r.summary.median)) return undefined;
  return r.target.direction === "lower" ? r.summary.median <= r.target.value : r.summary.median >= r.target.value;
}

/** Three significant digits at most, without exponent notation. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

/** A Markdown table of the rows. */
export function markdownTable(rows: Row[]): string {
  const head = "| bench | figure | median | min | max | runs | target | met? |\n|---|---|---|---|---|---|---|---|";
  const lines = rows.map((r) => {
    const s = r.summary;
    const target = r.target
      ? `${r.target.direction === "lower" ? "≤" : "≥"} ${fmt(r.target.value)} ${r.unit}`
      : "(peer)";
    const ok = met(r);
    return `| ${r.bench} | ${r.figure} | ${fmt(s.median)} ${r.unit} | ${fmt(s.min)} | ${fmt(s.max)} | ${s.runs} | ${target} | ${ok === undefined ? "–" : ok ? "yes" : "**no**"} |`;
  });
  return [head, ...lines].join("\n");
}

/** Notes under the table, one per row that has one. */
export function notes(rows: Row[]): string {
  return rows
    .filter((r) => r.note)
    .map((r) => `- ${r.bench} / ${r.figure}: ${r.note}`)
    .join("\n");
}
