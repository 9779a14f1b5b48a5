// `studio-runner run`: the daemon. Reads settings, builds the runner, handles signals.

import { defineCommand } from "citty";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError, loadSettings } from "../config/load.ts";
import { defaultCacheDir, defaultQueueRoot, defaultWorkingDir } from "../config/options.ts";
import { storageUrl } from "../config/storage-options.ts";
import { formatBytes } from "../config/units.ts";
import { findInterpreters } from "../env/interpreters.ts";
import { pinModeProblems, venvCacheFromSettings } from "../env/venv-settings.ts";
import { chooseSandbox } from "./sandbox-choice.ts";
import { RunnerEvents } from "../observe/events.ts";
import { createLogger } from "../log/logger.ts";
import { ObserveStartError, observeSettingsProblems, startObservability } from "../observe/observability.ts";
import { startConfigMapDrain } from "../k8s/settings.ts";
import { LocalQueueBackend } from "../queue/local/local-queue.ts";
import { LiveQueueFilter } from "../queue/live-filter.ts";
import { rabbitBackendFromSettings, rabbitSettingsProblems } from "../queue/rabbitmq/settings.ts";
import { pubsubBackendFromSettings, pubsubSettingsProblems } from "../queue/pubsub/settings.ts";
import { sqsBackendFromSettings, sqsSettingsProblems } from "../queue/sqs/settings.ts";
import type { QueueBackend } from "../queue/task-queue.ts";
import { detectCgroups, killOrphanedCgroups, reapStaleCgroups } from "../exec/cgroup.ts";
import { resolveJobUser } from "../sandbox/job-user.ts";
import { NO_ENVELOPE_KEYS } from "../request/envelope/keys.ts";
import { clearTextAllowed, envelopeKeysFromSettings, envelopeSettingsProblems } from "../request/envelope/options.ts";
import { requestReader } from "../request/read-request.ts";
import { GpuAllocator } from "../gpu/allocator.ts";
import { describeInventory, gpuStartupProblem, readInventory } from "../gpu/inventory.ts";
import { startGpuWatch } from "../gpu/watch.ts";
import { freeDiskBytes, machineCapacity } from "../resources/machine.ts";
import { ResourcePool } from "../resources/pool.ts";
import { installMaintenanceSignals } from "../runner/maintenance-signals.ts";
import { Runner } from "../runner/runner.ts";
import { PrivateDirError } from "../fs/private-files.ts";
import { prepareRunnerDirs, RUNNER_UMASK, runnerWorkRoot } from "../runner/private-dirs.ts";
import { RequestAdmission } from "../request/admission.ts";
import { ReplayGuard } from "../request/replay-guard.ts";
import { ResponseReports } from "../status/response-reports.ts";
import { responsePublishersFor } from "../status/response/publishers-for.ts";
import { setRunnerLimits } from "../request/location-policy.ts";
import { ArtifactCache } from "../storage/artifact-cache.ts";
import { filePath } from "../storage/file/file-store.ts";
import { GcsClients } from "../storage/gcs/gcs-clients.ts";
import { Stores } from "../storage/stores.ts";
import {
  describeStorageIdentity,
  storageIdentityProblems,
  storageIdentitySetting,
} from "../storage/storage-identity.ts";
import { reapOrphans } from "../task/orphans.ts";
import { VERSION } from "../version.ts";
import { cittyArgs, pickFlags, unknownFlags } from "./flags.ts";
import { ALL_RUN_OPTIONS, type RunSettings } from "./run-options.ts";
import { commaList } from "../config/comma-list.ts";

/** How long the last reports may take to go out when the runner stops. */
const REPORTS_CLOSE_WAIT_MS = 5_000;

export const runCommand = defineCommand({
  meta: { name: "run", description: "Run experiments from the queues this runner can reach" },
  args: cittyArgs(ALL_RUN_OPTIONS),
  async run({ args, rawArgs }) {
    const settings = settingsOrExit(rawArgs, args);
    const code = await runDaemon(settings);
    // Idle keep-alive sockets of storage and broker clients must not hold the process open.
    process.exit(code);
  },
});

