// Fault injection against the compiled runner and real brokers, ending with one table of
// figures: SIGKILL of the runner at random moments (local queue, RabbitMQ, SQS, Pub/Sub), a poison
// request, drains, broker connection drops, S3 storage slow or failing mid-upload (s3rver behind
// bench/fault-proxy.ts), a full disk while unpacking, and a job flooding its log. Run with
// `node_modules/.bin/bun bench/chaos.ts` (about 5 minutes on 2 cores); `--rounds N` scales the
// number of experiments per backend.

import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SqsQueueBackend } from "../src/queue/sqs/sqs-queue.ts";
import {
  enqueue,
  ensureBinary,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  tarNames,
  type Sandbox,
} from "../test/helpers/e2e.ts";
import {
  AMQP_URL,
  closeConnectionsNamed,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  readyCount,
  uniqueQueue,
} from "../test/helpers/rabbitmq.ts";
import { hostname } from "node:os";
import { startSqsServer } from "../test/helpers/sqs-server.ts";
import { pubsubEmulatorInstalled, startPubsubEmulator } from "../test/helpers/pubsub-emulator.ts";
import { PubsubQueueBackend } from "../src/queue/pubsub/pubsub-queue.ts";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createWriteStream } from "node:fs";
import { S3Store } from "../src/storage/s3/s3-store.ts";
import { makeTar, sha256File } from "../test/helpers/e2e.ts";
import { motoAvailable, startMoto } from "../test/helpers/s3-server.ts";
import { FaultProxy, type FaultPlan } from "./fault-proxy.ts";

const argRounds = process.argv.indexOf("--rounds");
const EXPERIMENTS_PER_BACKEND = argRounds > 0 ? Number(process.argv[argRounds + 1]) : 10;
const MAX_KILLS = 40;
const RUNNER_LIFE_MIN_MS = 300;
const RUNNER_LIFE_MAX_MS = 3_000;

type Row = {
  scenario: string;
  backend: string;
  faults: string;
  experiments: number;
  lost: number;
  duplicates: number;
  extra: string;
  wallS: number;
};
const rows: Row[] = [];

const WORK = `import json, os, time
time.sleep(float(os.environ["SLEEP_S"]))
m = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(m["modeldir"], "done.txt"), "w").write(os.environ["STUDIOML_EXPERIMENT"])
print("complete", flush=True)
`;

const rand = (min: number, max: number) => min + Math.random() * (max - min);

/** What the runner was doing when it was killed, from the last lines of its log. */
function phaseOf(stderr: string): string {
  const lines = stderr
    .trim()
    .split("\n")
    .filter((l) => /starting experiment|python environment|the script ran|finished|took|idle|serving/.test(l));
  const last = lines[lines.length - 1] ?? "";
  if (/starting experiment/.test(last)) return "fetch/env";
  if (/python environment/.test(last)) return "run";
  if (/the script ran/.test(last)) return "upload/ack";
  return "between experiments";
}

type Backend = {
  name: string;
  args: (sb: Sandbox) => string[];
  /** Extra environment for the runner processes. */
  env?: Record<string, string>;
  publish: (sb: Sandbox, bodies: object[]) => Promise<void>;
  remaining: (sb: Sandbox) => Promise<number>;
  cleanup?: () => Promise<void>;
};

