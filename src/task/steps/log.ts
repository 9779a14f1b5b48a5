// Step "log": the experiment's log (output/output, secrets masked), the uploader of its mutable
// artifacts and the attempt's fence; says the attempt started. Cleanup closes the log and, after a
// fault, tries hard to get it to storage: it is the user's only view of what happened.

import { join } from "node:path";
import { errorMessage } from "../../errors.ts";
import { SecretMasker } from "../../log/secret-mask.ts";
import { storageIdentityFor } from "../../storage/storage-identity.ts";
import { ArtifactUploader } from "../artifacts.ts";
import { AttemptFence } from "../attempt-fence.ts";
import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";
import { OutputLog } from "../output-log.ts";

export const logStep: AttemptStep = {
  name: "log",
  async prepare(s) {
    const { ctx, delivery, request, key, who, reservation } = s;
    const dirs = need(s, "dirs");
    const jobEnv = need(s, "jobEnv");
    const events = ctx.events;
    const log = new OutputLog(
      join(dirs.output!, "output"),
      new SecretMasker(jobEnv.secretValues),
      events ? (line) => events.emit("attempt.log", { ...who, line }) : undefined,
    );
    s.log = log;
    const access = {
      allowEnvSecrets: ctx.allowEnvSecrets,
      runnerEnv: ctx.runnerEnv,
      identity: storageIdentityFor(ctx.storageIdentity, delivery.queue, s.control.source ?? "local"),
      stores: ctx.stores,
      progress: (m: string) => log.note(m),
    };
    s.access = access;
    const fence = AttemptFence.for(request, access, {
      attempt: who.attemptId,
      delivery: delivery.deliveryCount,
      host: ctx.host,
      runnerId: ctx.runnerId,
      startedAt: new Date(s.clock.nowMs()).toISOString(),
    });
    s.fence = fence;
    s.uploader = new ArtifactUploader(request, dirs, {
      ...access,
      beforeUpload: fence ? () => fence.check() : undefined,
      onUploaded: events ? (_label, bytes) => events.emit("bytes", { direction: "upload", bytes }) : undefined,
      onRetry: (message) => ctx.log.warn(message, { experiment: key }),
      onSkipped: (message) => ctx.log.warn(message, { experiment: key }),
      spoolPath: () => ctx.artifacts.scratchPath(),
    });
    s.startedMs = s.clock.nowMs();
    const needs = reservation?.needs ?? request.experiment.resources;
    const raw = request.experiment.raw;
    events?.emit("attempt.started", {
      ...who,
      deliveryCount: delivery.deliveryCount,
      experimenter: typeof raw.owner === "string" ? raw.owner : undefined,
      project: typeof raw.project === "string" ? raw.project : undefined,
      gpus: reservation?.gpuUuids ?? [],
      resources: { cpus: needs.cpus, ramBytes: needs.ramBytes, hddBytes: needs.hddBytes, gpus: needs.gpus },
      startedAtMs: s.startedMs,
    });
    log.note(`experiment ${key} on ${ctx.host}, delivery ${delivery.deliveryCount} from queue ${delivery.queue}`);
    ctx.log.info(`starting experiment ${key}`, { queue: delivery.queue, delivery: delivery.deliveryCount });
    for (const w of jobEnv.warnings) log.note(`warning: ${w}`);
    const gpuUuids = reservation?.gpuUuids ?? [];
    if (gpuUuids.length) {
      log.note(`GPUs: ${gpuUuids.join(",")} (CUDA_VISIBLE_DEVICES)`);
      ctx.log.info(`experiment ${key} has GPUs ${gpuUuids.join(",")}`, { experiment: key });
    }
  },
  async cleanup(s, ending) {
    const log = s.log;
    if (!log) return;
    if (ending.kind === "superseded") log.note(ending.reason);
    if (ending.kind === "fault") {
      const { fault } = ending;
      const phase = fault.context.phase ? ` (${fault.context.phase})` : "";
      log.note(`${fault.retryable ? "runner fault, will retry" : "experiment failed"}${phase}: ${fault.message}`);
    }
    await log.close();
    // Never to locations the rules refused: the reason is kept with the request instead.
    if (ending.kind === "fault" && !s.locationsRefused && s.uploader)
      await s.uploader
        .upload(["output"], { includeMissing: true })
        .catch((e) => s.ctx.log.warn(`could not upload the log of ${s.key}: ${errorMessage(e)}`));
  },
};
