// Artifact transfer through an S3 server (s3rver on loopback): a 1 GiB workspace downloaded,
// cached and unpacked by the compiled runner, and a 1 GiB modeldir packed and uploaded by it,
// each against `aws s3 cp` of the same bytes on the same server in the same run; with the
// runner's peak RSS. (This absorbs the former bench/s3-large-artifact.ts.)
//
// Runner download: its "starting experiment" line → its "reusing cached python environment"
// line (fetch of every artifact; the environment is already cached). Runner upload: the
// script's last line → "experiment … finished" (pack + upload of every changed artifact, then the
// ack).

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { S3Store } from "../src/storage/s3/s3-store.ts";
import { enqueue, makeSandbox, type Sandbox } from "../test/helpers/e2e.ts";
import { startS3rver, type S3Server } from "../test/helpers/s3-server.ts";
import { experimentLog, scriptClock, trivialMessages } from "./lib/experiments.ts";
import type { BenchOptions } from "./lib/options.ts";
import { RssSampler } from "./lib/proc.ts";
import { row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";

export const TRANSFER_RATIO_TARGET = 1.0;
export const TRANSFER_RSS_TARGET_MB = 200;
const MiB = 1024 * 1024;
const CHUNK_BYTES = 8 * MiB;
const BUCKET = "studioml-artifacts";
const KEYS = { accessKey: "AKIABENCHMARK001", secretAccessKey: "bench-secret" };
const QUEUE = "local_bench";

const script = (modelBytes: number) => `
import json, os, time
print("T_FIRST %.6f" % time.time(), flush=True)
total = 0
for root, _dirs, files in os.walk("data"):
    for f in files:
        total += os.path.getsize(os.path.join(root, f))
print("workspace bytes", total)
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
with open(os.path.join(mapping["modeldir"], "model.bin"), "wb") as out:
    for _ in range(${modelBytes / CHUNK_BYTES}):
        out.write(os.urandom(${CHUNK_BYTES}))
print("T_END %.6f" % time.time(), flush=True)
`;

async function writeRandomFile(path: string, bytes: number) {
  const out = createWriteStream(path);
  for (let done = 0; done < bytes; done += CHUNK_BYTES) {
    if (!out.write(randomBytes(Math.min(CHUNK_BYTES, bytes - done)))) await new Promise((r) => out.once("drain", r));
  }
  await new Promise<void>((ok, fail) => out.end((err?: Error | null) => (err ? fail(err) : ok())));
}

async function sha256OfFile(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES })) hasher.update(chunk as Buffer);
  return hasher.digest("hex");
}