/**
 * Where file: locations may be: --file-storage-roots for every queue; without it, for requests
 * from local queues only, the runner's own storage root (the file: storage `studio-runner submit`
 * uses: --storage / STUDIO_STORAGE, default ~/.studioml/storage), and for requests from brokers nowhere.
 */
function fileStorageRoots(settings: Pick<RunSettings, "file-storage-roots" | "storage">): {
  flag: string[];
  local: string[];
  description: string;
} {
  const flag = commaList(settings["file-storage-roots"]).map((r) => resolve(r));
  if (flag.length)
    return {
      flag,
      local: flag,
      description: `file: locations of requests may be under ${flag.join(", ")} (--file-storage-roots)`,
    };
  const own = storageUrl(settings.storage);
  let local: string[] = [];
  try {
    local = /^file:/i.test(own) ? [filePath(own)] : [];
  } catch {
    local = []; // --storage is not a usable file: URL
  }
  return {
    flag,
    local,
    description: local.length
      ? `file: locations of requests from local queues may be under ${local[0]} (this runner's own storage; ` +
        "--file-storage-roots to change), none from brokers"
      : "file: locations of requests are refused (no --file-storage-roots, and this runner's own storage is not file:)",
  };
}

/** What `run` checks beyond each setting's own type: the backends', envelopes', HTTP endpoint's and pins'. */
function runSettingsProblems(settings: RunSettings): string[] {
  return [
    ...rabbitSettingsProblems(settings),
    ...sqsSettingsProblems(settings),
    ...pubsubSettingsProblems(settings),
    ...envelopeSettingsProblems(settings),
    ...observeSettingsProblems(settings),
    ...storageIdentityProblems(settings["storage-identity"], settings["storage-identity-allow"]),
    ...pinModeProblems(settings),
  ];
}

/**
 * Settings from flags, environment and file; every problem printed at once, then exit 2. Other
 * commands that take run's settings (env) name themselves, their own flags and their checks.
 */
