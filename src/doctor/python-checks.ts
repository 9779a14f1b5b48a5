// `doctor`'s Python checks: the interpreters the runner would find, a throwaway venv made and its
// pip run exactly as environment builds launch them (fixed environment, the operator's pip
// settings), and every package source pip would use (index, extra indexes, find-links) reachable.

import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildEnv } from "../env/build-sandbox.ts";
import { findInterpreters, type Interpreter } from "../env/interpreters.ts";
import { runCommand } from "../exec/command.ts";
import { type CheckResult, fail, ok, warn, within } from "./check-result.ts";

const VENV_TIMEOUT_MS = 120_000;
const PIP_TIMEOUT_MS = 60_000;
const PYPI = "https://pypi.org/simple";

export async function interpreterCheck(
  env: Record<string, string | undefined>,
): Promise<{ result: CheckResult; interpreters: Interpreter[] }> {
  const interpreters = await findInterpreters(env);
  if (!interpreters.length)
    return {
      interpreters,
      result: fail(
        "python",
        "no Python interpreter that can make venvs (python3 with the venv and ensurepip modules) on the PATH " +
          "or under $PYENV_ROOT/versions",
        "install Python 3 with venv (Debian/Ubuntu: apt-get install python3 python3-venv), or put one on the " +
          "runner's PATH (systemd: Environment=PATH=… in a drop-in)",
      ),
    };
  const list = interpreters.map((i) => `${i.versionText} (${i.path})`).join(", ");
  return { interpreters, result: ok("python", list) };
}

/**
 * A venv made with the newest interpreter in a scratch directory, `pip --version` and
 * `pip config list` run in it with a build's environment; then each package source checked.
 */
export async function venvAndPipChecks(
  interpreters: Interpreter[],
  runnerEnv: Record<string, string | undefined>,
  sourceEnv: Record<string, string>,
  scratchParent: string | undefined,
  networkTimeoutMs: number,
): Promise<CheckResult[]> {
  if (!interpreters.length)
    return [warn("venv and pip", "not checked: no Python interpreter"), warn("pip sources", "not checked: no Python")];
  const python = interpreters[0]!;
  let scratch: string;
  try {
    scratch = mkdtempSync(join(scratchParent ?? tmpdir(), "studio-runner-doctor-"));
  } catch {
    scratch = mkdtempSync(join(tmpdir(), "studio-runner-doctor-"));
  }
  try {
    const env = buildEnv({ ...runnerEnv, ...sourceEnv }, scratch);
    const venv = join(scratch, "venv");
    const made = await within(
      runCommand([python.path, "-m", "venv", venv], { env }),
      VENV_TIMEOUT_MS,
      "python -m venv",
    );
    if (made.code !== 0)
      return [
        fail(
          "venv and pip",
          `${python.path} -m venv failed: ${lastLines(made.output)}`,
          "install the venv module for this Python (Debian/Ubuntu: apt-get install python3-venv)",
        ),
      ];
    const pip = [join(venv, "bin", "python"), "-m", "pip"];
    const version = await within(runCommand([...pip, "--version"], { env }), PIP_TIMEOUT_MS, "pip --version");
    if (version.code !== 0)
      return [
        fail(
          "venv and pip",
          `pip in a new venv does not run: ${lastLines(version.output)}`,
          "the interpreter's ensurepip is broken: reinstall python3-venv",
        ),
      ];
    const results = [
      ok("venv and pip", `venv made with ${python.versionText}; ${version.output.trim().split(" from ")[0]}`),
    ];
    const config = await within(runCommand([...pip, "config", "list"], { env }), PIP_TIMEOUT_MS, "pip config list");
    const sources = pipSources(config.code === 0 ? config.output : "");
    results.push(...(await sourceChecks(sources, networkTimeoutMs)));
    return results;
  } catch (err) {
    return [fail("venv and pip", (err as Error).message)];
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const lastLines = (text: string) => text.trim().split("\n").slice(-3).join(" | ") || "(no output)";

export type PipSources = { index?: string; extraIndexes: string[]; findLinks: string[]; noIndex: boolean };

/** pip's effective sources from `pip config list` (environment over files; install. over global.). */
export function pipSources(configList: string): PipSources {
  const values = new Map<string, { rank: number; value: string }>();
  for (const line of configList.split("\n")) {
    const m = /^([^.=]*)\.([a-z-]+)='(.*)'$/.exec(line.trim());
    if (!m) continue;
    const rank = m[1] === ":env:" ? 3 : m[1] === "install" ? 2 : m[1] === "global" ? 1 : 0;
    if (!rank) continue;
    const prior = values.get(m[2]!);
    if (!prior || prior.rank <= rank) values.set(m[2]!, { rank, value: m[3]! });
  }
  const words = (key: string) => (values.get(key)?.value ?? "").split(/\s+/).filter(Boolean);
  const noIndex = /^(1|true|yes|on)$/i.test(values.get("no-index")?.value ?? "");
  return {
    index: values.get("index-url")?.value,
    extraIndexes: words("extra-index-url"),
    findLinks: words("find-links"),
    noIndex,
  };
}

async function sourceChecks(s: PipSources, timeoutMs: number): Promise<CheckResult[]> {
  const entries: Array<{ kind: string; where: string }> = [];
  if (!s.noIndex) {
    entries.push({ kind: "index", where: s.index ?? PYPI });
    for (const e of s.extraIndexes) entries.push({ kind: "extra index", where: e });
  }
  for (const f of s.findLinks) entries.push({ kind: "find-links", where: f });
  if (!entries.length)
    return [
      fail(
        "pip sources",
        "--pip-no-index and no --pip-find-links: pip has nowhere to install from",
        "give --pip-find-links DIR (a wheelhouse) or drop --pip-no-index",
      ),
    ];
  const seen = await Promise.all(
    entries.map(async (e) => ({ ...e, problem: await sourceProblem(e.where, timeoutMs) })),
  );
  const usable = seen.some((e) => !e.problem);
  return seen.map((e) => {
    const name = `pip ${e.kind}`;
    if (!e.problem) return ok(name, e.where);
    const fix =
      "fix the URL or path (--pip-index-url, --pip-extra-index-url, --pip-find-links), or on an air-gapped " +
      "machine serve a wheelhouse with --pip-find-links DIR --pip-no-index";
    return usable
      ? warn(name, `${e.where}: ${e.problem} (pip will try it on every build)`, fix)
      : fail(name, `${e.where}: ${e.problem}; no package source works`, fix);
  });
}

/** Why pip could not read this index or find-links location, or undefined when it can. */
async function sourceProblem(where: string, timeoutMs: number): Promise<string | undefined> {
  if (/^https?:\/\//i.test(where)) {
    try {
      const r = await fetch(where, { signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
      await r.body?.cancel();
      return r.status < 400 ? undefined : `answered ${r.status} ${r.statusText}`;
    } catch (err) {
      return `unreachable: ${(err as Error).message}`;
    }
  }
  const path = where.startsWith("file://") ? decodeURIComponent(where.slice("file://".length)) : where;
  try {
    const st = statSync(path);
    if (!st.isDirectory()) return st.isFile() ? undefined : "not a directory";
    return readdirSync(path).length ? undefined : "an empty directory";
  } catch (err) {
    return `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}