async function killAndRestart(backend: Backend): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox(`chaos-${backend.name}`, { cacheDir: SHARED_CACHE });
  const exps = Array.from({ length: EXPERIMENTS_PER_BACKEND }, () =>
    simpleExperiment(sb.storageRoot, { "main.py": WORK }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = { SLEEP_S: rand(0.3, 1.5).toFixed(2) };
      delete m.config.database;
    }),
  );
  await backend.publish(
    sb,
    exps.map((e) => e.message),
  );
  const logs: string[] = [];
  const phases = new Map<string, number>();
  let kills = 0;
  while (kills < MAX_KILLS) {
    // Crash recovery is what is measured here, so crashes may redeliver many times; the poison
    // bound has its own scenario below.
    const runner = new RunnerProcess(
      sb,
      [...backend.args(sb), "--limit-idle-duration", "3s", "--max-deliveries", "100"],
      backend.env,
    );
    // Killed a random time after it started serving, so the kills land in the work itself.
    await runner.waitForLog(/serving /, 30_000).catch(() => undefined);
    const lifeMs = rand(RUNNER_LIFE_MIN_MS, RUNNER_LIFE_MAX_MS);
    const ended = await Promise.race([runner.exited.then(() => true), Bun.sleep(lifeMs).then(() => false)]);
    if (ended) {
      logs.push(runner.stderr);
      if ((await backend.remaining(sb)) === 0) break;
      continue;
    }
    const phase = phaseOf(runner.stderr);
    runner.child.kill("SIGKILL");
    await runner.exited;
    logs.push(runner.stderr);
    kills++;
    phases.set(phase, (phases.get(phase) ?? 0) + 1);
  }
  // A last runner with no faults finishes whatever is left.
  const final = new RunnerProcess(
    sb,
    [...backend.args(sb), "--limit-idle-duration", backend.name === "pubsub" ? "15s" : "6s", "--max-deliveries", "100"],
    backend.env,
  );
  await final.exited;
  logs.push(final.stderr);

  const all = logs.join("\n");
  let lost = 0;
  let duplicates = 0;
  let reruns = 0;
  for (const e of exps) {
    let ok = false;
    try {
      ok =
        tarMember(join(e.experimentDir, "output.tar")).includes("complete") &&
        tarNames(join(e.experimentDir, "modeldir.tar")).includes("done.txt");
    } catch {
      ok = false;
    }
    const finished = all.split(`experiment ${e.key} finished`).length - 1;
    const starts = all.split(`starting experiment ${e.key}`).length - 1;
    if (!ok || finished === 0) {
      lost++;
      console.log(`lost? ${backend.name} ${e.key}: output ok=${ok}, finished lines ${finished}, starts ${starts}`);
      if (process.env.CHAOS_DEBUG)
        console.log(
          all
            .split("\n")
            .filter((l) => l.includes(e.key) || /WARN|ERROR|✖/.test(l))
            .slice(0, 40)
            .join("\n"),
        );
    }
    if (finished > 1) duplicates++;
    reruns += Math.max(0, starts - 1);
  }
  const left = await backend.remaining(sb);
  const phaseText = [...phases].map(([p, n]) => `${p} ${n}`).join(", ");
  rows.push({
    scenario: "SIGKILL runner, restart",
    backend: backend.name,
    faults: `${kills} kills (${phaseText || "none"})`,
    experiments: exps.length,
    lost,
    duplicates,
    extra: `${reruns} re-runs; ${left} left in queue`,
    wallS: (Date.now() - started) / 1000,
  });
  await backend.cleanup?.();
}

const localBackend: Backend = {
  name: "local",
  args: () => ["--queue-match", "^local_chaos$"],
  publish: async (sb, bodies) => {
    for (const b of bodies) enqueue(sb.queueRoot, "local_chaos", b);
  },
  remaining: async (sb) =>
    filesIn(join(sb.queueRoot, "local_chaos")).length + filesIn(join(sb.queueRoot, ".inflight", "local_chaos")).length,
};

function rabbitBackend(): Backend {
  const queue = uniqueQueue("rmq_chaos");
  return {
    name: "rabbitmq",
    args: (sb) => ["--amqp-url", AMQP_URL, "--queue-match", `^${queue}$`, "--file-storage-roots", sb.storageRoot],
    publish: (_sb, bodies) => publishLikeClient(queue, bodies),
    remaining: async () => (await readyCount(queue)) ?? 0,
  };
}

