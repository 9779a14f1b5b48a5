// One attempt at one request, read top to bottom: parse, layout, fetch, environment, execute
// (with checkpoints), finish, then ack. Faults decide between requeue (retryable) and the failed
// place (permanent); a failing script is a finished experiment.

import { randomUUID } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { formatBytes, formatDuration } from "../config/units.ts";
import { chooseInterpreter, findInterpreters } from "../env/interpreters.ts";
import { requestRequirementSet } from "../env/requirements.ts";
import { asFault, errorMessage, PermanentError, RetryableError } from "../errors.ts";
import { createJobCgroup, defaultJobPidsMax, jobGroupName, type JobCgroup } from "../exec/cgroup.ts";
import { JobProcess, type ExitInfo } from "../exec/process-tree.ts";
import { LAUNCHER_ENV } from "../exec/launcher-env.ts";
import { prepareJobDirs } from "../sandbox/job-files.ts";
import { venvJobLaunch } from "../sandbox/launch.ts";
import type { Delivery } from "../queue/task-queue.ts";
import type { Artifact, Request } from "../request/model.ts";
import { plainRequestReader } from "../request/read-request.ts";
import { checkEndpoint, type LocationPolicy } from "../request/location-policy.ts";
import { checkLocationResolved, connectHostOf, resolveChecked } from "../request/resolve-host.ts";
import type { Reservation } from "../resources/pool.ts";
import { ArtifactUploader, fetchArtifact, fetchImageFile } from "./artifacts.ts";
import { withUploadRetries } from "./upload-retry.ts";
import { AttemptFence, SupersededError } from "./attempt-fence.ts";
import {
  checkContainerRequest,
  containerArgv,
  containerEnv,
  containerScript,
  ContainerToolMissingError,
  findContainerTool,
  isRegistryReference,
  launcherEnv,
  writeEnvFile,
} from "../container/apptainer.ts";
import type { TaskContext } from "./context.ts";
import { buildJobEnv } from "./job-env.ts";
import { OutputLog } from "./output-log.ts";
import { SecretMasker } from "../log/secret-mask.ts";
import { checkDatabase, experimentRecordFor, type ExperimentRecord } from "../status/experiment-record.ts";
import { forgetOwner, recordOwner } from "./orphans.ts";
import { timeLimit } from "./time-limit.ts";
import { writeRunnerFile } from "../fs/safe-open.ts";
import { PhaseClock, type AttemptIdentity, type AttemptResult } from "../observe/events.ts";
import { storageIdentityFor } from "../storage/storage-identity.ts";

export type AttemptOutcome =
  | { kind: "finished"; exitCode: number | null; reason: string }
  | { kind: "requeued" | "failed"; reason: string }
  | { kind: "rejected"; reason: string };

export type AttemptControl = {
  /** Aborted when the runner drains: stop, checkpoint and requeue (without counting a delivery). */
  shutdown: AbortSignal;
  /** Grace a running experiment gets after shutdown before it is stopped. */
  shutdownGraceMs: number;
  /** Aborted on a forced shutdown: stop at once. */
  force: AbortSignal;
  /** Aborted when the request is withdrawn while it runs (its queue was deleted): stop it. */
  revoked?: AbortSignal;
  /** The kind of queue the request came from ("local", "rabbitmq", …): file: locations are trusted from local queues only. */
  source?: string;
};

const ALWAYS_FIRST = "workspace";

export async function runAttempt(
  delivery: Delivery,
  ctx: TaskContext,
  control: AttemptControl,
  reservation?: Reservation,
  parsed?: Request,
): Promise<AttemptOutcome> {
  const startedMs = performance.now();
  const who: AttemptIdentity = {
    key: delivery.id,
    attemptId: `${ctx.runnerId}-${randomUUID()}`,
    source: control.source ?? "local",
    queue: delivery.queue,
  };
  const clock = new PhaseClock(ctx.events, who);
  const outcome = await attempt(delivery, ctx, control, who, clock, reservation, parsed);
  ctx.events?.emit("attempt.finished", {
    ...who,
    result: resultOf(outcome),
    reason: outcome.reason,
    exitCode: outcome.kind === "finished" ? outcome.exitCode : undefined,
    durationMs: performance.now() - startedMs,
    ...clock.last(),
  });
  return outcome;
}

