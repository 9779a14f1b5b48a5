// Runs pip-probe.py (embedded in the binary) with an environment's own interpreter and reads its
// answer: per requirement line, what the configured indexes offer (or, after the install, what
// is installed). The script's output is read defensively: only its sentinel line, only the
// fields and types expected, anything else is treated as "no answer".

import PROBE_SCRIPT from "./pip-probe.py" with { type: "text" };

export { PROBE_SCRIPT };

const SENTINEL = "STUDIO_RUNNER_PIP_PROBE ";

export type ProbeStatus = "exact" | "present" | "other" | "absent" | "skip" | "invalid" | "error";

/** What the indexes hold for one requirement line. */
export type IndexAnswer = {
  line: string;
  name?: string;
  status: ProbeStatus;
  /** Versions the indexes offer (not yanked, installable on this interpreter and platform). */
  versions: string[];
  /** The version --pip-relax-pins would install (status "other"). */
  nearest?: string;
  /** The version already in the environment (status "present"). */
  installed?: string;
  why?: string;
};

/** What is installed for one requirement line after the build. */
export type InstalledAnswer = { line: string; name?: string; installed?: string; satisfied: boolean };

export type IndexProbe = { python?: string; pip?: string; pins: IndexAnswer[] };
export type InstalledProbe = { pins: InstalledAnswer[]; distributions: Record<string, string> };

export type RunStep = (command: string[]) => Promise<{ code: number; output: string }>;

/** Probe input: the script reads this JSON on stdin (given as a file so the launcher needs no pipe). */
export function probeInput(lines: string[]): string {
  return JSON.stringify({ requirements: lines });
}

/** The JSON object on the script's sentinel line, or a reason why there is none. */
export function readProbeOutput(output: string): { value: Record<string, unknown> } | { error: string } {
  const line = output
    .split("\n")
    .reverse()
    .find((l) => l.startsWith(SENTINEL));
  if (!line)
    return { error: `no answer (${output.trim().split("\n").slice(-3).join(" | ").slice(0, 500) || "no output"})` };
  try {
    const value = JSON.parse(line.slice(SENTINEL.length)) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return { error: "its answer is not an object" };
    const error = (value as Record<string, unknown>).error;
    if (typeof error === "string") return { error };
    return { value: value as Record<string, unknown> };
  } catch (err) {
    return { error: `its answer is not JSON (${(err as Error).message})` };
  }
}

const STATUSES = new Set<ProbeStatus>(["exact", "present", "other", "absent", "skip", "invalid", "error"]);
const str = (v: unknown) => (typeof v === "string" ? v : undefined);

/** The index answers, in the order of `lines`; undefined when the answer does not cover them all. */
export function parseIndexProbe(value: Record<string, unknown>, lines: string[]): IndexProbe | undefined {
  const pins = Array.isArray(value.pins) ? value.pins : [];
  if (pins.length !== lines.length) return undefined;
  const out: IndexAnswer[] = [];
  for (let i = 0; i < lines.length; i++) {
    const p = pins[i] as Record<string, unknown> | null;
    if (!p || typeof p !== "object" || p.line !== lines[i]) return undefined;
    const status = str(p.status) as ProbeStatus | undefined;
    if (!status || !STATUSES.has(status)) return undefined;
    const versions = Array.isArray(p.versions) ? p.versions.filter((v): v is string => typeof v === "string") : [];
    out.push({
      line: lines[i]!,
      name: str(p.name),
      status,
      versions,
      nearest: str(p.nearest),
      installed: str(p.installed),
      why: str(p.why),
    });
  }
  return { python: str(value.python), pip: str(value.pip), pins: out };
}

export function parseInstalledProbe(value: Record<string, unknown>, lines: string[]): InstalledProbe | undefined {
  const pins = Array.isArray(value.pins) ? value.pins : [];
  if (pins.length !== lines.length) return undefined;
  const out: InstalledAnswer[] = [];
  for (let i = 0; i < lines.length; i++) {
    const p = pins[i] as Record<string, unknown> | null;
    if (!p || typeof p !== "object" || p.line !== lines[i]) return undefined;
    out.push({ line: lines[i]!, name: str(p.name), installed: str(p.installed), satisfied: p.satisfied === true });
  }
  const distributions: Record<string, string> = {};
  const d = value.distributions;
  if (d && typeof d === "object" && !Array.isArray(d)) {
    for (const [k, v] of Object.entries(d as Record<string, unknown>)) if (typeof v === "string") distributions[k] = v;
  }
  return { pins: out, distributions };
}

/**
 * Runs the probe in `mode` with `python` (the new environment's interpreter, isolated mode: no
 * PYTHON* variables, no user site, not the script's directory on sys.path) and parses its answer.
 * `script` and `inputFile` are files the runner wrote where the build can read them; `run` launches
 * the command the way the build's other steps are launched (sandboxed, as the job user).
 */
async function ask<T>(
  mode: "index" | "installed",
  parse: (value: Record<string, unknown>, lines: string[]) => T | undefined,
  run: RunStep,
  python: string,
  script: string,
  inputFile: string,
  lines: string[],
): Promise<T | { error: string }> {
  const result = await run([python, "-I", script, mode, inputFile]);
  const read = readProbeOutput(result.output);
  if ("error" in read) return { error: `exit ${result.code}: ${read.error}` };
  return parse(read.value, lines) ?? { error: "its answer does not match the requirement lines" };
}

/** What the indexes offer for each line. */
export const probeIndex = (run: RunStep, python: string, script: string, inputFile: string, lines: string[]) =>
  ask("index", parseIndexProbe, run, python, script, inputFile, lines);

/** What is installed for each line, and every distribution. */
export const probeInstalled = (run: RunStep, python: string, script: string, inputFile: string, lines: string[]) =>
  ask("installed", parseInstalledProbe, run, python, script, inputFile, lines);