async function sqsBackend(): Promise<Backend> {
  const server = await startSqsServer();
  const queue = `sqs_chaos_${Date.now()}`;
  const credentials = { accessKeyId: "AKIAFAKE", secretAccessKey: "fake-secret-for-fauxqs" };
  const client = () =>
    new SqsQueueBackend({
      accounts: [{ name: "chaos", credentials, region: "us-east-1" }],
      endpoint: server.endpoint,
      maxDeliveries: 3,
    });
  const certs = (sb: Sandbox) => {
    const dir = join(sb.dir, "sqs-certs", "chaos");
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, "credentials"),
      `[default]\naws_access_key_id = ${credentials.accessKeyId}\naws_secret_access_key = ${credentials.secretAccessKey}\n`,
    );
    writeFileSync(join(dir, "config"), "[default]\nregion = us-east-1\n");
    return join(sb.dir, "sqs-certs");
  };
  return {
    name: "sqs",
    args: (sb) => [
      "--sqs-certs",
      certs(sb),
      "--sqs-endpoint",
      server.endpoint,
      "--sqs-visibility",
      "3s",
      "--queue-match",
      `^${queue}$`,
      "--file-storage-roots",
      sb.storageRoot,
    ],
    publish: async (_sb, bodies) => {
      const q = client();
      for (const b of bodies) await q.publish(queue, JSON.stringify(b));
      await q.close();
    },
    remaining: async () => {
      // Messages hidden by a killed runner's lease come back within the 3 s visibility.
      await Bun.sleep(3500);
      const q = client();
      let seen = false;
      await q.open(queue).receive({ accept: () => ((seen = true), false) });
      await q.close();
      return seen ? 1 : 0;
    },
    cleanup: () => server.stop(),
  };
}

async function pubsubBackend(): Promise<Backend | undefined> {
  if (!pubsubEmulatorInstalled()) return undefined;
  const emulator = await startPubsubEmulator();
  const project = `chaos-${Date.now()}`;
  const queue = `pubsub_chaos_${Date.now()}`;
  const env = { PUBSUB_EMULATOR_HOST: emulator.host };
  const client = () => new PubsubQueueBackend({ projectId: project, maxDeliveries: 100 });
  const saved = process.env.PUBSUB_EMULATOR_HOST;
  process.env.PUBSUB_EMULATOR_HOST = emulator.host;
  return {
    name: "pubsub",
    env,
    args: (sb) => [
      "--pubsub-project",
      project,
      "--pubsub-ack-deadline",
      "10s",
      "--queue-match",
      `^${queue}$`,
      "--file-storage-roots",
      sb.storageRoot,
    ],
    publish: async (_sb, bodies) => {
      const q = client();
      for (const b of bodies) await q.publish(queue, JSON.stringify(b));
      await q.close();
    },
    // A killed runner's messages come back when their 10 s deadline runs out.
    remaining: async () => {
      await Bun.sleep(11_000);
      const q = client();
      let seen = false;
      await q.open(queue).receive({ accept: () => ((seen = true), false) });
      await q.close();
      return seen ? 1 : 0;
    },
    cleanup: async () => {
      if (saved === undefined) delete process.env.PUBSUB_EMULATOR_HOST;
      else process.env.PUBSUB_EMULATOR_HOST = saved;
      await emulator.stop();
    },
  };
}