/** The observers' name for an outcome: a finished script succeeded only with exit code 0. */
function resultOf(outcome: AttemptOutcome): AttemptResult {
  switch (outcome.kind) {
    case "finished":
      return outcome.exitCode === 0 ? "succeeded" : "failed";
    case "failed":
      return "poisoned";
    default:
      return outcome.kind;
  }
}

async function attempt(
  delivery: Delivery,
  ctx: TaskContext,
  control: AttemptControl,
  who: AttemptIdentity,
  clock: PhaseClock,
  reservation?: Reservation,
  parsed?: Request,
): Promise<AttemptOutcome> {
  const where = `${delivery.queue}/${delivery.id}`;
  let request: Request;
  try {
    request = parsed ?? (ctx.readRequest ?? plainRequestReader)(delivery.body, delivery.queue);
  } catch (err) {
    if (err instanceof RetryableError) {
      // The runner's own key cannot be read just now: not the request's fault.
      return giveBack(delivery, ctx, where, errorMessage(err));
    }
    const reason = `bad request: ${errorMessage(err)}`;
    ctx.log.error(`${where}: ${reason}`);
    await delivery.reject(reason);
    return { kind: "rejected", reason };
  }
  const key = request.experiment.key;
  who.key = key;
  const limit = timeLimit(request, ctx.maxDurationMs);
  if (limit && limit.ms <= 0) {
    const reason = `experiment ${key} expired before it could start (${limit.because})`;
    ctx.log.warn(`${where}: ${reason}`);
    await delivery.reject(reason);
    return { kind: "rejected", reason };
  }

  // layout: a fault here (disk full, unwritable working dir) settles the delivery like any other
  const attemptDir = join(ctx.workingDir, "studio-runner", key, `${Date.now()}-${delivery.deliveryCount}`);
  let dirs: Record<string, string>;
  let jobEnv: ReturnType<typeof buildJobEnv>;
  try {
    ({ dirs, jobEnv } = await layOut(attemptDir, request, ctx, reservation));
  } catch (err) {
    const fault = asFault(err, { experiment: key, phase: "lay out the experiment's directory" });
    const reason = `${fault.message} (${fault.context.phase})`;
    await removeAttemptDir(ctx, attemptDir);
    return fault.retryable
      ? giveBack(delivery, ctx, `experiment ${key}`, reason)
      : keepRejected(delivery, ctx, key, reason);
  }
  const events = ctx.events;
  const log = new OutputLog(
    join(dirs.output, "output"),
    new SecretMasker(jobEnv.secretValues),
    events ? (line) => events.emit("attempt.log", { ...who, line }) : undefined,
  );
  const identity = storageIdentityFor(ctx.storageIdentity, delivery.queue, control.source ?? "local");
  const access = {
    allowEnvSecrets: ctx.allowEnvSecrets,
    runnerEnv: ctx.runnerEnv,
    identity,
    progress: (m: string) => log.note(m),
  };
  const fence = AttemptFence.for(request, access, {
    attempt: who.attemptId,
    delivery: delivery.deliveryCount,
    host: ctx.host,
    runnerId: ctx.runnerId,
    startedAt: new Date().toISOString(),
  });
  const uploader = new ArtifactUploader(request, dirs, {
    ...access,
    beforeUpload: fence ? () => fence.check() : undefined,
    onUploaded: events ? (_label, bytes) => events.emit("bytes", { direction: "upload", bytes }) : undefined,
    onRetry: (message) => ctx.log.warn(message, { experiment: key }),
    onSkipped: (message) => ctx.log.warn(message, { experiment: key }),
  });
  const startedMs = Date.now();
  const needs = reservation?.needs ?? request.experiment.resources;
  events?.emit("attempt.started", {
    ...who,
    deliveryCount: delivery.deliveryCount,
    experimenter: typeof request.experiment.raw.owner === "string" ? request.experiment.raw.owner : undefined,
    project: typeof request.experiment.raw.project === "string" ? request.experiment.raw.project : undefined,
    gpus: reservation?.gpuUuids ?? [],
    resources: { cpus: needs.cpus, ramBytes: needs.ramBytes, hddBytes: needs.hddBytes, gpus: needs.gpus },
    startedAtMs: startedMs,
  });
  log.note(`experiment ${key} on ${ctx.host}, delivery ${delivery.deliveryCount} from queue ${delivery.queue}`);
  ctx.log.info(`starting experiment ${key}`, { queue: delivery.queue, delivery: delivery.deliveryCount });
  for (const w of jobEnv.warnings) log.note(`warning: ${w}`);
  const gpuUuids = reservation?.gpuUuids ?? [];
  if (gpuUuids.length) {
    log.note(`GPUs: ${gpuUuids.join(",")} (CUDA_VISIBLE_DEVICES)`);
    ctx.log.info(`experiment ${key} has GPUs ${gpuUuids.join(",")}`, { experiment: key });
  }
  // where the artifacts and the database may be (protocol-level refusals, before anything is
  // fetched or recorded); a refusal fails the attempt in the try below
  const refused = await checkLocations(request, locationPolicy(ctx, control.source), ctx.runnerEnv).then(
    () => undefined,
    (err: unknown) => err,
  );
  const record = refused
    ? undefined
    : experimentRecordFor(request, {
        warn: (m) => ctx.log.warn(m, { experiment: key }),
        env: ctx.runnerEnv,
        googleCertsDir: ctx.googleCertsDir,
        identity,
      });
  // Not awaited: a slow or unreachable database must not hold up the experiment; the finish
  // below waits for it, so the record still goes running → finished in that order.
  const recordStarted = record?.running();

  let exit: JobExit | undefined;
  let venvRelease: (() => void) | undefined;
  try {
    if (refused) throw refused;
    // This attempt is now the experiment's current one: an older attempt still running elsewhere
    // (its runner lost its lease) stops at its next upload instead of overwriting this one's results.
    clock.enter("claim");
    // The claim is an upload: transient storage faults are retried like the artifacts' uploads.
    if (fence) {
      await withUploadRetries(
        "claiming the experiment in storage",
        () => fence.claim(),
        (m) => ctx.log.warn(m, { experiment: key }),
      ).catch((err) => {
        throw asFault(err).with({ phase: "claim the experiment in storage" });
      });
    }

    // fetch
    clock.enter("fetch");
    const labels = Object.keys(request.experiment.artifacts).sort((a, b) =>
      a === ALWAYS_FIRST ? -1 : b === ALWAYS_FIRST ? 1 : 0,
    );
    let image: string | undefined;
    for (const label of labels) {
      const artifact = request.experiment.artifacts[label]!;
      if (label === CONTAINER_IMAGE_LABEL) {
        image = await containerImage(artifact, request, { ...access, cache: ctx.artifacts }, log).catch((err) => {
          throw asFault(err).with({ phase: `fetch ${label}` });
        });
        continue;
      }
      if (label === "output") {
        await uploader.baseline(label, false);
        continue; // the log of this attempt replaces any earlier one
      }
      const fetched = await fetchArtifact(artifact, dirs[label]!, request, {
        ...access,
        cache: ctx.artifacts,
        budgetBytes: request.experiment.resources.hddBytes || undefined,
      }).catch((err) => {
        throw asFault(err).with({ phase: `fetch ${label}` });
      });
      if (artifact.mutable) await uploader.baseline(label, fetched.existed);
      if (!artifact.mutable && fetched.existed) events?.emit("cache", { cache: "artifact", hit: fetched.cached });
      if (fetched.transferredBytes) events?.emit("bytes", { direction: "download", bytes: fetched.transferredBytes });
      log.note(
        fetched.existed
          ? `artifact ${label}: ${fetched.files} file(s), ${formatBytes(fetched.bytes)}${fetched.cached ? " (from cache)" : ""}`
          : `artifact ${label}: not in storage yet, starting empty`,
      );
    }

    // environment, and execute
    clock.enter("environment");
    const jobLimits = {
      ramBytes: reservation?.needs.ramBytes ?? request.experiment.resources.ramBytes,
      cpus: reservation?.needs.cpus ?? 0,
    };
    const jobControl = { ...control, revoked: delivery.revoked };
    if (image !== undefined) {
      const tool = findContainerTool(ctx.runnerEnv);
      if (!tool) throw new ContainerToolMissingError();
      const envFile = join(attemptDir, ".container-env");
      writeEnvFile(envFile, containerEnv(jobEnv.env, ctx.runnerEnv));
      const cwd = dirs.workspace ?? attemptDir;
      checkContainerRequest({
        image,
        imageField: `experiment.artifacts.${CONTAINER_IMAGE_LABEL}.qualified`,
        filename: request.experiment.filename,
        bindDirs: [attemptDir],
        key,
      });
      const argv = containerArgv({
        tool,
        image,
        binds: [attemptDir],
        pwd: cwd,
        envFile,
        gpus: gpuUuids.length > 0,
        command: containerScript(request.experiment.filename, request.experiment.args),
      });
      if (request.experiment.pythonenv.length || request.config.pip.length)
        log.note("note: container jobs use the image's own Python packages; experiment.pythonenv is not installed");
      log.note(
        `running in ${image} with ${tool}${gpuUuids.length ? " (--nv)" : ""}: ${
          argv
            .slice(argv.indexOf(image) + 1)
            .map((a) => JSON.stringify(a))
            .join(" ") || "the image's runscript"
        }${limit ? ` (time limit ${formatDuration(limit.ms)} from ${limit.because})` : ""}`,
      );
      clock.enter("run");
      // The tool gets a fixed environment; the job's reaches the container through the env file only.
      exit = await execute(
        argv,
        attemptDir,
        cwd,
        launcherEnv(ctx.runnerEnv),
        log,
        uploader,
        request,
        limit,
        jobControl,
        ctx,
        record,
        jobLimits,
      );
    } else {
      if (request.experiment.filename === null) {
        throw new PermanentError("experiment.filename: null (container-only jobs) needs a _singularity image", {
          field: "experiment.filename",
        });
      }
      const interpreter = chooseInterpreter(request.experiment.pythonver, await findInterpreters());
      const wanted = requestRequirementSet(
        [
          { field: "experiment.pythonenv", lines: request.experiment.pythonenv },
          { field: "config.pip", lines: request.config.pip },
        ],
        ctx.venvs.options.allowPipUrls ?? false,
      );
      const venv = await ctx.venvs.acquire(
        {
          interpreter,
          requirements: wanted.lines,
          skipped: wanted.skipped,
          systemSitePackages: ctx.venvs.options.systemSitePackages ?? false,
        },
        (line) => log.write(line),
      );
      venvRelease = venv.release;
      events?.emit("cache", { cache: "venv", hit: venv.reused });
      ctx.log.info(
        `${venv.reused ? "reusing cached" : "built"} python environment ${venv.hash} in ${formatDuration(venv.buildMs)}`,
        { experiment: key },
      );

      // execute: the job user owns its parts of the attempt directory, HOME and TMPDIR are its own
      const jobUser = ctx.sandbox?.jobUser ?? ctx.jobUser;
      const own = prepareJobDirs(attemptDir, dirs, jobUser);
      const env = {
        ...jobEnv.env,
        VIRTUAL_ENV: venv.dir,
        PATH: `${join(venv.dir, "bin")}:${jobEnv.env.PATH ?? ""}`,
        HOME: own.home,
        TMPDIR: own.tmp,
      };
      const script = request.experiment.filename;
      const argv =
        script === "-m"
          ? [venv.python, "-m", ...request.experiment.args]
          : [venv.python, script, ...request.experiment.args];
      log.note(
        `running ${argv
          .slice(1)
          .map((a) => JSON.stringify(a))
          .join(" ")}${limit ? ` (time limit ${formatDuration(limit.ms)} from ${limit.because})` : ""}`,
      );
      const cwd = dirs.workspace ?? attemptDir;
      const launch = venvJobLaunch({
        command: argv,
        env,
        attemptDir,
        cwd,
        venvDir: venv.dir,
        sandbox: ctx.sandbox,
        jobUser,
        gpuUuids,
      });
      for (const n of launch.notes) log.note(n);
      const who = jobUser ? `as ${jobUser.label}` : "as the runner's own user";
      if (ctx.sandbox)
        log.note(
          `in a bubblewrap sandbox ${who}: only ${attemptDir} is writable; network ${ctx.sandbox.network === "loopback" ? "loopback only" : "shared with the host"}`,
        );
      else log.note(`NOT sandboxed (--sandbox none), ${who}`);
      clock.enter("run");
      exit = await execute(
        launch.argv,
        attemptDir,
        cwd,
        LAUNCHER_ENV,
        log,
        uploader,
        request,
        limit,
        jobControl,
        ctx,
        record,
        jobLimits,
        launch.payload,
      );
    }

    // finish
    if (log.failure) {
      throw new RetryableError(
        `the experiment's log could not be written: ${log.failure.message}`,
        { phase: "run" },
        { cause: log.failure },
      );
    }
    const shutdown = exit.killedFor === "shutdown";
    const reason = shutdown
      ? "runner shutting down"
      : exit.memoryLimitBytes !== undefined
        ? `killed by its memory limit of ${formatBytes(exit.memoryLimitBytes)} (resources_needed.ram)`
        : exit.killedFor
          ? `stopped: ${exit.killedFor}`
          : exit.code === 0
            ? "exited with code 0"
            : `exited with ${exit.code !== null ? `code ${exit.code}` : `signal ${exit.signal}`}`;
    log.note(`experiment ${reason} after ${formatDuration(Date.now() - startedMs)}`);
    await log.close();
    clock.enter("upload");
    if (shutdown) {
      await uploader
        .upload(undefined, { includeMissing: true })
        .catch((err) => ctx.log.warn(`checkpoint before requeue failed: ${errorMessage(err)}`));
      const outcome = await delivery.nack("runner shutting down", { countDelivery: false });
      ctx.log.info(`experiment ${key} checkpointed and requeued for shutdown`);
      return { kind: outcome, reason: "runner shutting down" };
    }
    await uploadFinal(uploader, request, dirs, ctx, reason);
    await recordStarted;
    await record?.finished();
    clock.enter("ack");
    await delivery.ack();
    ctx.log.info(`experiment ${key} finished: ${reason}`, { experiment: key, exitCode: exit.code });
    return { kind: "finished", exitCode: exit.code, reason };
  } catch (err) {
    if (err instanceof SupersededError) {
      log.note(err.message);
      ctx.log.warn(`experiment ${key}: ${err.message}`);
      // The request belongs to the newer attempt now: give it back uncounted, never ack it here.
      const outcome = await delivery.nack(err.message, { countDelivery: false }).catch(() => "requeued" as const);
      return { kind: outcome, reason: err.message };
    }
    const fault = asFault(err, { experiment: key });
    const phase = fault.context.phase ? ` (${fault.context.phase})` : "";
    log.note(`${fault.retryable ? "runner fault, will retry" : "experiment failed"}${phase}: ${fault.message}`);
    await log.close();
    // The log is the user's only view of what happened: try hard to get it to storage (never to
    // locations the rules refused: the reason is kept with the request instead).
    if (!refused)
      await uploader
        .upload(["output"], { includeMissing: true })
        .catch((e) => ctx.log.warn(`could not upload the log of ${key}: ${errorMessage(e)}`));
    const reason = `${fault.message}${phase}`;
    if (fault.retryable) {
      // Free the disk before the request can be taken again (a full disk is a common cause).
      await removeAttemptDir(ctx, attemptDir);
      return giveBack(delivery, ctx, `experiment ${key}`, reason);
    }
    await recordStarted;
    await record?.finished();
    return keepRejected(delivery, ctx, key, reason);
  } finally {
    venvRelease?.();
    await recordStarted;
    await record?.close();
    await log.close();
    await forgetOwner(attemptDir).catch(() => undefined);
    await removeAttemptDir(ctx, attemptDir);
  }
}

