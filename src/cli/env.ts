// `studio-runner env prepare | list | prune`: python environments in the runner's venv cache.
// prepare builds one ahead of time from a requirements file, exactly as an experiment with the same
// pins would have it built (same cache key, same sandbox and job user, same pin handling), so that
// experiment reuses it without running pip; prepared environments are never evicted for age.
// list shows what the cache holds; prune removes environments by hash, age or kind.

import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { defaultCacheDir, defaultQueueRoot, defaultWorkingDir } from "../config/options.ts";
import { formatBytes, formatDuration, parseDurationMs } from "../config/units.ts";
import { PermanentError } from "../errors.ts";
import { chooseInterpreter, findInterpreters } from "../env/interpreters.ts";
import { requestRequirementSet } from "../env/requirements.ts";
import { pinModeProblems, venvCacheFromSettings } from "../env/venv-settings.ts";
import type { VenvCache } from "../env/venv-cache.ts";
import { createLogger } from "../log/logger.ts";
import { prepareRunnerDirs, RUNNER_UMASK } from "../runner/private-dirs.ts";
import { resolveJobUser } from "../sandbox/job-user.ts";
import { cittyArgs } from "./flags.ts";
import { settingsOrExit } from "./run.ts";
import { ALL_RUN_OPTIONS, type RunSettings } from "./run-options.ts";
import { chooseSandbox } from "./sandbox-choice.ts";

/** Settings of `run` (so one config file serves both) plus the subcommand's own flags. */
function envSettings(rawArgs: string[], args: Record<string, unknown>, own: string[]): RunSettings {
  return settingsOrExit(rawArgs, args, { command: "studio-runner env", extraFlags: own, problems: pinModeProblems });
}

function cacheFor(settings: RunSettings, log: (m: string) => void): { venvs: VenvCache; cacheDir: string } {
  const cacheDir = settings["cache-dir"] ?? defaultCacheDir();
  return { venvs: venvCacheFromSettings(settings, cacheDir, { ...process.env }, log), cacheDir };
}

