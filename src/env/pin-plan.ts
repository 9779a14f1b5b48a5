// What to do with each requirement line, decided once from the index probe (pin-probe.ts): install
// it as pinned, install the nearest version instead (--pip-relax-pins), or leave it out and say
// why; how a failed pip run changes that (pip-failure.ts blames lines: loosen or drop them, so
// every round moves on); and, from what ended up installed, the outcome of every line and the
// lines the experiment's log shows. Pure functions: the install loop is in pin-install.ts.

import type { Blame } from "./pip-failure.ts";
import type { IndexAnswer, InstalledProbe } from "./pin-probe.ts";

/** default: install what can be met exactly; relax: the nearest version for the rest; strict: fail on any. */
export type PinMode = "default" | "relax" | "strict";

export type Outcome = "pinned" | "present" | "substituted" | "other-version" | "missing" | "skipped";

/** The outcome of one requirement line, kept in the environment's marker. */
export type PinOutcome = {
  requirement: string;
  outcome: Outcome;
  /** The version installed in the end (when the package is installed at all). */
  installed?: string;
  /** What pip was asked for instead of the line (substitutions, loosened pins). */
  asked?: string;
  why?: string;
};

/** One line while the environment is built. */
export type PlanEntry = {
  requirement: string;
  /** What pip is asked for; undefined = not installed. */
  install?: string;
  /** How many versions the index offers (loosening a pin with one version cannot help). */
  versionCount?: number;
  /** Loosened once: a second blame drops it. */
  loosened?: boolean;
  substituted?: boolean;
  present?: boolean;
  skipped?: boolean;
  why?: string;
};

/** A requirement line without its hashes and environment marker (both already dealt with). */
function bare(line: string): string {
  return line
    .split(/\s+--hash/)[0]!
    .split(";")[0]!
    .trim();
}

/** name[extras] of a requirement line, without any version. */
export function nameWithExtras(line: string): string {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?/.exec(bare(line));
  return m ? `${m[1]}${m[2] ? m[2].replace(/\s+/g, "") : ""}` : bare(line);
}

const versionsText = (a: IndexAnswer) =>
  a.versions.length > 6
    ? `${a.versions.slice(0, 3).join(", ")}, …, ${a.versions.slice(-2).join(", ")}`
    : a.versions.join(", ");

/** Every line's first decision. Lines the runner skipped before the probe are given separately. */
export function planPins(answers: IndexAnswer[], mode: PinMode): PlanEntry[] {
  return answers.map((a) => {
    const entry: PlanEntry = {
      requirement: a.line,
      ...(a.versions.length ? { versionCount: a.versions.length } : {}),
    };
    switch (a.status) {
      case "exact":
        entry.install = a.line;
        break;
      case "present":
        entry.present = true;
        entry.why = `already in the new environment (${a.installed})`;
        break;
      case "skip":
        entry.skipped = true;
        entry.why = a.why ?? "not for this interpreter or platform";
        break;
      case "other":
        if (mode === "relax" && a.nearest) {
          entry.install = `${nameWithExtras(a.line)}==${a.nearest}`;
          entry.substituted = true;
          entry.why = `the index has ${versionsText(a)}`;
        } else {
          entry.why =
            `the index has only ${versionsText(a)}` +
            `${mode === "default" ? "; --pip-relax-pins installs the nearest" : ""}`;
        }
        break;
      case "absent":
        entry.why = "not in the index";
        break;
      case "invalid":
        entry.why = `pip cannot read it: ${a.why ?? "invalid requirement"}`;
        break;
      case "error":
        entry.why = `the index could not be asked: ${a.why ?? "error"}`;
        break;
    }
    return entry;
  });
}

/** Lines that cannot be met exactly (what --pip-strict refuses). */
export function unmet(entries: PlanEntry[]): PlanEntry[] {
  return entries.filter((e) => !e.skipped && !e.present && (e.install === undefined || e.substituted));
}

/** The lines pip is asked for, in order. */
export function installLines(entries: PlanEntry[]): string[] {
  return entries.filter((e) => e.install !== undefined).map((e) => e.install!);
}