async function execute(
  argv: string[],
  attemptDir: string,
  cwd: string,
  env: Record<string, string>,
  log: OutputLog,
  uploader: ArtifactUploader,
  request: Request,
  limit: ReturnType<typeof timeLimit>,
  control: AttemptControl,
  ctx: TaskContext,
  record?: ExperimentRecord,
  jobLimits: { ramBytes: number; cpus: number } = { ramBytes: 0, cpus: 0 },
  /** The job's environment for fd 3 (bwrap --args or the env loader); `env` is then the launchers'. */
  jobEnvPayload?: Buffer,
): Promise<JobExit> {
  const group = jobCgroup(ctx, request.experiment.key, jobLimits, log);
  const spawnedMs = performance.now();
  const job = new JobProcess(group ? group.wrapCommand(argv) : argv, {
    cwd,
    env,
    onLine: (line) => log.write(line),
    sandboxed: !!ctx.sandbox,
    sink: log,
    jobEnvPayload,
  });
  await recordOwner(attemptDir, { host: hostname(), runnerPid: process.pid, runnerId: ctx.runnerId, jobPid: job.pid });
  const timers: Array<ReturnType<typeof setTimeout>> = [];
  const checkpoint = async (labels?: string[]) => {
    await log.flush();
    try {
      const done = await uploader.upload(labels);
      if (done.length) ctx.log.debug(`checkpointed ${done.join(", ")}`, { experiment: request.experiment.key });
      if (done.length) await record?.checkpoint();
    } catch (err) {
      if (err instanceof SupersededError) {
        log.note(err.message);
        void job.stop(err.message);
        return;
      }
      ctx.log.warn(`checkpoint of ${request.experiment.key} failed (will retry): ${errorMessage(err)}`);
    }
  };
  const every = request.config.saveWorkspaceFrequencyMs;
  if (every && every > 0) timers.push(setInterval(() => void checkpoint(), timerMs(every)));
  for (const a of Object.values(request.experiment.artifacts)) {
    if (a.mutable && a.saveFrequencyMs)
      timers.push(setInterval(() => void checkpoint([a.label]), timerMs(a.saveFrequencyMs)));
  }
  if (limit) {
    // Timers hold at most about 24.8 days: a longer limit is reached in several steps.
    const deadlineMs = Date.now() + limit.ms;
    const arm = () => {
      timers.push(
        setTimeout(
          () => {
            if (Date.now() < deadlineMs) return arm();
            log.note(`time limit of ${formatDuration(limit.ms)} (${limit.because}) reached: stopping the experiment`);
            void job.stop(`time limit reached (${limit.because})`);
          },
          Math.min(MAX_TIMER_MS, Math.max(0, deadlineMs - Date.now())),
        ),
      );
    };
    arm();
  }
  if (record) {
    // A user's "stopped" in the experiment database stops the job (the python worker polled too).
    let polling = false;
    timers.push(
      setInterval(async () => {
        if (polling) return;
        polling = true;
        try {
          if (await record.stopRequested()) {
            log.note(`the experiment record says "stopped": stopping the experiment`);
            void job.stop("stopped by the user (experiment database)");
          }
        } finally {
          polling = false;
        }
      }, ctx.statusPollMs ?? 5000),
    );
  }
  const onShutdown = () => {
    log.note(
      `runner is shutting down: the experiment has ${formatDuration(control.shutdownGraceMs)} to finish before it is checkpointed and requeued`,
    );
    timers.push(setTimeout(() => void job.stop("shutdown"), control.shutdownGraceMs));
  };
  const onForce = () => void job.stop("shutdown", 2000);
  const onRevoked = () => {
    const why = errorMessage(control.revoked?.reason ?? "request withdrawn");
    log.note(`${why}: stopping the experiment`);
    void job.stop(`request withdrawn (${why})`);
  };
  if (control.revoked?.aborted) onRevoked();
  else control.revoked?.addEventListener("abort", onRevoked, { once: true });
  if (control.shutdown.aborted) onShutdown();
  else control.shutdown.addEventListener("abort", onShutdown, { once: true });
  if (control.force.aborted) onForce();
  else control.force.addEventListener("abort", onForce, { once: true });
  try {
    const exit: JobExit = await job.exited;
    const ranMs = performance.now() - spawnedMs;
    log.note(`the script ran ${(ranMs / 1000).toFixed(3)} s (start to exit)`);
    ctx.log.info(`experiment ${request.experiment.key}: the script ran ${(ranMs / 1000).toFixed(3)} s`, {
      experiment: request.experiment.key,
      scriptMs: Math.round(ranMs),
    });
    if (group) {
      await group.destroy();
      const peak = group.peakMemoryBytes();
      if (peak !== undefined) log.note(`peak memory ${formatBytes(peak)}`);
      if (group.oomKilled() && jobLimits.ramBytes > 0) {
        log.note(
          `the experiment used more than its memory limit of ${formatBytes(jobLimits.ramBytes)} and was killed by the kernel`,
        );
        exit.memoryLimitBytes = jobLimits.ramBytes;
      }
    }
    return exit;
  } finally {
    await group?.destroy();
    for (const t of timers) clearTimeout(t);
    control.shutdown.removeEventListener("abort", onShutdown);
    control.force.removeEventListener("abort", onForce);
    control.revoked?.removeEventListener("abort", onRevoked);
  }
}