async function poison(): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox("chaos-poison", { cacheDir: SHARED_CACHE });
  const exp = simpleExperiment(sb.storageRoot, { "main.py": WORK }, (m) => {
    // The workspace lives on an S3 server that is down: a runner-side fault every time.
    m.experiment.artifacts.workspace.qualified = "s3://127.0.0.1:9/studioml-artifacts/blobstore/none.tar";
    // With its own (test) keys, as the client sends them: a request without any is refused at once
    // (the runner's identity does not serve it), which is not the fault this row is about.
    m.experiment.artifacts.workspace.credentials = {
      aws: { access_key: "AKIACHAOSPOISON", secret_access_key: "chaos-poison-not-a-secret", region: "us-east-1" },
    };
    m.config.storage = { type: "s3", endpoint: "http://127.0.0.1:9", bucket: "studioml-artifacts" };
    m.config.env = { SLEEP_S: "0" };
  });
  const id = enqueue(sb.queueRoot, "local_poison", exp.message);
  const runner = new RunnerProcess(sb, [
    "--queue-match",
    "^local_poison$",
    "--limit-idle-duration",
    "4s",
    "--max-deliveries",
    "3",
  ]);
  await runner.exited;
  let reasons = 0;
  let kept = false;
  try {
    const doc = JSON.parse(readFileSync(join(sb.queueRoot, ".failed", "local_poison", `${id}.reason.json`), "utf8"));
    kept = true;
    reasons = Array.isArray(doc.reasons) ? doc.reasons.length : JSON.stringify(doc).split("127.0.0.1:9").length - 1;
  } catch {
    kept = false;
  }
  const deliveries = runner.stderr.split(`starting experiment ${exp.key}`).length - 1;
  rows.push({
    scenario: "poison request (storage down)",
    backend: "local",
    faults: "every delivery fails",
    experiments: 1,
    lost: kept ? 0 : 1,
    duplicates: 0,
    extra: `${deliveries} deliveries (bound 3), kept in the failed place with ${reasons} reason(s)`,
    wallS: (Date.now() - started) / 1000,
  });
}

async function diskFull(): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox("chaos-disk", { cacheDir: SHARED_CACHE });
  const small = join(sb.dir, "small-disk");
  mkdirSync(small, { recursive: true });
  if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", small]).status !== 0) {
    rows.push({
      scenario: "disk full while unpacking",
      backend: "local",
      faults: "not run: cannot mount a tmpfs here",
      experiments: 0,
      lost: 0,
      duplicates: 0,
      extra: "",
      wallS: 0,
    });
    return;
  }
  try {
    // 48 MiB of incompressible data into a 24 MiB working directory.
    const exp = simpleExperiment(
      sb.storageRoot,
      { "main.py": WORK, "data/blob.bin": randomBytes(48 * 1024 * 1024).toString("base64") },
      (m) => {
        m.config.env = { SLEEP_S: "0" };
        // A budget the workspace fits, so the unpack runs into the full disk itself.
        m.experiment.resources_needed.hdd = "500m";
        delete m.config.database;
      },
    );
    const id = enqueue(sb.queueRoot, "local_disk", exp.message);
    const runner = new RunnerProcess(sb, [
      "--queue-match",
      "^local_disk$",
      "--working-dir",
      small,
      "--limit-idle-duration",
      "4s",
      "--max-deliveries",
      "2",
      "--min-free-disk",
      "0",
      "--max-disk",
      "1g",
    ]);
    await runner.exited;
    const reasonFile = join(sb.queueRoot, ".failed", "local_disk", `${id}.reason.json`);
    let reason = "";
    try {
      reason = readFileSync(reasonFile, "utf8");
    } catch {
      reason = "";
    }
    const leftBytes = Number(execFileSync("du", ["-sb", small], { encoding: "utf8" }).split("\t")[0]);
    rows.push({
      scenario: "disk full while unpacking",
      backend: "local",
      faults: "48 MiB workspace into 24 MiB",
      experiments: 1,
      lost: reason ? 0 : 1,
      duplicates: 0,
      extra: `${/no space|ENOSPC|disk is full/i.test(reason) ? "clear error (no space left)" : `UNCLEAR error: ${reason.slice(0, 200)}`}, requeued, kept after ${runner.stderr.split(`starting experiment ${exp.key}`).length - 1} deliveries; ${leftBytes} bytes left in the working dir`,
      wallS: (Date.now() - started) / 1000,
    });
  } finally {
    spawnSync("umount", [small]);
  }
}

/** How long the flooding job writes (CHAOS_FLOOD_SECONDS, default 5). */
const FLOOD_SECONDS = Number(process.env.CHAOS_FLOOD_SECONDS ?? 5);

