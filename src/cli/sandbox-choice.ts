// How experiments and environment builds are isolated on this machine, decided once at start from
// --sandbox, --job-user and --sandbox-network: `run` and `env prepare` share it, so a prepared
// environment is built exactly as the runner would build it.

import { homedir } from "node:os";
import type { GpuCard } from "../sandbox/gpu-devices.ts";
import { requireBwrap, SandboxUnavailableError, type SandboxNetwork } from "../sandbox/bwrap.ts";
import { gpuMinors } from "../sandbox/gpu-devices.ts";
import { runnerHiddenPaths } from "../sandbox/hidden-paths.ts";
import { JobUserError, resolveJobUser, type JobUser } from "../sandbox/job-user.ts";
import type { Logger } from "../log/logger.ts";
import type { TaskContext } from "../task/context.ts";
import type { RunSettings } from "./run-options.ts";

export type SandboxChoice =
  | { sandbox: TaskContext["sandbox"]; noneJobUser: JobUser | undefined }
  | { exitCode: number };

export async function chooseSandbox(
  settings: Pick<
    RunSettings,
    | "sandbox"
    | "job-user"
    | "sandbox-network"
    | "config"
    | "sqs-certs"
    | "google-certs"
    | "encrypt-dir"
    | "request-signatures-dir"
    | "response-signatures-dir"
    | "admin-token-file"
  >,
  dirs: { queueRoot: string; workingDir: string; cacheDir: string },
  cards: GpuCard[],
  log: Logger,
): Promise<SandboxChoice> {
  const { queueRoot, workingDir, cacheDir } = dirs;
  // Isolation: --sandbox auto (default) uses bwrap where a probe launch works, else warns loudly;
  // bwrap refuses to start without it; none is the operator's explicit choice. Runner root: jobs
  // run as --job-user (default nobody) inside the sandbox; with none only when --job-user is given.
  let sandbox: TaskContext["sandbox"];
  let noneJobUser: JobUser | undefined;
  try {
    const mode = settings.sandbox;
    const jobUserSetting = settings["job-user"];
    const jobUser = resolveJobUser(jobUserSetting);
    if (mode === "none") {
      noneJobUser = jobUserSetting ? jobUser : undefined;
      log.warn(
        "--sandbox none: experiments are NOT isolated from each other or from the runner; " +
          `they run as ${noneJobUser ? noneJobUser.label : "the runner's own user"}`,
      );
    } else {
      const network: SandboxNetwork = settings["sandbox-network"];
      let bwrapPath: string | undefined;
      try {
        bwrapPath = await requireBwrap(process.env, { jobUser, network });
      } catch (err) {
        if (!(err instanceof SandboxUnavailableError) || mode === "bwrap") throw err;
        log.warn(
          "!!! --sandbox auto: bubblewrap does not work here, experiments are NOT isolated " +
            `(from each other or from the runner's credentials): ${err.reason} !!!`,
        );
      }
      if (bwrapPath) {
        const hiddenPaths = runnerHiddenPaths({
          home: homedir(),
          env: process.env,
          configFile: settings.config,
          sqsCerts: settings["sqs-certs"],
          googleCerts: settings["google-certs"],
          queueRoot,
          workingDir,
          cacheDir,
          secretPaths: [
            settings["encrypt-dir"],
            settings["request-signatures-dir"],
            settings["response-signatures-dir"],
            settings["admin-token-file"],
          ],
        });
        const { minors, guessed } = gpuMinors(cards);
        if (guessed.length)
          log.warn(
            `no /proc/driver/nvidia information for GPU(s) ${guessed.join(", ")}: ` +
              "their /dev/nvidiaN is taken to be NVML's index",
          );
        sandbox = { bwrapPath, network, hiddenPaths, jobUser, gpuMinors: minors };
        log.info(
          `experiments run in a bubblewrap sandbox (${bwrapPath}; network ${sandbox.network}; ` +
            `as ${jobUser ? jobUser.label : "the runner's own user"}${mode === "auto" ? "; --sandbox auto" : ""}); ` +
            `hidden from them: ${hiddenPaths.join(", ")}`,
        );
      }
    }
  } catch (err) {
    if (!(err instanceof SandboxUnavailableError) && !(err instanceof JobUserError)) throw err;
    log.error(err instanceof SandboxUnavailableError ? `--sandbox bwrap: ${err.message}` : err.message);
    return { exitCode: 2 };
  }
  return { sandbox, noneJobUser };
}
