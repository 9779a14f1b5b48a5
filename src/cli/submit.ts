// `studio-runner submit`: queue an experiment without the Python studioml client. Its settings are
// an option table (submit-options.ts) read by run's loader; --help is made from the same table.

import { defineCommand } from "citty";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, loadSettings } from "../config/load.ts";
import { defaultQueueRoot } from "../config/options.ts";
import { parseDurationMs, parseSizeBytes } from "../config/units.ts";
import { errorMessage } from "../errors.ts";
import { RUNNER_UMASK } from "../runner/private-dirs.ts";
import { buildRequest } from "../submit/build-request.ts";
import { SUBMIT_OPTIONS, type SubmitSettings } from "../submit/submit-options.ts";
import { follow } from "../submit/follow.ts";
import { submitQueue, submitQueueProblems } from "../submit/submit-queue.ts";
import { storageProblems, submitStorage } from "../submit/submit-storage.ts";
import { uploadWorkspace } from "../submit/workspace-upload.ts";
import { cittyArgs } from "./flags.ts";

/** Flags that take a value (the next argument unless written --name=value). */
const VALUE_FLAGS = new Set<string>(SUBMIT_OPTIONS.filter((o) => o.type !== "boolean").map((o) => o.name));
const BOOLEAN_FLAGS = new Set<string>(SUBMIT_OPTIONS.filter((o) => o.type === "boolean").map((o) => o.name));

/** Split argv into our flags and the script with its own arguments (the first positional onward). */
export function splitSubmitArgv(raw: string[]): { ours: string[]; script?: string; scriptArgs: string[] } {
  const ours: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const a = raw[i]!;
    if (a === "--") return { ours, script: raw[i + 1], scriptArgs: raw.slice(i + 2) };
    if (a.startsWith("-")) {
      ours.push(a);
      const name = a.replace(/^--?/, "").split("=")[0]!;
      if (!a.includes("=") && VALUE_FLAGS.has(name) && i + 1 < raw.length) ours.push(raw[++i]!);
      continue;
    }
    return { ours, script: a, scriptArgs: raw.slice(i + 1) };
  }
  return { ours, scriptArgs: [] };
}

