// Step "upload": after the job exited, why it ended goes into the log, and then either the final
// upload (every mutable artifact, `_results` written and uploaded last) or, when the runner drains,
// a checkpoint before the request is given back.

import { formatBytes, formatDuration } from "../../config/units.ts";
import { errorMessage, RetryableError } from "../../errors.ts";
import { writeRunnerFile } from "../../fs/safe-open.ts";
import { SupersededError } from "../attempt-fence.ts";
import { type AttemptState, type JobExit, need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

/** Why the job ended, in the words of the log and the experiment's `_results`. */
export function exitReason(exit: JobExit): string {
  if (exit.killedFor === "shutdown") return "runner shutting down";
  if (exit.memoryLimitBytes !== undefined)
    return `killed by its memory limit of ${formatBytes(exit.memoryLimitBytes)} (resources_needed.ram)`;
  if (exit.killedFor) return `stopped: ${exit.killedFor}`;
  if (exit.code === 0) return "exited with code 0";
  return `exited with ${exit.code !== null ? `code ${exit.code}` : `signal ${exit.signal}`}`;
}

export const uploadStep: AttemptStep = {
  name: "upload",
  async afterExit(s) {
    const log = need(s, "log");
    const exit = need(s, "exit");
    const uploader = need(s, "uploader");
    if (log.failure) {
      throw new RetryableError(
        `the experiment's log could not be written: ${log.failure.message}`,
        { phase: "run" },
        { cause: log.failure },
      );
    }
    const reason = exitReason(exit);
    log.note(`experiment ${reason} after ${formatDuration(s.clock.nowMs() - need(s, "startedMs"))}`);
    await log.close();
    if (exit.killedFor === "shutdown") {
      await uploader
        .upload(undefined, { includeMissing: true, jobGone: true })
        .catch((err) => s.ctx.log.warn(`checkpoint before requeue failed: ${errorMessage(err)}`));
      s.ending = { kind: "shutdown", reason };
      return;
    }
    await uploadFinal(s, reason);
    s.ending = { kind: "finished", exit, reason };
  },
};

/** Final upload of every mutable artifact, with `_results` written and uploaded last. */
async function uploadFinal(s: AttemptState, exitMsg: string) {
  const { request } = s;
  const uploader = need(s, "uploader");
  const dirs = need(s, "dirs");
  const labels = Object.keys(request.experiment.artifacts).filter((l) => l !== "_results");
  const startedMs = s.clock.nowMs();
  try {
    const sent = await uploader.upload(labels, { includeMissing: true, jobGone: true });
    s.ctx.log.info(
      `experiment ${s.key}: ${sent.length} artifact(s) uploaded in ${formatDuration(s.clock.nowMs() - startedMs)}`,
      { experiment: s.key },
    );
    const results = request.experiment.artifacts._results;
    if (results?.mutable && dirs._results) {
      const doc = {
        exit_msg: exitMsg,
        experiment_id: request.experiment.key,
        host: s.ctx.host,
        artifacts: Object.fromEntries(
          Object.values(request.experiment.artifacts).map((a) => [a.label, { name: a.key ?? a.qualified }]),
        ),
      };
      // The job may have planted a link at _results or _results.json: neither is followed.
      await writeRunnerFile(dirs._results, "_results.json", JSON.stringify(doc, null, 2));
      await uploader.upload(["_results"], { includeMissing: true, jobGone: true });
    }
  } catch (err) {
    if (err instanceof SupersededError) throw err;
    throw new RetryableError(`final upload failed: ${errorMessage(err)}`, { phase: "finish" }, { cause: err });
  }
}
