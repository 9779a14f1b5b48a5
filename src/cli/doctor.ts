// `studio-runner doctor [run flags]`: checks that this machine, with these settings, can serve
// experiments (Python, pip and its package sources, cgroups, the sandbox, containers, GPUs,
// directories, disk, clock, every configured queue and storage) and prints one table with a fix
// for each failure. Takes no work. Exit 0 only when nothing failed; 1 when something did; 2 for
// settings that `run` would refuse too.

import { defineCommand } from "citty";
import { defaultCacheDir, defaultQueueRoot, defaultWorkingDir } from "../config/options.ts";
import { parseDurationMs } from "../config/units.ts";
import { pipSourceEnv } from "../env/venv-settings.ts";
import { queueChecks, storageCheck } from "../doctor/backend-checks.ts";
import type { CheckResult } from "../doctor/check-result.ts";
import { cgroupCheck, containerCheck, sandboxCheck } from "../doctor/isolation-checks.ts";
import { clockCheck, dirCheck, diskCheck, gpuChecks } from "../doctor/machine-checks.ts";
import { interpreterCheck, venvAndPipChecks } from "../doctor/python-checks.ts";
import { renderJson, renderTable, summary } from "../doctor/report.ts";
import { BUILD_DATE } from "../version.ts";
import { cittyArgs } from "./flags.ts";
import { ALL_RUN_OPTIONS } from "./run-options.ts";
import { settingsOrExit } from "./run.ts";

const DEFAULT_TIMEOUT_MS = 10_000;

const DOCTOR_ARGS = {
  json: { type: "boolean", description: "print the checks as one JSON document", default: false },
  timeout: {
    type: "string",
    description: "how long each network check may wait for an answer [default: 10s]",
    valueHint: "duration",
  },
  "s3-endpoint": {
    type: "string",
    description: "with an s3:// --storage: the S3 server as http(s)://host[:port] (its scheme; default https)",
  },
} as const;

export const doctorCommand = defineCommand({
  meta: {
    name: "doctor",
    description: "Check that this machine can run experiments with these settings (same flags as run); takes no work",
  },
  args: { ...cittyArgs(ALL_RUN_OPTIONS), ...DOCTOR_ARGS },
  async run({ args, rawArgs }) {
    const settings = settingsOrExit(rawArgs, args, {
      command: "studio-runner doctor",
      extraFlags: Object.keys(DOCTOR_ARGS),
    });
    const timeoutMs = typeof args.timeout === "string" ? parseDurationMs(args.timeout) : DEFAULT_TIMEOUT_MS;
    if (timeoutMs === undefined || timeoutMs <= 0) {
      process.stderr.write(`studio-runner doctor: --timeout: ${JSON.stringify(args.timeout)} is not a duration\n`);
      process.exit(2);
    }
    const workingDir = settings["working-dir"] ?? defaultWorkingDir();
    const cacheDir = settings["cache-dir"] ?? defaultCacheDir();
    const queueRoot = settings["queue-root"] ?? defaultQueueRoot();
    const s3Endpoint = typeof args["s3-endpoint"] === "string" ? args["s3-endpoint"] : undefined;

    const python = (async (): Promise<CheckResult[]> => {
      const found = await interpreterCheck(process.env);
      const pip = await venvAndPipChecks(found.interpreters, process.env, pipSourceEnv(settings), cacheDir, timeoutMs);
      return [found.result, ...pip];
    })();
    const isolation = Promise.all([
      cgroupCheck(settings["cgroup-limits"]),
      sandboxCheck(settings),
      containerCheck(process.env),
    ]);
    const reach = Promise.all([queueChecks(settings, timeoutMs), storageCheck(settings, s3Endpoint, timeoutMs)]);
    const machine: CheckResult[] = [
      ...gpuChecks(process.env, settings["cpu-only"]),
      dirCheck("working-dir", "--working-dir", workingDir),
      dirCheck("cache-dir", "--cache-dir", cacheDir),
      dirCheck("queue-root", "--queue-root", queueRoot),
      diskCheck("working-dir", workingDir, settings["min-free-disk"]),
      diskCheck("cache-dir", cacheDir, settings["min-free-disk"]),
      clockCheck(BUILD_DATE),
    ];
    const [queues, storage] = await reach;
    const results = [...(await python), ...(await isolation), ...machine, ...queues, storage];
    const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
    process.stdout.write(args.json ? renderJson(results) : renderTable(results, colour));
    process.exit(summary(results).passed ? 0 : 1);
  },
});