async function logFlood(): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox("chaos-flood", { cacheDir: SHARED_CACHE });
  const FLOOD = `import sys, time
line = ("x" * 1023) + "\\n"
block = line * 1024
end = time.time() + ${FLOOD_SECONDS}
n = 0
while time.time() < end:
    sys.stdout.write(block)
    n += len(block)
sys.stdout.flush()
print("wrote", n, "bytes", flush=True)
`;
  const exp = simpleExperiment(sb.storageRoot, { "main.py": FLOOD }, (m) => {
    m.experiment.pythonver = "3.11";
    m.experiment.resources_needed.ram = "1g";
    delete m.config.database;
  });
  enqueue(sb.queueRoot, "local_flood", exp.message);
  const runner = new RunnerProcess(sb, ["--queue-match", "^local_flood$", "--limit-tasks", "1"]);
  let peakKiB = 0;
  const sampler = setInterval(() => {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${runner.child.pid}/status`, "utf8"));
      if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
    } catch {
      // exited
    }
  }, 100);
  await runner.exited;
  clearInterval(sampler);
  // The log is hundreds of MB: only its end is read back.
  const out =
    spawnSync("bash", ["-c", 'tar -xOf "$1" | tail -c 4096', "_", join(exp.experimentDir, "output.tar")], {
      encoding: "utf8",
    }).stdout ?? "";
  if (!/wrote \d+ bytes/.test(out))
    console.log(`flood: runner log:\n${runner.stderr.slice(-3000)}\noutput tail:\n${out.slice(-500)}`);
  const wrote = Number(/wrote (\d+) bytes/.exec(out)?.[1] ?? 0);
  rows.push({
    scenario: `job floods its log for ${FLOOD_SECONDS} s`,
    backend: "local",
    faults: `${(wrote / FLOOD_SECONDS / 1e6).toFixed(0)} MB/s of output`,
    experiments: 1,
    lost: /wrote \d+ bytes/.test(out) ? 0 : 1,
    duplicates: 0,
    extra: `runner peak RSS ${(peakKiB / 1024).toFixed(0)} MiB; ${(wrote / 1e6).toFixed(0)} MB logged`,
    wallS: (Date.now() - started) / 1000,
  });
}

const STORAGE_WORK = `import json, os, random, time
time.sleep(float(os.environ["SLEEP_S"]))
m = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
key = os.environ["STUDIOML_EXPERIMENT"]
open(os.path.join(m["modeldir"], "done.txt"), "w").write(key)
random.seed(key)
open(os.path.join(m["modeldir"], "weights.bin"), "wb").write(bytes(random.getrandbits(8) for _ in range(int(os.environ["MODEL_BYTES"]))))
print("complete", flush=True)
`;

/**
 * S3 storage (moto_server) reached only through the fault proxy, a local queue, repeated trials: every
 * experiment must end complete (output.tar and modeldir.tar in storage are whole, readable tars
 * of the final state), acked once, never before its upload; retries show in the runner's log.
 */
async function storageFaults(label: string, faults: string, plan: FaultPlan, count: number): Promise<void> {
  const started = Date.now();
  const BUCKET = "studioml-artifacts";
  const KEYS = { accessKey: "AKIACHAOSSTORAGE", secretAccessKey: "chaos-storage-secret" };
  const MODEL_BYTES = 3 * 1024 * 1024;
  // moto, like AWS, stores nothing of a PUT whose body ends short; s3rver stores the bytes it got
  // (a truncated object), which no real S3 does.
  if (!motoAvailable()) {
    rows.push({
      scenario: label,
      backend: "local + s3",
      faults: "not run: no moto_server",
      experiments: 0,
      lost: 0,
      duplicates: 0,
      extra: "",
      wallS: 0,
    });
    return;
  }
  const server = await startMoto({ buckets: [BUCKET] });
  const proxy = new FaultProxy(server.port, {});
  const proxyPort = await proxy.start();
  const via = `127.0.0.1:${proxyPort}`;
  const direct = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
  const sb = await makeSandbox("chaos-storage", { cacheDir: SHARED_CACHE });
  const queue = "local_storage";
  const tarPath = join(sb.dir, "ws.tar");
  makeTar(tarPath, { "main.py": STORAGE_WORK });
  const wsKey = `blobstore/${sha256File(tarPath)}.tar`;
  await direct.put(`s3://${server.host}/${BUCKET}/${wsKey}`, Readable.from([readFileSync(tarPath)]));
  const exps = Array.from({ length: count }, () =>
    simpleExperiment(sb.storageRoot, { "main.py": STORAGE_WORK }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = { SLEEP_S: rand(0.3, 1.0).toFixed(2), MODEL_BYTES: String(MODEL_BYTES) };
      m.config.storage = {
        type: "s3",
        endpoint: `http://${via}`,
        bucket: BUCKET,
        credentials: { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } },
      };
      delete m.config.database;
      for (const [l, a] of Object.entries<any>(m.experiment.artifacts)) {
        if (l === "workspace") a.key = wsKey;
        a.qualified = `s3://${via}/${BUCKET}/${a.key}`;
        a.bucket = BUCKET;
      }
    }),
  );
  for (const e of exps) enqueue(sb.queueRoot, queue, e.message);
  proxy.plan = plan;
  const logs: string[] = [];
  // Runners until the queue is empty: a request requeued after an exhausted upload comes back.
  for (let round = 0; round < 6; round++) {
    const runner = new RunnerProcess(sb, [
      "--queue-match",
      `^${queue}$`,
      "--limit-idle-duration",
      "5s",
      "--max-deliveries",
      "100",
    ]);
    await runner.exited;
    logs.push(runner.stderr);
    if (!filesIn(join(sb.queueRoot, queue)).length && !filesIn(join(sb.queueRoot, ".inflight", queue)).length) break;
  }
  proxy.plan = {};
  const all = logs.join("\n");
  let lost = 0;
  let duplicates = 0;
  let partial = 0;
  let acks = 0;
  let complete = 0;
  for (const e of exps) {
    const finished = all.split(`experiment ${e.key} finished`).length - 1;
    acks += finished;
    if (finished > 1) duplicates++;
    let whole = false;
    try {
      const out = join(sb.dir, `${e.key}-output.tar`);
      const model = join(sb.dir, `${e.key}-modeldir.tar`);
      await pipeline(
        await direct.get(`s3://${server.host}/${BUCKET}/experiments/${e.key}/output.tar`),
        createWriteStream(out),
      );
      await pipeline(
        await direct.get(`s3://${server.host}/${BUCKET}/experiments/${e.key}/modeldir.tar`),
        createWriteStream(model),
      );
      const sizes = execFileSync("tar", ["-tvf", model], { encoding: "utf8" });
      whole =
        tarMember(out).includes("complete") &&
        tarMember(model, "done.txt") === e.key &&
        new RegExp(`\\s${MODEL_BYTES}\\s.*weights\\.bin`).test(sizes);
      if (!whole) partial++;
    } catch (err) {
      if (finished) partial++;
      if (process.env.CHAOS_DEBUG) console.log(`storage ${e.key}: ${(err as Error).message}`);
    }
    if (whole) complete++;
    if (!whole || finished === 0) lost++;
  }
  const retries = all.split("\n").filter((l) => /failed \(.*\); try \d+ of \d+ in/.test(l));
  const pauses = retries.map((l) => Number(/in ([\d.]+)s/.exec(l)?.[1] ?? 0));
  const requeues = all.split("\n").filter((l) => /requeued/.test(l)).length;
  const s = proxy.stats;
  rows.push({
    scenario: label,
    backend: "local + s3",
    faults: faults
      .replace("{uploads}", String(s.uploads))
      .replace("{resets}", String(s.resets))
      .replace("{unavailable}", String(s.unavailable)),
    experiments: exps.length,
    lost,
    duplicates,
    extra: `acks ${acks}, complete uploads ${complete}, partial objects ${partial}; ${retries.length} artifact upload retries in the log${retries.length ? ` (pauses ${Math.min(...pauses)}–${Math.max(...pauses)} s)` : ""}, ${requeues} requeues; ${filesIn(join(sb.queueRoot, queue)).length} left in queue`,
    wallS: (Date.now() - started) / 1000,
  });
  if (process.env.CHAOS_DEBUG) console.log(retries.slice(0, 10).join("\n"));
  await proxy.stop();
  await server.stop();
}

