// Entry point of the studio-runner binary: the run, submit, env, gpus, doctor and version commands.

// First: it decides about colour before citty is loaded.
import { restoreColourEnvironment } from "./cli/plain-output.ts";
import { defineCommand, runMain } from "citty";
import { doctorCommand } from "./cli/doctor.ts";
import { envCommand } from "./cli/env.ts";
import { gpusCommand } from "./cli/gpus.ts";
import { runCommand } from "./cli/run.ts";
import { submitCommand } from "./cli/submit.ts";
import { versionCommand } from "./cli/version.ts";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: {
    name: "studio-runner",
    version: VERSION,
    description: "Runs studioml experiments from queues on this machine's CPUs and GPUs",
  },
  subCommands: {
    run: runCommand,
    submit: submitCommand,
    version: versionCommand,
    gpus: gpusCommand,
    env: envCommand,
    doctor: doctorCommand,
  },
});

async function start(): Promise<void> {
  restoreColourEnvironment();
  await runMain(main);
}

void start();