/** A runner-side fault: the request goes back for another delivery (or to the failed place after its last). */
async function giveBack(delivery: Delivery, ctx: TaskContext, who: string, reason: string): Promise<AttemptOutcome> {
  const outcome = await delivery.nack(reason);
  ctx.log.warn(`${who}: ${reason}; ${outcome === "requeued" ? "requeued" : "moved to the failed place"}`);
  return { kind: outcome, reason };
}

/** A fault of the request itself: it is kept in the failed place with the reason. */
async function keepRejected(
  delivery: Delivery,
  ctx: TaskContext,
  key: string,
  reason: string,
): Promise<AttemptOutcome> {
  await delivery.reject(reason);
  ctx.log.error(`experiment ${key} rejected: ${reason}`);
  return { kind: "rejected", reason };
}

/** The attempt's directory goes (unless --debug keeps it); a failure to remove it is not the attempt's. */
async function removeAttemptDir(ctx: TaskContext, attemptDir: string): Promise<void> {
  if (!ctx.keepDirectories) await rm(attemptDir, { recursive: true, force: true }).catch(() => undefined);
}

/** The attempt's directory tree (one folder per artifact label), its artifact mapping, the job's environment and the owner record. */
async function layOut(attemptDir: string, request: Request, ctx: TaskContext, reservation?: Reservation) {
  const dirs: Record<string, string> = {};
  for (const label of Object.keys(request.experiment.artifacts)) dirs[label] = join(attemptDir, label);
  dirs.output ??= join(attemptDir, "output");
  await mkdir(dirs.output, { recursive: true });
  const mappingFile = join(attemptDir, "artifact-mapping.json");
  // Readable, not writable, by the job (whatever the umask), never written through anything planted at its name.
  await writeRunnerFile(attemptDir, "artifact-mapping.json", JSON.stringify(dirs, null, 2), 0o444, { exactMode: true });
  const jobEnv = buildJobEnv({
    runnerEnv: ctx.runnerEnv,
    request,
    attemptDir,
    mappingFile,
    cpus: reservation?.needs.cpus ?? request.experiment.resources.cpus,
    gpuIds: reservation?.gpuUuids ?? [],
    allowEnvSecrets: ctx.allowEnvSecrets,
  });
  await recordOwner(attemptDir, { host: hostname(), runnerPid: process.pid, runnerId: ctx.runnerId });
  return { dirs, jobEnv };
}