/** Checks every experiment once the dust has settled: lost = no complete result; duplicates = acked twice. */
function tally(exps: Array<{ key: string; experimentDir: string }>, logs: string) {
  let lost = 0;
  let duplicates = 0;
  let falseFinishes = 0;
  for (const e of exps) {
    let ok = false;
    try {
      ok = tarMember(join(e.experimentDir, "output.tar")).includes("complete");
    } catch {
      ok = false;
    }
    const finished = logs.split(`experiment ${e.key} finished`).length - 1;
    if (!ok || finished === 0) lost++;
    if (finished > 1) duplicates++;
    if (finished > 0 && !ok) falseFinishes++;
  }
  return { lost, duplicates, falseFinishes };
}

async function drain(): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox("chaos-drain", { cacheDir: SHARED_CACHE });
  const exps = Array.from({ length: 6 }, () =>
    simpleExperiment(sb.storageRoot, { "main.py": WORK }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = { SLEEP_S: "3" };
      delete m.config.database;
    }),
  );
  for (const e of exps) enqueue(sb.queueRoot, "local_drain", e.message);
  const args = ["--queue-match", "^local_drain$", "--max-cores", "2", "--limit-idle-duration", "3s"];
  // One SIGTERM: the running two get a 1 s grace, then are checkpointed and requeued uncounted.
  const a = new RunnerProcess(sb, [...args, "--shutdown-grace", "1s"]);
  await a.waitForLog(/starting experiment/, 60_000);
  await Bun.sleep(1000);
  a.child.kill("SIGTERM");
  await a.exited;
  // Two SIGTERMs: the runner must be gone promptly, its claims given back.
  const b = new RunnerProcess(sb, [...args, "--shutdown-grace", "1m"]);
  await b.waitForLog(/starting experiment/, 60_000);
  await Bun.sleep(500);
  const termAt = Date.now();
  b.child.kill("SIGTERM");
  await Bun.sleep(200);
  b.child.kill("SIGTERM");
  await b.exited;
  const exitMs = Date.now() - termAt;
  const inflightAfter = filesIn(join(sb.queueRoot, ".inflight", "local_drain")).length;
  const c = new RunnerProcess(sb, args);
  await c.exited;
  const t = tally(exps, a.stderr + b.stderr + c.stderr);
  rows.push({
    scenario: "SIGTERM drain, then SIGTERM twice",
    backend: "local",
    faults: "2 drains with jobs running",
    experiments: exps.length,
    lost: t.lost,
    duplicates: t.duplicates,
    extra: `${t.falseFinishes} reported finished without a result; double SIGTERM exit in ${exitMs} ms with ${inflightAfter} claims left held`,
    wallS: (Date.now() - started) / 1000,
  });
}

