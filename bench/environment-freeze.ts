// Python environment from a real client's freeze (issue #15): the captured client message's
// experiment.pythonenv (104 `name==version` pins, test/fixtures/studioml-client-message.json) on
// this machine's offline wheelhouse, which holds the pinned version of only some of them. Cold
// (fresh sandbox, empty venv cache), the runner's time to a ready environment (the cache marker's
// buildMs) and its wall time from spawn to the experiment finishing, against the floor: by hand,
// `python -m venv` + `pip install -r` of exactly the pins that can be installed (those whose pinned
// version the indexes hold, as src/env/pip-probe.py finds them, plus those already in a fresh venv),
// with the same interpreter and pip configuration. The floor knows the answer in advance; the
// question is what the runner pays on top to find out which pins to leave out.
//
// The runner gets a cap (BENCH_FREEZE_CAP_MIN, default 20 minutes): past it, it is killed and its
// rows say "not finished in N min". The experiment's and the runner's logs are kept under
// .bench-tmp/freeze/, and the pip installs the runner started are counted from /proc.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { enqueue, FIXTURE, makeSandbox, REPO, type Sandbox } from "../test/helpers/e2e.ts";
import { pipEnv } from "./lib/bench-env.ts";
import { experimentLog, trivialMessages, type BenchMessage } from "./lib/experiments.ts";
import type { BenchOptions } from "./lib/options.ts";
import { row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";

export const FREEZE_RATIO_TARGET = 1.3;
export const FREEZE_ABSOLUTE_TARGET_S = 60;
/** Minutes the runner gets before it is killed (BENCH_FREEZE_CAP_MIN overrides). */
export const FREEZE_CAP_MIN_DEFAULT = 20;
const QUEUE = "local_bench";
const PROBE = join(REPO, "src", "env", "pip-probe.py");
const PROBE_SENTINEL = "STUDIO_RUNNER_PIP_PROBE ";
const KEEP_DIR = join(REPO, ".bench-tmp", "freeze");
const SCRIPT = 'print("freeze bench: the environment is ready", flush=True)\n';

type Marker = { interpreter: string; buildMs: number; failed: unknown[] };
type ProbePin = { line: string; status: string };

/** The client's freeze, as captured: the fixture's experiment.pythonenv. */
export function freezePins(): string[] {
  const message = JSON.parse(readFileSync(FIXTURE, "utf8")) as { experiment: { pythonenv: string[] } };
  return message.experiment.pythonenv;
}

function python311(): string {
  return (
    spawnSync("python3.11", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim() ||
    "python3"
  );
}

const childEnv = () => ({ ...process.env, ...pipEnv() });

/**
 * The pins pip can install here, asked of the repo's probe in a fresh venv of its own (untimed):
 * "exact" (the indexes hold the pinned version) and "present" (a fresh venv already has it, e.g.
 * pip and setuptools). Also how many pins had each status.
 */
function installablePins(
  interpreter: string,
  pins: string[],
  scratch: string,
): { installable: string[]; statuses: Record<string, number> } {
  const dir = join(scratch, "probe-venv");
  const venv = spawnSync(interpreter, ["-m", "venv", dir], { env: childEnv(), encoding: "utf8" });
  if (venv.status !== 0) throw new Error(`python -m venv failed: ${venv.stderr}`);
  const probe = spawnSync(join(dir, "bin", "python"), [PROBE, "index"], {
    env: childEnv(),
    encoding: "utf8",
    input: JSON.stringify({ requirements: pins }),
  });
  rmSync(dir, { recursive: true, force: true });
  const last = probe.stdout.trim().split("\n").pop() ?? "";
  if (probe.status !== 0 || !last.startsWith(PROBE_SENTINEL))
    throw new Error(`pip-probe.py failed (${probe.status}): ${probe.stderr.slice(-2000)}`);
  const result = JSON.parse(last.slice(PROBE_SENTINEL.length)) as { pins?: ProbePin[]; error?: string };
  if (!result.pins) throw new Error(`pip-probe.py: ${result.error ?? "no pins in its answer"}`);
  const statuses: Record<string, number> = {};
  for (const p of result.pins) statuses[p.status] = (statuses[p.status] ?? 0) + 1;
  return {
    installable: result.pins.filter((p) => p.status === "exact" || p.status === "present").map((p) => p.line),
    statuses,
  };
}

/** The floor: python -m venv + pip install -r of the installable pins, by hand; milliseconds. */
function byHand(interpreter: string, dir: string, requirementsFile: string): number {
  const env = childEnv();
  const t = performance.now();
  const venv = spawnSync(interpreter, ["-m", "venv", dir], { env, encoding: "utf8" });
  if (venv.status !== 0) throw new Error(`python -m venv failed: ${venv.stderr}`);
  const pip = spawnSync(join(dir, "bin", "pip"), ["install", "--no-input", "-r", requirementsFile], {
    env,
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
  });
  if (pip.status !== 0)
    throw new Error(`pip install -r of the installable pins failed: ${(pip.stderr || pip.stdout).slice(-2000)}`);
  return performance.now() - t;
}

/** One process from /proc: its parent and its start time (pids are reused; the pair is not). */
type Proc = { ppid: number; start: string };

function processTable(): Map<number, Proc> {
  const table = new Map<number, Proc>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      table.set(Number(name), { ppid: Number(fields[1]), start: fields[19] ?? "" });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

function isPipInstall(argv: string[]): boolean {
  const at = argv.findIndex((a, i) => /(^|\/)pip[\d.]*$/.test(a) || (a === "pip" && argv[i - 1] === "-m"));
  return at >= 0 && argv.slice(at + 1).includes("install");
}

/**
 * Counts the `pip install` processes among the runner's descendants (through the sandbox's
 * bwrap stages, which the host's /proc sees), sampled every 250 ms; a pip that pip itself started
 * (build dependencies) is not counted again.
 */
class PipWatcher {
  private readonly seen = new Set<string>();
  private last = new Map<number, Proc>();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(private readonly root: number) {
    this.timer = setInterval(() => this.sample(), 250);
  }

  /** The runner's descendants now, with their start times. */
  descendants(table = processTable()): Map<number, Proc> {
    const children = new Map<number, number[]>();
    for (const [pid, p] of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
    const out = new Map<number, Proc>();
    const stack = [...(children.get(this.root) ?? [])];
    while (stack.length) {
      const pid = stack.pop()!;
      out.set(pid, table.get(pid)!);
      stack.push(...(children.get(pid) ?? []));
    }
    return out;
  }

  sample(): void {
    const table = processTable();
    const mine = this.descendants(table);
    this.last = mine;
    const pip = new Set([...mine.keys()].filter((pid) => isPipInstall(argvOf(pid))));
    for (const pid of pip) {
      let up = mine.get(pid)!.ppid;
      let nested = false;
      while (mine.has(up)) {
        if (pip.has(up)) nested = true;
        up = mine.get(up)!.ppid;
      }
      if (!nested) this.seen.add(`${pid}:${mine.get(pid)!.start}`);
    }
  }

  get count(): number {
    return this.seen.size;
  }

  /** Stops sampling; the descendants of the last sample (to kill any left behind). */
  stop(): Map<number, Proc> {
    clearInterval(this.timer);
    return this.last;
  }
}

/** The experiment's log: output.tar once it finished, else the live file in the working dir. */
function liveOrFinalLog(sb: Sandbox, m: BenchMessage): string {
  const final = experimentLog(m);
  if (final) return final;
  const root = join(sb.workDir, "studio-runner", m.key);
  if (!existsSync(root)) return "";
  for (const attempt of readdirSync(root)) {
    const file = join(root, attempt, "output", "output");
    if (existsSync(file)) return readFileSync(file, "utf8");
  }
  return "";
}

function readMarker(cacheDir: string): Marker | undefined {
  const root = join(cacheDir, "venvs");
  const hash = existsSync(root) ? readdirSync(root).find((n) => !n.endsWith(".lock")) : undefined;
  const file = hash && join(root, hash, ".studio-runner-venv.json");
  if (!file || !existsSync(file)) return undefined;
  const text = readFileSync(file, "utf8");
  return text.trim() ? (JSON.parse(text) as Marker) : undefined;
}

type RunnerResult = {
  /** The experiment finished (successfully or not) before the cap. */
  finished: boolean;
  /** It was killed at the cap. */
  capped?: boolean;
  outcome: string;
  buildMs?: number;
  wallMs?: number;
  interpreter?: string;
  leftOut?: number;
  pipInstalls: number;
  /** The old builder's "pip could not install X" lines: one failed pip round each. */
  couldNotInstall: number;
};

async function runnerCold(options: BenchOptions, pins: string[], capMs: number, label: string): Promise<RunnerResult> {
  const sb = await makeSandbox("bench-freeze");
  try {
    const [m] = trivialMessages(sb.storageRoot, 1, { requirements: pins, script: SCRIPT });
    const runner = new BenchRunner(sb, ["--max-cores", "2"]);
    const watcher = new PipWatcher(runner.pid);
    const progress = setInterval(() => {
      const min = ((Date.now() - runner.spawnedMs) / 60000).toFixed(0);
      const rounds = (liveOrFinalLog(sb, m!).match(/pip could not install/g) ?? []).length;
      options.say(
        `freeze: runner at ${min} min, ${watcher.count} pip install(s) so far, ${rounds} "pip could not install" line(s) in the log`,
      );
    }, 60_000);
    let result: RunnerResult;
    try {
      enqueue(sb.queueRoot, QUEUE, m!.message);
      const done = await runner
        .waitFor(new RegExp(`experiment ${m!.key} (finished|rejected|checkpointed)`), capMs)
        .catch((err: Error) => err);
      watcher.sample();
      const log = liveOrFinalLog(sb, m!);
      const couldNotInstall = (log.match(/pip could not install/g) ?? []).length;
      if (done instanceof Error) {
        const capped = Date.now() - runner.spawnedMs >= capMs - 1000;
        result = {
          finished: false,
          capped,
          outcome: capped
            ? `not finished in ${capMs / 60000} min (killed)`
            : `runner failed: ${done.message.split("\n")[0]}`,
          pipInstalls: watcher.count,
          couldNotInstall,
        };
      } else {
        const marker = readMarker(sb.cacheDir);
        result = {
          finished: true,
          outcome: done.message.replace(`experiment ${m!.key} `, ""),
          buildMs: marker?.buildMs,
          wallMs: done.receivedMs - runner.spawnedMs,
          interpreter: marker?.interpreter,
          leftOut: marker?.failed.length,
          pipInstalls: watcher.count,
          couldNotInstall,
        };
      }
      mkdirSync(KEEP_DIR, { recursive: true });
      writeFileSync(join(KEEP_DIR, `${label}-experiment.log`), log);
      writeFileSync(join(KEEP_DIR, `${label}-runner.log`), runner.text() + "\n");
    } finally {
      clearInterval(progress);
      const left = watcher.stop();
      await runner.stop();
      // bwrap's --die-with-parent ends a sandboxed build with the runner; anything else it left
      // running (same pid and start time) is ended here, so it cannot slow the next measurement.
      const now = processTable();
      for (const [pid, p] of left)
        if (now.get(pid)?.start === p.start)
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
    }
    return result;
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
}

export async function runFreeze(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 1 : 3;
  const capMin = Number(process.env.BENCH_FREEZE_CAP_MIN ?? FREEZE_CAP_MIN_DEFAULT);
  if (!(capMin > 0))
    throw new Error(`BENCH_FREEZE_CAP_MIN=${process.env.BENCH_FREEZE_CAP_MIN}: not a number of minutes`);
  const capMs = capMin * 60_000;
  const pins = freezePins();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");

  // Which pins can be installed here (untimed, a venv of its own), then one untimed build by hand,
  // so that neither side pays alone for reading the wheelhouse and the interpreter from a cold
  // disk; then the two alternate which goes first.
  const scratch = await makeSandbox("bench-freeze-floor");
  try {
    const requirementsFile = join(scratch.dir, "installable.txt");
    const { installable, statuses } = installablePins(python311(), pins, scratch.dir);
    writeFileSync(requirementsFile, installable.join("\n") + "\n");
    options.say(
      `freeze: ${installable.length} of ${pins.length} pins can be installed here (${Object.entries(statuses)
        .map(([s, n]) => `${n} ${s}`)
        .join(", ")})`,
    );
    options.say("freeze: untimed warm-up build by hand");
    byHand(python311(), join(scratch.dir, "warm-up"), requirementsFile);
    rmSync(join(scratch.dir, "warm-up"), { recursive: true, force: true });

    const runnerS: number[] = [];
    const wallS: number[] = [];
    const floorS: number[] = [];
    const ratios: number[] = [];
    const notes: string[] = [];
    let unfinished = 0;
    let failed = 0;
    for (let i = 0; i < runs; i++) {
      let result: RunnerResult | undefined;
      let handMs = NaN;
      const runnerSide = async () => {
        options.say(`freeze: runner cold build (cap ${capMin} min)`);
        result = await runnerCold(options, pins, capMs, `${stamp}-run${i + 1}`);
        options.say(
          `freeze: runner ${result.outcome}${result.buildMs !== undefined ? `, buildMs ${result.buildMs}` : ""}`,
        );
      };
      const handSide = () => {
        const dir = join(scratch.dir, "by-hand-venv");
        // The interpreter the runner picked (or will pick: the newest 3.11 it finds, as in the message).
        handMs = byHand(result?.interpreter || python311(), dir, requirementsFile);
        rmSync(dir, { recursive: true, force: true });
        options.say(`freeze: by hand ${(handMs / 1000).toFixed(1)} s`);
      };
      options.say(`freeze: run ${i + 1}/${runs}, ${i % 2 ? "by hand first" : "runner first"}`);
      if (i % 2 === 0) {
        await runnerSide();
        handSide();
      } else {
        handSide();
        await runnerSide();
      }
      const r = result!;
      floorS.push(handMs / 1000);
      if (r.finished && r.buildMs !== undefined) {
        runnerS.push(r.buildMs / 1000);
        wallS.push(r.wallMs! / 1000);
        ratios.push(r.buildMs / handMs);
      } else if (r.capped) {
        // The cap is a lower bound of the true figure: counted only where it already misses the
        // target (then a median with it is on the same side of the target as the true one), so the
        // row reads "no" rather than "–"; below the target nothing is known and it is left out.
        unfinished++;
        if (capMs / 1000 > FREEZE_ABSOLUTE_TARGET_S) {
          runnerS.push(capMs / 1000);
          wallS.push(capMs / 1000);
        }
        if (capMs / handMs > FREEZE_RATIO_TARGET) ratios.push(capMs / handMs);
      } else failed++;
      notes.push(
        `run ${i + 1}: ${r.outcome}` +
          (r.buildMs !== undefined
            ? `; environment ready in ${(r.buildMs / 1000).toFixed(1)} s with ${r.leftOut ?? "?"} pin(s) left out`
            : r.finished
              ? "; no environment marker"
              : "") +
          `; ${r.pipInstalls} pip install process(es) seen; ${r.couldNotInstall} "pip could not install" line(s) in the experiment's log` +
          (r.capped ? ` (ratio > ${(capMs / handMs).toFixed(1)} ×)` : ""),
      );
    }

    const plural = runs > 1 ? "s" : "";
    const notDone =
      (unfinished
        ? ` — not finished in ${capMin} min (${unfinished} of ${runs} run${plural}, counted as ${capMin} min where that already misses the target: a lower bound)`
        : "") + (failed ? ` — no ready environment (${failed} of ${runs} run${plural}, see the note)` : "");
    const statusText = Object.entries(statuses)
      .map(([s, n]) => `${n} ${s}`)
      .join(", ");
    return [
      row(
        "freeze",
        `runner: cold build of the ${pins.length}-pin freeze to a ready environment (buildMs)${notDone}`,
        "s",
        runnerS,
        { value: FREEZE_ABSOLUTE_TARGET_S, direction: "lower" },
        `${notes.join(". ")}. Logs in ${KEEP_DIR}/${stamp}-run*.log`,
      ),
      row(
        "freeze",
        `by hand: venv + pip install -r of the ${installable.length} installable pins (floor)`,
        "s",
        floorS,
        undefined,
        `pip-probe.py on the ${pins.length} pins: ${statusText}; installable = exact + present`,
      ),
      row("freeze", `runner ÷ floor${notDone}`, "×", ratios, { value: FREEZE_RATIO_TARGET, direction: "lower" }),
      row("freeze", `runner: spawn → experiment finished (wall)${notDone}`, "s", wallS),
    ];
  } finally {
    rmSync(scratch.dir, { recursive: true, force: true });
  }
}