/**
 * Where a request's artifacts and database may live: never cloud metadata or link-local
 * addresses; loopback and private ranges only with --allow-private-endpoints; file: paths under
 * --file-storage-roots, or, without it, under the runner's own storage root for requests from
 * local queues (their writers share this machine) and nowhere for requests from brokers.
 */
function locationPolicy(ctx: TaskContext, source: string | undefined): LocationPolicy {
  const roots = ctx.fileStorageRoots ?? [];
  const local = source === "local" || source === undefined;
  return {
    allowedFileRoots: roots.length ? roots : local ? (ctx.localFileStorageRoots ?? []) : [],
    allowPrivate: ctx.allowPrivateEndpoints ?? false,
  };
}

/** Every location of the request through the rules, host names resolved: RequestError naming the field. */
async function checkLocations(
  request: Request,
  policy: LocationPolicy,
  env: Record<string, string | undefined>,
): Promise<void> {
  for (const a of Object.values(request.experiment.artifacts)) {
    if (a.label === CONTAINER_IMAGE_LABEL && isRegistryReference(a.qualified)) continue;
    await checkLocationResolved(`experiment.artifacts.${a.label}.qualified`, a.qualified, policy, {
      mutable: a.mutable,
    });
  }
  // An S3 server's endpoint (used for every s3:// artifact, whatever its spelling); a local
  // storage root (file:) is checked through its artifacts.
  const endpoint = request.config.storageEndpoint;
  const usesS3 = Object.values(request.experiment.artifacts).some((a) => /^s3:/i.test(a.qualified));
  if (endpoint && (usesS3 || /^https?:/i.test(endpoint))) {
    checkEndpoint("config.storage.endpoint", endpoint, policy);
    const host = connectHostOf(endpoint);
    if (host) await resolveChecked("config.storage.endpoint", endpoint, host, policy);
  }
  await checkDatabase(request, policy, { env });
}