export const submitCommand = defineCommand({
  meta: { name: "submit", description: "Queue an experiment: submit [options] SCRIPT [ARGS...]" },
  args: cittyArgs(SUBMIT_OPTIONS),
  async run({ rawArgs }) {
    // The queue message (with its credentials) and everything else written here is private.
    process.umask(RUNNER_UMASK);
    const { ours, script, scriptArgs } = splitSubmitArgv(rawArgs);
    const parsed = parseOurFlags(ours);
    const problems = parsed.unknown.map((f) => `${f}: unknown flag`);
    let flags: SubmitSettings;
    try {
      flags = loadSettings(SUBMIT_OPTIONS, parsed.flags);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      exitWithProblems([...problems, ...err.problems]);
    }
    if (!script) problems.push("SCRIPT: missing (usage: studio-runner submit [options] SCRIPT [ARGS...])");
    const workspace = resolve(flags.workspace);
    if (!existsSync(workspace)) problems.push(`--workspace: ${workspace} does not exist`);
    if (script && existsSync(workspace) && script !== "-m" && !existsSync(join(workspace, script))) {
      problems.push(`SCRIPT: ${script} is not in the workspace ${workspace}`);
    }
    for (const f of ["ram", "hdd"] as const)
      if (parseSizeBytes(flags[f]) === undefined) problems.push(`--${f}: ${JSON.stringify(flags[f])} is not a size`);
    for (const f of ["max-duration", "lifetime", "save-frequency", "wait-timeout"] as const) {
      const text = flags[f];
      if (text && parseDurationMs(text) === undefined)
        problems.push(`--${f}: ${JSON.stringify(text)} is not a duration`);
    }
    problems.push(...storageProblems(flags, process.env));
    const queueFlags = { ...flags, "queue-root": resolve(flags["queue-root"] ?? defaultQueueRoot()) };
    problems.push(...submitQueueProblems(queueFlags, process.env));
    const env: Record<string, string> = {};
    for (const pair of (flags.env ?? "").split(",").filter(Boolean)) {
      const eq = pair.indexOf("=");
      if (eq <= 0) problems.push(`--env: ${JSON.stringify(pair)} is not NAME=VALUE`);
      else env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    if (problems.length) exitWithProblems(problems);

    const storage = submitStorage(flags, process.env);
    const { store, locationOf } = storage;
    const queueRoot = queueFlags["queue-root"];
    const target = submitQueue(queueFlags, process.env);
    const queue = flags.queue ?? target.defaultQueue;
    const key = flags.experiment ?? `${Math.floor(Date.now() / 1000)}_${crypto.randomUUID()}`;
    const reqFile =
      flags.requirements ??
      (existsSync(join(workspace, "requirements.txt")) ? join(workspace, "requirements.txt") : undefined);
    const pythonenv = reqFile
      ? readFileSync(reqFile, "utf8")
          .split("\n")
          .map((l) => l.trim())
          .filter((l) => l && !l.startsWith("#"))
      : [];

    let uploaded;
    try {
      await storage.prepare();
      uploaded = await uploadWorkspace(workspace, store, locationOf);
    } catch (err) {
      process.stderr.write(`studio-runner submit: cannot store the workspace: ${errorMessage(err)}\n`);
      process.exit(1);
    }
    const message = buildRequest({
      key,
      script: script!,
      args: scriptArgs,
      pythonenv,
      pythonver: flags.pythonver,
      resources: { cpus: flags.cpus, ram: flags.ram, hdd: flags.hdd, gpus: flags.gpus },
      maxDuration: flags["max-duration"],
      lifetime: flags.lifetime,
      saveFrequency: flags["save-frequency"],
      env,
      workspaceKey: uploaded.key,
      locationOf,
      bucket: storage.artifactBucket,
      credentials: storage.credentials,
      storage: storage.config,
    });
    const backend = target.backend;
    let id: string;
    try {
      id = await backend.publish(queue, JSON.stringify(message, null, 1));
    } catch (err) {
      process.stderr.write(
        `studio-runner submit: cannot queue the request on ${backend.kind} queue ${queue}: ${errorMessage(err)}\n`,
      );
      process.exit(1);
    } finally {
      await backend.close().catch(() => undefined);
    }
    process.stdout.write(`${key}\n`);
    if (!flags.wait) return;

    const result = await follow({
      place: target.local ? { kind: "local", queueRoot, queue, id } : { kind: "storage" },
      store,
      outputLocation: locationOf(`experiments/${key}/output.tar`),
      resultsLocation: locationOf(`experiments/${key}/_results.tar`),
      timeoutMs: flags["wait-timeout"] ? parseDurationMs(flags["wait-timeout"])! : 0,
    });
    if (result.state === "timeout") {
      process.stderr.write(`studio-runner submit: experiment ${key} still not done after ${flags["wait-timeout"]}\n`);
      process.exit(3);
    }
    if (result.log) process.stdout.write(result.log.endsWith("\n") ? result.log : `${result.log}\n`);
    if (result.state === "failed") {
      process.stderr.write(`studio-runner submit: experiment ${key} failed: ${result.reason}\n`);
      process.exit(1);
    }
    if (result.exitMsg && result.exitMsg !== "exited with code 0") {
      process.stderr.write(`studio-runner submit: experiment ${key} ${result.exitMsg}\n`);
      process.exit(1);
    }
  },
});

function exitWithProblems(problems: string[]): never {
  process.stderr.write(
    `studio-runner submit: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join("\n")}\n`,
  );
  process.exit(2);
}

/** Our flags as the loader takes them (name → text, true for a bare boolean), and those no option defines. */
function parseOurFlags(tokens: string[]): { flags: Record<string, unknown>; unknown: string[] } {
  const flags: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const [name, inline] = t.replace(/^--?/, "").split(/=(.*)/s) as [string, string | undefined];
    if (name === "help" || name === "h") continue;
    if (BOOLEAN_FLAGS.has(name)) flags[name] = inline ?? true;
    else if (VALUE_FLAGS.has(name)) flags[name] = inline ?? tokens[++i];
    else unknown.push(t.split("=")[0]!);
  }
  return { flags, unknown };
}