/**
 * Applies pip's blame to the entries being installed (`asked` holds the lines of the failed run, in
 * the order installLines gave them). A pinned line is first loosened to its bare name when the mode
 * allows other versions (relax, or a substitution), else dropped; a loosened line blamed again is
 * dropped. Returns what changed, one line each, or an empty list when nothing could be changed.
 */
export function applyBlame(entries: PlanEntry[], asked: string[], blames: Blame[], mode: PinMode): string[] {
  const changes: string[] = [];
  const installing = entries.filter((e) => e.install !== undefined);
  for (const b of blames) {
    const line = asked[b.index];
    const entry = installing.find((e) => e.install === line);
    if (!entry) continue;
    const mayLoosen =
      !entry.loosened &&
      (mode === "relax" || entry.substituted) &&
      b.kind !== "not-found" &&
      b.kind !== "build" &&
      (entry.versionCount ?? 2) > 1;
    if (mayLoosen) {
      entry.install = nameWithExtras(entry.requirement);
      entry.loosened = true;
      entry.why = `${entry.why ? `${entry.why}; ` : ""}${b.detail}; pip chooses the version`;
      changes.push(`${entry.requirement}: ${b.detail}; letting pip choose its version`);
    } else {
      entry.install = undefined;
      entry.substituted = false;
      entry.why = b.detail;
      changes.push(`${entry.requirement}: ${b.detail}; left out`);
    }
  }
  return changes;
}

/** The outcome of every line, from the plan and what is installed now. */
export function outcomes(entries: PlanEntry[], installed: InstalledProbe | undefined): PinOutcome[] {
  return entries.map((e, i) => {
    const now = installed?.pins[i];
    const version = now?.installed;
    const base = { requirement: e.requirement, ...(version ? { installed: version } : {}) };
    if (e.skipped) return { ...base, outcome: "skipped", why: e.why };
    if (installed === undefined) {
      // Not checked (the probe failed): what pip was asked for is all that is known.
      if (e.present) return { ...base, outcome: "present" };
      if (e.install === undefined) return { ...base, outcome: "missing", why: e.why };
      return e.install === e.requirement
        ? { ...base, outcome: "pinned" }
        : { ...base, outcome: "substituted", asked: e.install, why: e.why };
    }
    if (now?.satisfied) return { ...base, outcome: e.present ? "present" : "pinned" };
    if (!version) return { ...base, outcome: "missing", why: e.why ?? "pip did not install it" };
    if (e.install !== undefined) return { ...base, outcome: "substituted", asked: e.install, why: e.why };
    return {
      ...base,
      outcome: "other-version",
      why: `${e.why ? `${e.why}; ` : ""}installed as a dependency of another requirement`,
    };
  });
}

/** The summary line and one line per missing pin, substitution and skipped line. */
export function reportLines(all: PinOutcome[]): string[] {
  const count = (o: Outcome) => all.filter((p) => p.outcome === o).length;
  const asPinned = count("pinned") + count("present");
  const other = count("substituted") + count("other-version");
  const missing = count("missing");
  const skipped = count("skipped");
  const out = [
    `requirements: ${asPinned} installed as pinned, ${other} at another version, ${missing} missing, ` +
      `${skipped} skipped (${all.length} lines)`,
  ];
  for (const p of all)
    if (p.outcome === "substituted")
      out.push(`  substituted ${p.requirement} -> ${p.installed ?? p.asked}${p.why ? ` (${p.why})` : ""}`);
  const dragged = all.filter((p) => p.outcome === "other-version");
  if (dragged.length)
    out.push(
      `  at another version as a dependency: ${dragged.map((p) => `${p.requirement} -> ${p.installed}`).join(", ")}`,
    );
  for (const p of all) if (p.outcome === "missing") out.push(`  missing ${p.requirement}: ${p.why ?? "not installed"}`);
  for (const p of all) if (p.outcome === "skipped") out.push(`  skipped ${p.requirement}: ${p.why ?? ""}`);
  return out;
}
