// Finds the Python interpreters on this machine and picks the newest one matching `pythonver`.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { PermanentError } from "../errors.ts";

export type Interpreter = { path: string; version: [number, number, number]; versionText: string };

let cached: Interpreter[] | undefined;

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

/** Every distinct interpreter that can make venvs, newest first. */
export function discoverInterpreters(env: Record<string, string | undefined> = process.env): Interpreter[] {
  if (cached) return cached;
  const seen = new Map<string, Interpreter>();
  for (const path of candidatePaths(env)) {
    if (!existsSync(path)) continue;
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      continue;
    }
    if (seen.has(real)) continue;
    const probe = spawnSync(path, ["-c", "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])"], {
      encoding: "utf8",
      timeout: 10_000,
    });
    const text = probe.stdout?.trim() ?? "";
    const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(text);
    if (probe.status !== 0 || !m) continue;
    seen.set(real, { path, version: [Number(m[1]), Number(m[2]), Number(m[3])], versionText: text });
  }
  cached = [...seen.values()].sort((a, b) => compareVersion(b.version, a.version));
  return cached;
}

function compareVersion(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** The newest interpreter whose version starts with `wanted` ("3", "3.11", "3.11.7"). */
export function chooseInterpreter(wanted: string, available = discoverInterpreters()): Interpreter {
  const parts = wanted.split(".").map(Number);
  const match = available.find((i) => parts.every((p, idx) => i.version[idx] === p));
  if (!match) {
    const have = available.map((i) => i.versionText).join(", ") || "none";
    throw new PermanentError(`experiment.pythonver: no python ${wanted} on this runner (available: ${have})`, { field: "experiment.pythonver" });
  }
  return match;
}