/** The longest delay a JavaScript timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A checkpoint interval as a timer can hold it: at least 1 s, at most MAX_TIMER_MS. */
const timerMs = (ms: number) => Math.min(MAX_TIMER_MS, Math.max(1000, ms));

/** The artifact that names a container image (protocol.md §5). */
const CONTAINER_IMAGE_LABEL = "_singularity";

/** The image to run: a registry reference as given, or the path of the image file in the cache. */
async function containerImage(
  artifact: Artifact,
  request: Request,
  options: Parameters<typeof fetchImageFile>[2],
  log: OutputLog,
): Promise<string> {
  if (isRegistryReference(artifact.qualified)) {
    log.note(`container image ${artifact.qualified} (pulled by the container tool)`);
    return artifact.qualified;
  }
  const fetched = await fetchImageFile(artifact, request, options);
  log.note(
    `container image ${artifact.qualified}: ${formatBytes(fetched.bytes)}${fetched.cached ? " (from cache)" : ""}`,
  );
  return fetched.path;
}

/** How a job ended, and whether the kernel killed it for its memory limit. */
type JobExit = ExitInfo & { memoryLimitBytes?: number };

/**
 * The job's cgroup, where the runner may make one — for every job, also one that states no RAM or
 * CPUs: its process-count limit holds a fork bomb, and removing it at the end kills whatever the
 * job left running (a double-forked `setsid` child included). Never fails the attempt.
 */