export function settingsOrExit(
  rawArgs: string[],
  args: Record<string, unknown>,
  o: { command?: string; extraFlags?: string[]; problems?: (settings: RunSettings) => string[] } = {},
): RunSettings {
  const problems = unknownFlags(rawArgs, ALL_RUN_OPTIONS, o.extraFlags).map((f) => `${f}: unknown flag`);
  try {
    const settings = loadSettings(ALL_RUN_OPTIONS, pickFlags(args, ALL_RUN_OPTIONS));
    problems.push(...(o.problems ?? runSettingsProblems)(settings));
    if (!problems.length) return settings;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  process.stderr.write(
    `${o.command ?? "studio-runner"}: invalid configuration ` +
      `(${problems.length} problem${problems.length > 1 ? "s" : ""}):\n` +
      `${problems.map((p) => `  - ${p}`).join("\n")}\n`,
  );
  process.exit(2);
}

export async function runDaemon(settings: RunSettings): Promise<number> {
  // Nothing the runner writes (queue files, records, attempt directories) is readable by other users.
  process.umask(RUNNER_UMASK);
  const log = createLogger(settings["log-format"], settings.debug);
  const workingDir = settings["working-dir"] ?? defaultWorkingDir();
  const cacheDir = settings["cache-dir"] ?? defaultCacheDir();
  const queueRoot = settings["queue-root"] ?? defaultQueueRoot();
  try {
    // Root runs jobs as a job user, who must pass through to its attempt directory and venv (0711).
    prepareRunnerDirs({ workingDir, cacheDir, queueRoot, jobUserTraverses: process.geteuid?.() === 0 }, log);
  } catch (err) {
    if (!(err instanceof PrivateDirError)) throw err;
    log.error(err.message);
    return 2;
  }
  const cpuOnly = settings["cpu-only"];
  const inventory = readInventory(process.env);
  log.info(describeInventory(inventory));
  for (const p of inventory.problems) log.warn(p);
  const gpuProblem = gpuStartupProblem(inventory, cpuOnly);
  if (gpuProblem) {
    log.error(gpuProblem);
    return 2;
  }
  const gpus = cpuOnly
    ? undefined
    : new GpuAllocator(inventory.devices, {
        shareCards: settings["gpu-share"],
        slotsPerCard: Math.max(1, settings["gpu-slots-per-card"]),
      });
  const capacity = machineCapacity(
    {
      maxCores: settings["max-cores"],
      maxMemBytes: settings["max-mem"],
      maxDiskBytes: settings["max-disk"],
      workingDir,
    },
    gpus ? inventory : undefined,
  );
  const runnerEnv = { ...process.env };
  const venvs = venvCacheFromSettings(settings, cacheDir, runnerEnv, (m) => log.info(m));
  // One filter for every backend, read at each discovery: the ConfigMap may replace it live.
  const queueFilter = new LiveQueueFilter({
    match: settings["queue-match"],
    mismatch: settings["queue-mismatch"],
  });
  const backends: QueueBackend[] = [
    new LocalQueueBackend({
      root: queueRoot,
      filter: queueFilter,
      maxDeliveries: settings["max-deliveries"],
      log: (m) => log.info(m),
    }),
  ];
  const rabbit = rabbitBackendFromSettings(settings, log, queueFilter);
  if (rabbit) backends.push(rabbit);
  const sqs = sqsBackendFromSettings(settings, log, process.env, queueFilter);
  if (sqs) backends.push(sqs);
  const pubsub = pubsubBackendFromSettings(settings, log, queueFilter);
  if (pubsub) backends.push(pubsub);
  // Every gs: store of this runner's experiments uses this configuration's clients.
  const stores = new Stores(
    new GcsClients({ certsDir: settings["google-certs"], apiEndpoint: settings["gcs-endpoint"] }),
    { concurrency: Math.max(1, settings["transfer-concurrency"]), partBytes: settings["transfer-part-size"] },
  );
  const storageIdentity = storageIdentitySetting(settings["storage-identity"], settings["storage-identity-allow"]);
  const identityLines = describeStorageIdentity(storageIdentity);
  for (const line of identityLines.info) log.info(line);
  for (const line of identityLines.warn) log.warn(line);
  const pool = new ResourcePool(capacity, gpus, {
    freeBytes: () => freeDiskBytes(workingDir),
    floorBytes: settings["min-free-disk"],
  });
  const refreshMs = settings["gpu-refresh-interval"];
  const gpuWatch =
    gpus && inventory.devices.length && refreshMs > 0
      ? startGpuWatch({ allocator: gpus, refreshIntervalMs: refreshMs, log })
      : undefined;
  const runnerId = crypto.randomUUID().slice(0, 8);
  const choice = await chooseSandbox(settings, { queueRoot, workingDir, cacheDir }, inventory.devices, log);
  if ("exitCode" in choice) return choice.exitCode;
  const { sandbox, noneJobUser } = choice;
  venvs.options.isolation = { sandbox, jobUser: resolveJobUser(settings["job-user"]) };
  const cgroups = settings["cgroup-limits"] ? detectCgroups() : undefined;
  if (cgroups?.version === "none") log.warn(`experiments' RAM and CPU limits are not enforced: ${cgroups.reason}`);
  else if (cgroups) {
    log.info(`experiments' RAM and CPU limits are enforced with cgroup v${cgroups.version}`);
    for (const n of cgroups.notes) log.info(n);
    const orphaned = await killOrphanedCgroups(cgroups);
    if (orphaned.length)
      log.warn(
        `killed the processes left in ${orphaned.length} cgroup(s) of a runner that exited: ${orphaned.join(", ")}`,
      );
    const reaped = reapStaleCgroups(cgroups);
    if (reaped.removed.length) log.info(`removed ${reaped.removed.length} empty cgroup(s) left by an earlier runner`);
  }
  await reapOrphans(workingDir, { runnerId, keepDirectories: settings.debug }, (m) => log.warn(m));
  const fileRoots = fileStorageRoots(settings);
  setRunnerLimits({
    fileRoots: fileRoots.flag.length ? fileRoots.flag : fileRoots.local,
    allowPrivate: settings["allow-private-endpoints"],
  });
  log.info(
    fileRoots.description +
      (settings["allow-private-endpoints"]
        ? "; requests may name loopback and private-network endpoints (--allow-private-endpoints)"
        : ""),
  );
  const events = new RunnerEvents();
  const envelopeKeys = envelopeKeysFromSettings(settings, (p) => log.warn(p)) ?? NO_ENVELOPE_KEYS;
  const maxRequestAgeMs = settings["max-request-age"];
  const replay = new ReplayGuard({
    dir: join(runnerWorkRoot(workingDir), ".completed"),
    maxAgeMs: maxRequestAgeMs,
    log: (m) => log.warn(m),
  }).load();
  const clearText = clearTextAllowed(settings);
  if (settings["encrypt-dir"] && clearText)
    log.warn(
      "--clear-text-messages=true with --encrypt-dir: plain (unencrypted, unsigned) requests are accepted on " +
        "queues without a signing key",
    );
  // Reports to <queue>_response where such a queue exists (encrypted where the experimenter's key is known).
  const reports = new ResponseReports({
    events,
    publishers: responsePublishersFor(backends),
    keyFor: (queue) => envelopeKeys.responseKeyFor(queue)?.key,
    executorId: hostname(),
    log,
  });
  const runner = new Runner(
    backends,
    pool,
    {
      workingDir,
      runnerId,
      host: hostname(),
      runnerEnv,
      venvs,
      artifacts: new ArtifactCache(join(cacheDir, "artifacts"), settings["cache-size"]),
      allowEnvSecrets: settings["allow-env-secrets"],
      googleCertsDir: settings["google-certs"],
      cgroups,
      sandbox,
      jobUser: noneJobUser,
      fileStorageRoots: fileRoots.flag,
      readRequest: requestReader({ keys: envelopeKeys, clearTextAllowed: clearText }),
      maxDurationMs: settings["max-duration"],
      keepDirectories: settings.debug,
      log,
      events,
      admission: new RequestAdmission({ maxAgeMs: maxRequestAgeMs, replay }),
      queueRefusal: envelopeKeys.queueRefusal ? (queue) => envelopeKeys.queueRefusal?.(queue) : undefined,
      storageIdentity,
      localFileStorageRoots: fileRoots.local,
      allowPrivateEndpoints: settings["allow-private-endpoints"],
      stores,
    },
    {
      limitTasks: settings["limit-tasks"],
      limitIdleMs: settings["limit-idle-duration"],
      shutdownGraceMs: settings["shutdown-grace"],
    },
  );
  log.info(
    `studio-runner ${VERSION} on ${hostname()}: ${capacity.cpus} cpus, ${formatBytes(capacity.ramBytes)} RAM, ` +
      `${formatBytes(capacity.hddBytes)} disk, ${capacity.gpus} GPU(s)${cpuOnly ? " (--cpu-only)" : ""}; local ` +
      `queues in ${queueRoot}`,
  );
  if (rabbit) {
    const fallback = rabbit.options.fallbackQueues?.length
      ? `, or the --amqp-queues list ${rabbit.options.fallbackQueues.join(",")} without it`
      : "";
    log.info(
      `RabbitMQ queues at ${rabbit.address.redacted}: those bound to StudioML.topic, listed by the management ` +
        `API at ${rabbit.management.redacted}${fallback}`,
    );
  }
  // Probed in the background: the first poll does not wait for them (an attempt does).
  void findInterpreters(runnerEnv).then((pythons) =>
    log.info(`python interpreters: ${pythons.map((p) => `${p.versionText} (${p.path})`).join(", ") || "none found"}`),
  );
  let observe: ReturnType<typeof startObservability>;
  try {
    observe = startObservability({
      settings,
      events,
      control: runner,
      host: hostname(),
      runnerId,
      version: VERSION,
      pool,
      gpus,
      log,
    });
  } catch (err) {
    if (!(err instanceof ObserveStartError)) throw err;
    log.error(err.message);
    return 2;
  }
  if (observe) log.info(observe.description);
  const onSignal = (signal: NodeJS.Signals) => runner.drain(signal);
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Maintenance: SIGUSR1 suspends, SIGUSR2 resumes; in Kubernetes the drain ConfigMap does the same.
  const removeMaintenanceSignals = installMaintenanceSignals(runner);
  const configMapDrain = await startConfigMapDrain(settings, runner, queueFilter, log);
  try {
    await runner.run();
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    removeMaintenanceSignals();
    await configMapDrain?.stop();
    gpuWatch?.stop();
    await observe?.stop();
    await reports.close(REPORTS_CLOSE_WAIT_MS);
  }
  log.info("stopped");
  return 0;
}
