// Installs an environment's requirement lines in one pass: one probe of the indexes for every
// line (pin-probe.ts), one decision per line (pin-plan.ts), one `pip install -r` of what can be
// installed. Only when pip still fails (a dependency missing from the index, a conflict between
// versions) does another round run, with the lines pip blamed loosened or left out, so every
// round changes at least one line and there are at most a few. Then one more probe says what is
// installed, and the log gets one summary line plus one line per missing, substituted or skipped
// requirement. --pip-strict refuses before installing anything when a pin cannot be met exactly.

import { writeFile } from "node:fs/promises";
import { PermanentError } from "../errors.ts";
import { blameFromPipOutput } from "./pip-failure.ts";
import {
  applyBlame,
  installLines,
  outcomes,
  planPins,
  reportLines,
  unmet,
  type PinMode,
  type PinOutcome,
  type PlanEntry,
} from "./pin-plan.ts";
import { probeIndex, probeInput, probeInstalled, type IndexAnswer, type RunStep } from "./pin-probe.ts";
import { failedRequirementFromPipOutput, matchRequirementLine, pipErrorLines } from "./requirements.ts";

/** Rounds of pip install after the first before the build gives up (each must change a line). */
export const MAX_EXTRA_ROUNDS = 12;

export type InstallFiles = {
  /** Where pip's requirement list is written (the runner's, read-only to the build). */
  requirements: string;
  /** Where the probe's input is written. */
  probeInput: string;
  /** The probe script (pip-probe.py), readable by the build. */
  probeScript: string;
};

/** Where the time went: asking the indexes, pip's rounds, reading what was installed. */
export type InstallTimes = { indexesMs: number; pipMs: number; checkMs: number };

export type InstallResult = {
  pins: PinOutcome[];
  distributions: Record<string, string>;
  rounds: number;
  pip?: string;
  times: InstallTimes;
};

export type SkippedLine = { requirement: string; why: string };

export async function installPins(o: {
  python: string;
  lines: string[];
  /** Lines the runner skipped before asking pip (client tooling, editable lines). */
  skipped: SkippedLine[];
  mode: PinMode;
  run: RunStep;
  files: InstallFiles;
  out: (line: string) => void;
}): Promise<InstallResult> {
  const { python, lines, mode, run, files, out } = o;
  const say = (line: string) => out(`[studio-runner] ${line}`);
  let entries: PlanEntry[];
  let pipVersion: string | undefined;
  let probed = true;
  const times: InstallTimes = { indexesMs: 0, pipMs: 0, checkMs: 0 };
  if (lines.length === 0) entries = [];
  else {
    await writeFile(files.probeInput, probeInput(lines));
    const started = performance.now();
    const index = await probeIndex(run, python, files.probeScript, files.probeInput, lines);
    times.indexesMs = performance.now() - started;
    if ("error" in index) {
      // An interpreter whose pip the probe cannot drive: install the list as it is, rounds as needed.
      probed = false;
      say(`could not ask the indexes ahead (${index.error}); installing the list as it is`);
      entries = planPins(
        lines.map((line): IndexAnswer => ({ line, status: "exact", versions: [] })),
        mode,
      );
    } else {
      pipVersion = index.pip;
      entries = planPins(index.pins, mode);
      const n = (s: string) => index.pins.filter((p) => p.status === s).length;
      say(
        `asked the indexes about ${lines.length} requirement(s) ` +
          `in ${((performance.now() - started) / 1000).toFixed(1)}s (pip ${index.pip ?? "?"}): ` +
          `${n("exact")} available as pinned, ${n("present")} already present, ` +
          `${n("other")} only at other versions, ${n("absent")} absent, ` +
          `${n("skip") + n("invalid") + n("error")} not installable here`,
      );
    }
  }
  const skippedUp: PinOutcome[] = o.skipped.map((s) => ({
    requirement: s.requirement,
    outcome: "skipped",
    why: s.why,
  }));

  if (mode === "strict") {
    const bad = unmet(entries);
    if (bad.length) {
      throw new PermanentError(
        `pip could not install ${bad.length} requirement(s) as pinned (--pip-strict):\n` +
          `${bad.map((e) => `  ${e.requirement}: ${e.why ?? "cannot be met"}`).join("\n")}`,
        { phase: "environment" },
      );
    }
  }

  let rounds = 0;
  for (;;) {
    const asked = installLines(entries);
    if (!asked.length) break;
    rounds++;
    await writeFile(files.requirements, `${asked.join("\n")}\n`);
    const pipStarted = performance.now();
    const result = await run([python, "-m", "pip", "install", "--no-input", "-r", files.requirements]);
    times.pipMs += performance.now() - pipStarted;
    if (result.code === 0) break;
    const errors = pipErrorLines(result.output);
    if (mode === "strict")
      throw new PermanentError(`pip could not install the requirements (--pip-strict):\n${errors}`, {
        phase: "environment",
      });
    let blames = blameFromPipOutput(result.output, asked);
    if (!blames.length) {
      // Older wording: the one requirement pip names.
      const named = failedRequirementFromPipOutput(result.output);
      const line = named ? matchRequirementLine(asked, named) : undefined;
      if (line)
        blames = [{ index: asked.indexOf(line), kind: "not-found", detail: errors.split("\n")[0] ?? "pip failed" }];
    }
    const changes = blames.length ? applyBlame(entries, asked, blames, mode) : [];
    if (!changes.length)
      throw new PermanentError(`pip install failed and named no requirement this runner can leave out:\n${errors}`, {
        phase: "environment",
      });
    for (const c of changes) say(`pip round ${rounds}: ${c}`);
    // Without the probe pip names one missing pin per round: as many rounds as lines, as before.
    if (rounds > (probed ? MAX_EXTRA_ROUNDS : lines.length))
      throw new PermanentError(
        `pip install still failed after ${rounds} rounds, each leaving out or loosening what pip blamed:\n${errors}`,
        { phase: "environment" },
      );
  }

  let distributions: Record<string, string> = {};
  let installed;
  if (lines.length) {
    const checkStarted = performance.now();
    const now = await probeInstalled(run, python, files.probeScript, files.probeInput, lines);
    times.checkMs = performance.now() - checkStarted;
    if ("error" in now)
      say(`could not read what was installed (${now.error}); the summary shows what pip was asked for`);
    else {
      installed = now;
      distributions = now.distributions;
    }
  }
  const pins = [...outcomes(entries, installed), ...skippedUp];
  if (!probed && !installed) for (const p of pins) if (p.outcome === "pinned") p.why = "not checked";
  for (const line of reportLines(pins)) say(line);
  return { pins, distributions, rounds, pip: pipVersion, times };
}
