// Finds the Python interpreters on this machine and picks the newest one matching `pythonver`.

import { execFile } from "node:child_process";
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { PermanentError } from "../errors.ts";

export type Interpreter = { path: string; version: [number, number, number]; versionText: string };

/** The one search of this process (interpreters are found once). */
let finding: Promise<Interpreter[]> | undefined;

/** What each candidate is asked: its version, and whether it can make venvs with pip. */
const PROBE = ["-c", "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])"];
const PROBE_TIMEOUT_MS = 10_000;
/** Candidates probed at once by findInterpreters (the machine may have few cores). */
const PROBE_CONCURRENCY = 2;

function candidatePaths(env: Record<string, string | undefined>): string[] {
  const out: string[] = [];
  const pyenvRoot = env.PYENV_ROOT ?? join(homedir(), ".pyenv");
  try {
    for (const v of readdirSync(join(pyenvRoot, "versions"))) out.push(join(pyenvRoot, "versions", v, "bin", "python"));
  } catch {
    // no pyenv
  }
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir || dir.includes(`${"/"}shims`)) continue; // pyenv shims only run the active version
    try {
      for (const name of readdirSync(dir)) if (/^python(\d+(\.\d+)?)?$/.test(name)) out.push(join(dir, name));
    } catch {
      // unreadable PATH entry
    }
  }
  return out;
}

/** Candidate paths, one per real file. */
function distinctCandidates(env: Record<string, string | undefined>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const path of candidatePaths(env)) {
    if (!existsSync(path)) continue;
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    out.push(path);
  }
  return out;
}

function parseProbe(path: string, code: number | null, stdout: string | undefined): Interpreter | undefined {
  const text = stdout?.trim() ?? "";
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (code !== 0 || !m) return undefined;
  return { path, version: [Number(m[1]), Number(m[2]), Number(m[3])], versionText: text };
}

const newestFirst = (list: Array<Interpreter | undefined>) =>
  list.filter((i): i is Interpreter => i !== undefined).sort((a, b) => compareVersion(b.version, a.version));

/**
 * Every distinct interpreter that can make venvs, newest first. The candidates are probed a few
 * at a time in the background, so the runner polls its queues while they start; found once per
 * process.
 */
export function findInterpreters(env: Record<string, string | undefined> = process.env): Promise<Interpreter[]> {
  finding ??= (async () => {
    const paths = distinctCandidates(env);
    const found: Array<Interpreter | undefined> = new Array(paths.length);
    let next = 0;
    const worker = async () => {
      while (next < paths.length) {
        const i = next++;
        const path = paths[i]!;
        found[i] = await new Promise<Interpreter | undefined>((resolve) => {
          execFile(path, PROBE, { encoding: "utf8", timeout: PROBE_TIMEOUT_MS }, (err, stdout) => {
            resolve(parseProbe(path, err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout));
          });
        });
      }
    };
    await Promise.all(Array.from({ length: PROBE_CONCURRENCY }, worker));
    return newestFirst(found);
  })();
  return finding;
}

function compareVersion(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** The newest interpreter whose version starts with `wanted` ("3", "3.11", "3.11.7"). */
export function chooseInterpreter(wanted: string, available: Interpreter[]): Interpreter {
  const parts = wanted.split(".").map(Number);
  const match = available.find((i) => parts.every((p, idx) => i.version[idx] === p));
  if (!match) {
    const have = available.map((i) => i.versionText).join(", ") || "none";
    throw new PermanentError(`experiment.pythonver: no python ${wanted} on this runner (available: ${have})`, {
      field: "experiment.pythonver",
    });
  }
  return match;
}