async function brokerDrop(): Promise<void> {
  const started = Date.now();
  const sb = await makeSandbox("chaos-broker", { cacheDir: SHARED_CACHE });
  const queue = uniqueQueue("rmq_chaos_drop");
  const exps = Array.from({ length: 6 }, () =>
    simpleExperiment(sb.storageRoot, { "main.py": WORK }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = { SLEEP_S: "2" };
      delete m.config.database;
    }),
  );
  await publishLikeClient(
    queue,
    exps.map((e) => e.message),
  );
  const runner = new RunnerProcess(sb, [
    "--amqp-url",
    AMQP_URL,
    "--queue-match",
    `^${queue}$`,
    "--max-cores",
    "2",
    "--file-storage-roots",
    sb.storageRoot,
    "--limit-idle-duration",
    "5s",
  ]);
  let drops = 0;
  await runner.waitForLog(/starting experiment/, 60_000);
  for (let i = 0; i < 3 && runner.child.exitCode === null; i++) {
    await Bun.sleep(rand(800, 2500));
    drops += await closeConnectionsNamed(`studio-runner ${hostname()} pid ${runner.child.pid}`, 10_000).catch(() => 0);
  }
  await runner.exited;
  const t = tally(exps, runner.stderr);
  rows.push({
    scenario: "broker connection dropped mid-job",
    backend: "rabbitmq",
    faults: `${drops} connection drops`,
    experiments: exps.length,
    lost: t.lost,
    duplicates: t.duplicates,
    extra: `${(await readyCount(queue)) ?? 0} left in queue`,
    wallS: (Date.now() - started) / 1000,
  });
}