/** `aws s3 cp` with the bench's keys against the server; milliseconds. */
async function awsCp(aws: string, server: S3Server, from: string, to: string): Promise<number> {
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: KEYS.accessKey,
    AWS_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
  };
  const t = performance.now();
  const child = spawn(aws, ["s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint, from, to], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`aws s3 cp ${from} ${to} failed (${code}): ${err}`);
  return performance.now() - t;
}

/** The workspace: `files` incompressible files of `fileBytes` and the script, tarred and put in the bucket. */
async function seedWorkspace(sb: Sandbox, server: S3Server, files: number, fileBytes: number, modelBytes: number) {
  const wsDir = join(sb.dir, "workspace");
  mkdirSync(join(wsDir, "data"), { recursive: true });
  await Bun.write(join(wsDir, "main.py"), script(modelBytes));
  for (let i = 0; i < files; i++) await writeRandomFile(join(wsDir, "data", `part-${i}.bin`), fileBytes);
  const tarPath = join(sb.dir, "workspace.tar");
  const tar = spawnSync("tar", ["--format=pax", "-cf", tarPath, "-C", wsDir, "main.py", "data"]);
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
  rmSync(wsDir, { recursive: true, force: true });
  const key = `blobstore/${await sha256OfFile(tarPath)}.tar`;
  const store = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
  await store.put(`s3://${server.host}/${BUCKET}/${key}`, createReadStream(tarPath, { highWaterMark: MiB }));
  return { key, tarPath, tarBytes: statSync(tarPath).size };
}

function s3Message(sb: Sandbox, server: S3Server, wsKey: string, key: string): Record<string, any> {
  const [m] = trivialMessages(sb.storageRoot, 1);
  const message = m!.message;
  const exp = message.experiment;
  exp.key = key;
  for (const a of Object.values<any>(exp.artifacts)) {
    a.key = String(a.key).replace(/experiments\/[^/]+\//, `experiments/${key}/`);
    a.qualified = `s3://${server.host}/${BUCKET}/${a.key}`;
    a.credentials = { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } };
    delete a.bucket;
  }
  exp.artifacts.workspace.key = wsKey;
  exp.artifacts.workspace.qualified = `s3://${server.host}/${BUCKET}/${wsKey}`;
  exp.resources_needed = { ...exp.resources_needed, hdd: "8g" };
  message.config.resources_needed = exp.resources_needed;
  message.config.storage = { type: "s3", endpoint: server.endpoint, bucket: BUCKET };
  return message;
}

export async function runTransfer(options: BenchOptions): Promise<Row[]> {
  const runs = options.quick ? 1 : 3;
  const files = 4;
  const fileBytes = (options.quick ? 64 : 256) * MiB;
  const modelBytes = files * fileBytes;
  const size = `${(modelBytes / (1024 * MiB)).toFixed(2).replace(/\.?0+$/, "")} GiB`;
  const aws = spawnSync("bash", ["-c", "command -v aws"], { encoding: "utf8" }).stdout.trim();
  const sb = await makeSandbox("bench-transfer");
  const server = await startS3rver({ keys: [KEYS], buckets: [BUCKET], dataDir: join(sb.dir, "s3rver") });
  const down: number[] = [];
  const up: number[] = [];
  const awsDown: number[] = [];
  const awsUp: number[] = [];
  const downRatio: number[] = [];
  const upRatio: number[] = [];
  const rss: number[] = [];
  try {
    options.say(`transfer: making a ${size} workspace`);
    const ws = await seedWorkspace(sb, server, files, fileBytes, modelBytes);
    // Warm-up on file: storage: the (empty) python environment is built once, outside the figures.
    const runner0 = new BenchRunner(sb, ["--max-cores", "2"]);
    const [warm] = trivialMessages(sb.storageRoot, 1);
    enqueue(sb.queueRoot, QUEUE, warm!.message);
    await runner0.waitFor(new RegExp(`experiment ${warm!.key} finished`), 300_000);
    await runner0.stop();
    for (let i = 0; i < runs; i++) {
      options.say(`transfer: run ${i + 1}/${runs}: runner, then aws s3 cp`);
      rmSync(join(sb.cacheDir, "artifacts"), { recursive: true, force: true });
      const key = `${Math.floor(Date.now() / 1000)}_bench-transfer-${i}`;
      enqueue(sb.queueRoot, QUEUE, s3Message(sb, server, ws.key, key));
      const runner = new BenchRunner(sb, ["--max-cores", "2", "--limit-tasks", "1"]);
      const sampler = new RssSampler(runner.pid);
      const starting = await runner.waitFor(new RegExp(`starting experiment ${key}`), 60_000);
      const envReady = await runner.waitFor(/reusing cached python environment/, 600_000);
      const finished = await runner.waitFor(new RegExp(`experiment ${key} finished`), 600_000);
      await runner.exited;
      rss.push(sampler.stop());
      const logText = await fetchLog(server, key, sb);
      const clock = scriptClock(logText);
      if (!/workspace bytes \d+/.test(logText))
        throw new Error(`the experiment did not see its workspace:\n${logText.slice(-2000)}`);
      if (process.env.BENCH_TRACE)
        for (const l of logText.split("\n").filter((x) => x.includes("[studio-runner]"))) options.say(`  ${l}`);
      const downMs = envReady.timeMs - starting.timeMs;
      const upMs = finished.timeMs - clock.endMs;
      down.push(downMs / 1000);
      up.push(upMs / 1000);
      if (aws) {
        const local = join(sb.dir, "aws-download.tar");
        const d = await awsCp(aws, server, `s3://${BUCKET}/${ws.key}`, local);
        rmSync(local, { force: true });
        const u = await awsCp(aws, server, ws.tarPath, `s3://${BUCKET}/aws-peer/${key}/model.bin`);
        awsDown.push(d / 1000);
        awsUp.push(u / 1000);
        downRatio.push(d / downMs);
        upRatio.push(u / upMs);
      }
      // Keep s3rver's disk use bounded: this run's objects are no longer needed.
      rmSync(join(sb.dir, "s3rver", BUCKET, "experiments"), { recursive: true, force: true });
      rmSync(join(sb.dir, "s3rver", BUCKET, "aws-peer"), { recursive: true, force: true });
    }
  } finally {
    await server.stop();
    rmSync(sb.dir, { recursive: true, force: true });
  }
  const noAws = aws ? undefined : "not run: no aws CLI on this machine";
  return [
    row("transfer", `${size} download + cache + unpack, runner`, "s", down),
    row("transfer", `${size} download, aws s3 cp (peer)`, "s", awsDown, undefined, noAws),
    row(
      "transfer",
      "download: aws s3 cp time ÷ runner time",
      "×",
      downRatio,
      { value: TRANSFER_RATIO_TARGET, direction: "higher" },
      noAws,
    ),
    row("transfer", `${size} tar + upload + ack, runner`, "s", up),
    row("transfer", `${size} upload, aws s3 cp (peer)`, "s", awsUp, undefined, noAws),
    row(
      "transfer",
      "upload: aws s3 cp time ÷ runner time",
      "×",
      upRatio,
      { value: TRANSFER_RATIO_TARGET, direction: "higher" },
      noAws,
    ),
    row("transfer", "runner peak RSS (whole run, VmHWM)", "MB", rss, {
      value: TRANSFER_RSS_TARGET_MB,
      direction: "lower",
    }),
  ];
}

/** The experiment's log from output.tar in the bucket. */
async function fetchLog(server: S3Server, key: string, sb: Sandbox): Promise<string> {
  const store = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
  const dir = join(sb.dir, "log-fetch");
  mkdirSync(join(dir, "storage", BUCKET, "experiments", key), { recursive: true });
  const tar = join(dir, "storage", BUCKET, "experiments", key, "output.tar");
  const body = await store.get(`s3://${server.host}/${BUCKET}/experiments/${key}/output.tar`);
  await new Promise<void>((ok, fail) => body.pipe(createWriteStream(tar)).on("finish", ok).on("error", fail));
  const text = experimentLog({ key, experimentDir: join(dir, "storage", BUCKET, "experiments", key), message: {} });
  rmSync(dir, { recursive: true, force: true });
  return text;
}
