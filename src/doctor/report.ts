// The doctor's table: one line per check (name, status, what was seen), a "fix:" line under each
// warning or failure, and a summary; or the same as one JSON document. Colour only on a terminal.

import type { CheckResult, CheckStatus } from "./check-result.ts";

const LABEL: Record<CheckStatus, string> = { ok: "ok", warn: "WARN", fail: "FAIL" };
const COLOUR: Record<CheckStatus, string> = { ok: "\x1b[32m", warn: "\x1b[33m", fail: "\x1b[31m" };
const RESET = "\x1b[0m";

export function summary(results: CheckResult[]): { failed: number; warnings: number; passed: boolean } {
  const failed = results.filter((r) => r.status === "fail").length;
  const warnings = results.filter((r) => r.status === "warn").length;
  return { failed, warnings, passed: failed === 0 };
}

export function renderTable(results: CheckResult[], colour: boolean): string {
  const width = Math.max(5, ...results.map((r) => r.name.length));
  const pad = " ".repeat(width + 12);
  const lines = [`  ${"CHECK".padEnd(width)}  STATUS  DETAIL`];
  for (const r of results) {
    const status = LABEL[r.status].padEnd(6);
    const shown = colour ? `${COLOUR[r.status]}${status}${RESET}` : status;
    lines.push(`  ${r.name.padEnd(width)}  ${shown}  ${r.detail}`);
    if (r.fix && r.status !== "ok") lines.push(`${pad}fix: ${r.fix}`);
  }
  const s = summary(results);
  lines.push(
    "",
    s.passed
      ? `doctor: ${results.length} checks, all passed${s.warnings ? ` (${s.warnings} warning${s.warnings > 1 ? "s" : ""})` : ""}: this runner can serve what it is configured for`
      : `doctor: ${results.length} checks, ${s.failed} failed, ${s.warnings} warning${s.warnings === 1 ? "" : "s"}: fix the FAIL lines before starting the runner`,
  );
  return `${lines.join("\n")}\n`;
}

export function renderJson(results: CheckResult[]): string {
  return `${JSON.stringify({ ...summary(results), checks: results }, null, 2)}\n`;
}