const prepare = defineCommand({
  meta: {
    name: "prepare",
    description:
      "Build a python environment into the cache ahead of time, as experiments with the same pins would have it",
  },
  args: {
    requirements: {
      type: "string",
      alias: "r",
      description: "requirements file (name==version lines, as `pip freeze` writes them)",
      required: true,
    },
    python: {
      type: "string",
      description: "python version, as an experiment's pythonver (3.11, 3.11.7)",
      default: "3",
    },
    ...cittyArgs(ALL_RUN_OPTIONS),
  },
  async run({ args, rawArgs }) {
    const settings = envSettings(rawArgs, args, ["requirements", "r", "python"]);
    process.umask(RUNNER_UMASK);
    const log = createLogger(settings["log-format"], settings.debug);
    const { venvs, cacheDir } = cacheFor(settings, (m) => log.info(m));
    const workingDir = settings["working-dir"] ?? defaultWorkingDir();
    const queueRoot = settings["queue-root"] ?? defaultQueueRoot();
    try {
      prepareRunnerDirs({ workingDir, cacheDir, queueRoot, jobUserTraverses: process.geteuid?.() === 0 }, log);
      const choice = await chooseSandbox(settings, { queueRoot, workingDir, cacheDir }, [], log);
      if ("exitCode" in choice) process.exit(choice.exitCode);
      venvs.options.isolation = {
        sandbox: choice.sandbox,
        jobUser: resolveJobUser(settings["job-user"]),
      };
      const file = String(args.requirements);
      const lines = readFileSync(file, "utf8").split("\n");
      const wanted = requestRequirementSet([{ field: "--requirements", lines }], settings["allow-pip-urls"]);
      const interpreter = chooseInterpreter(String(args.python), await findInterpreters());
      const venv = await venvs.acquire(
        {
          interpreter,
          requirements: wanted.lines,
          skipped: wanted.skipped,
          systemSitePackages: settings["venv-system-site-packages"],
        },
        (line) => process.stdout.write(`${line}\n`),
        { prepared: true },
      );
      venv.release();
      process.stdout.write(
        `prepared python environment ${venv.hash} (python ${interpreter.versionText}, ` +
          `${wanted.lines.length} requirements from ${file}) at ${venv.dir}\n`,
      );
      process.exit(0);
    } catch (err) {
      const why = err instanceof PermanentError ? err.message : (err as Error).message;
      process.stderr.write(`studio-runner env prepare: ${why}\n`);
      process.exit(1);
    }
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List the python environments in the cache" },
  args: { json: { type: "boolean", description: "print them as JSON" }, ...cittyArgs(ALL_RUN_OPTIONS) },
  async run({ args, rawArgs }) {
    const settings = envSettings(rawArgs, args, ["json"]);
    const { venvs } = cacheFor(settings, () => undefined);
    const all = await venvs.list();
    if (args.json) {
      const out = all.map(({ hash, dir, marker, usedMs, building }) => ({
        hash,
        dir,
        python: marker.pythonVersion ?? null,
        interpreter: marker.interpreter,
        requirements: marker.requirements.length,
        sizeBytes: marker.sizeBytes,
        builtAt: marker.builtAt,
        lastUsedAt: new Date(usedMs).toISOString(),
        prepared: !!marker.prepared,
        mode: marker.mode ?? null,
        missing: (marker.pins ?? []).filter((p) => p.outcome === "missing").map((p) => p.requirement),
        building,
      }));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    if (!all.length) {
      process.stdout.write(`no python environments in ${venvs.options.root}\n`);
      return;
    }
    const header = ["HASH", "PYTHON", "REQS", "MISSING", "SIZE", "BUILT", "UNUSED FOR", "KIND"];
    const rows = all.map(({ hash, marker, usedMs }) => [
      hash,
      marker.pythonVersion ?? "?",
      String(marker.requirements.length),
      String((marker.pins ?? []).filter((p) => p.outcome === "missing").length),
      formatBytes(marker.sizeBytes),
      marker.builtAt.slice(0, 19).replace("T", " "),
      formatDuration(Math.max(0, Date.now() - usedMs)),
      `${marker.prepared ? "prepared" : "cached"}` +
        `${marker.mode && marker.mode !== "default" ? ` (${marker.mode})` : ""}`,
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    process.stdout.write(
      `${[header, ...rows]
        .map((r) =>
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("  ")
            .trimEnd(),
        )
        .join("\n")}\n`,
    );
  },
});

const prune = defineCommand({
  meta: {
    name: "prune",
    description: "Remove python environments from the cache: the hashes given, or --prepared, --unused DURATION, --all",
  },
  args: {
    prepared: { type: "boolean", description: "every prepared environment" },
    unused: { type: "string", description: "every environment unused for this long (e.g. 72h)" },
    all: { type: "boolean", description: "every environment" },
    ...cittyArgs(ALL_RUN_OPTIONS),
  },
  async run({ args, rawArgs }) {
    const settings = envSettings(rawArgs, args, ["prepared", "unused", "all"]);
    const { venvs } = cacheFor(settings, () => undefined);
    const hashes = (args._ as string[] | undefined) ?? [];
    const unusedMs = args.unused === undefined ? undefined : parseDurationMs(String(args.unused));
    if (args.unused !== undefined && unusedMs === undefined) {
      process.stderr.write(
        `studio-runner env prune: --unused ${JSON.stringify(args.unused)} is not a duration (examples: 30m, 72h)\n`,
      );
      process.exit(2);
    }
    if (!hashes.length && !args.prepared && !args.all && unusedMs === undefined) {
      process.stderr.write("studio-runner env prune: say which: HASH..., --prepared, --unused DURATION or --all\n");
      process.exit(2);
    }
    const all = await venvs.list();
    const chosen = new Set(hashes);
    for (const e of all) {
      if (
        args.all ||
        (args.prepared && e.marker.prepared) ||
        (unusedMs !== undefined && Date.now() - e.usedMs > unusedMs)
      )
        chosen.add(e.hash);
    }
    let failed = 0;
    for (const hash of chosen) {
      const why = await venvs.remove(hash);
      if (why) {
        failed++;
        process.stderr.write(`not removed: ${why}\n`);
      } else process.stdout.write(`removed python environment ${hash}\n`);
    }
    if (!chosen.size) process.stdout.write("nothing to remove\n");
    process.exit(failed ? 1 : 0);
  },
});

export const envCommand = defineCommand({
  meta: {
    name: "env",
    description: "Python environments in the cache: prepare one ahead of time, list them, prune them",
  },
  subCommands: { prepare, list, prune },
});