function printTable() {
  const head = [
    "scenario",
    "backend",
    "faults injected",
    "experiments",
    "lost",
    "duplicate completions",
    "wall s",
    "notes",
  ];
  const body = rows.map((r) => [
    r.scenario,
    r.backend,
    r.faults,
    String(r.experiments),
    String(r.lost),
    String(r.duplicates),
    r.wallS.toFixed(1),
    r.extra,
  ]);
  console.log(`\n| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
  for (const b of body) console.log(`| ${b.join(" | ")} |`);
  console.log(
    `\n${new Date().toISOString()}, ${EXPERIMENTS_PER_BACKEND} experiments per backend, runner lives ${RUNNER_LIFE_MIN_MS}-${RUNNER_LIFE_MAX_MS} ms between kills`,
  );
}

async function main() {
  ensureBinary();
  const only = process.argv.indexOf("--only") > 0 ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
  const want = (name: string) => !only || only === name;
  if (want("local")) await killAndRestart(localBackend);
  if (want("rabbitmq")) {
    if ((await rabbitMQAvailable()) || process.env.CI) {
      await ensureRabbitMQ();
      await killAndRestart(rabbitBackend());
    } else
      rows.push({
        scenario: "SIGKILL runner, restart",
        backend: "rabbitmq",
        faults: "not run: no RabbitMQ",
        experiments: 0,
        lost: 0,
        duplicates: 0,
        extra: "",
        wallS: 0,
      });
  }
  if (want("sqs")) await killAndRestart(await sqsBackend());
  if (want("pubsub")) {
    const backend = await pubsubBackend();
    if (backend) await killAndRestart(backend);
    else
      rows.push({
        scenario: "SIGKILL runner, restart",
        backend: "pubsub",
        faults: "not run: no Pub/Sub emulator",
        experiments: 0,
        lost: 0,
        duplicates: 0,
        extra: "",
        wallS: 0,
      });
  }
  if (want("poison")) await poison();
  if (want("drain")) await drain();
  if (want("broker") && ((await rabbitMQAvailable()) || process.env.CI)) {
    await ensureRabbitMQ();
    await brokerDrop();
  }
  if (want("storage-slow"))
    await storageFaults(
      "storage slow",
      "{uploads} upload requests, every chunk delayed 20–250 ms",
      { delayMs: [20, 250] },
      6,
    );
  if (want("storage-failing")) {
    await storageFaults(
      "storage failing mid-upload",
      "{uploads} upload requests: {resets} reset mid-body, {unavailable} answered 503",
      { resetProbability: 0.4, unavailableProbability: 0.25, delayMs: [0, 20] },
      8,
    );
  }
  if (want("disk")) await diskFull();
  if (want("flood")) await logFlood();
  printTable();
  for (const d of readdirSync(join(import.meta.dir, "..", ".test-tmp")).filter((n) => n.startsWith("chaos-"))) {
    rmSync(join(import.meta.dir, "..", ".test-tmp", d), { recursive: true, force: true });
  }
  process.exit(rows.some((r) => r.lost > 0 || r.duplicates > 0) ? 1 : 0);
}

void main();