function jobCgroup(
  ctx: TaskContext,
  key: string,
  limits: { ramBytes: number; cpus: number },
  log: OutputLog,
): JobCgroup | undefined {
  const support = ctx.cgroups;
  if (!support || support.version === "none") return undefined;
  try {
    return createJobCgroup(support, jobGroupName(++cgroupSerial), {
      memoryBytes: limits.ramBytes > 0 ? limits.ramBytes : undefined,
      cpus: limits.cpus > 0 ? limits.cpus : undefined,
      pidsMax: defaultJobPidsMax(limits.cpus),
    });
  } catch (err) {
    log.note(
      `warning: the experiment runs without its cgroup (RAM/CPU/process limits, cleanup of leftover processes): ${errorMessage(err)}`,
    );
    ctx.log.warn(`experiment ${key} runs without its cgroup (RAM/CPU/process limits): ${errorMessage(err)}`);
    return undefined;
  }
}
let cgroupSerial = 0;

/** Final upload of every mutable artifact, with `_results` written and uploaded last. */
async function uploadFinal(
  uploader: ArtifactUploader,
  request: Request,
  dirs: Record<string, string>,
  ctx: TaskContext,
  exitMsg: string,
) {
  const labels = Object.keys(request.experiment.artifacts).filter((l) => l !== "_results");
  try {
    await uploader.upload(labels, { includeMissing: true });
    const results = request.experiment.artifacts._results;
    if (results?.mutable && dirs._results) {
      const doc = {
        exit_msg: exitMsg,
        experiment_id: request.experiment.key,
        host: ctx.host,
        artifacts: Object.fromEntries(
          Object.values(request.experiment.artifacts).map((a) => [a.label, { name: a.key ?? a.qualified }]),
        ),
      };
      // The job may have planted a link at _results or _results.json: neither is followed.
      await writeRunnerFile(dirs._results, "_results.json", JSON.stringify(doc, null, 2));
      await uploader.upload(["_results"], { includeMissing: true });
    }
  } catch (err) {
    if (err instanceof SupersededError) throw err;
    throw new RetryableError(`final upload failed: ${errorMessage(err)}`, { phase: "finish" }, { cause: err });
  }
}
