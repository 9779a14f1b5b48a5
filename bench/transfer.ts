// Artifact transfer through an S3 server (s3rver on loopback): a 1 GiB workspace downloaded,
// cached and unpacked by the compiled runner, and a 1 GiB modeldir packed and uploaded by it,
// each against `aws s3 cp` of the same bytes on the same server in the same run; with the
// runner's peak RSS. (This absorbs the former bench/s3-large-artifact.ts.)
//
// Two paths to the same server, in the same run, each run of both: plain loopback, and a shaped
// link (bench/lib/shaped-link.ts: a proxy in front of s3rver that caps every TCP connection at
// 12 MB/s each way and holds each direction's first byte 20 ms, like a connection to a distant
// S3/GCS). On the shaped link the runner's storage endpoint (and so its s3:// locations) and the
// aws CLI's --endpoint-url both name the proxy.
//
// Runner download: its "starting experiment" line → its "reusing cached python environment"
// line (fetch of every artifact; the environment is already cached). Runner upload: the
// script's last line → "experiment … finished" (pack + upload of every changed artifact, then the
// ack).
//
// Knobs (environment): BENCH_TRANSFER_MIB (total size, 4 files; default 1024, --quick 256),
// BENCH_TRANSFER_RUNS (runs of each path; default 3, --quick 1), BENCH_SHAPED_MBPS (cap per
// connection and direction in MB/s, 10^6 bytes; default 12), BENCH_SHAPED_FIRST_BYTE_MS
// (default 20), BENCH_SHAPED=0 (loopback only).

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { S3Store } from "../src/storage/s3/s3-store.ts";
import { enqueue, makeSandbox, type Sandbox } from "../test/helpers/e2e.ts";
import { startS3rver, type S3Server } from "../test/helpers/s3-server.ts";
import { experimentLog, scriptClock, trivialMessages } from "./lib/experiments.ts";
import type { BenchOptions } from "./lib/options.ts";
import { kibToMB, RssSampler } from "./lib/proc.ts";
import { fmt, row, type Row } from "./lib/report.ts";
import { BenchRunner } from "./lib/runner.ts";
import { describeShape, ShapedLink, type LinkShape } from "./lib/shaped-link.ts";

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

/** `aws s3 cp` with the bench's keys against an endpoint (the server or the link in front of it); milliseconds. */
async function awsCp(aws: string, endpoint: string, from: string, to: string): Promise<number> {
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: KEYS.accessKey,
    AWS_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
  };
  const t = performance.now();
  const child = spawn(aws, ["s3", "cp", "--only-show-errors", "--endpoint-url", endpoint, from, to], {
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

function s3Message(sb: Sandbox, path: Path, wsKey: string, key: string): Record<string, any> {
  const [m] = trivialMessages(sb.storageRoot, 1);
  const message = m!.message;
  const exp = message.experiment;
  exp.key = key;
  for (const a of Object.values<any>(exp.artifacts)) {
    a.key = String(a.key).replace(/experiments\/[^/]+\//, `experiments/${key}/`);
    a.qualified = `s3://${path.host}/${BUCKET}/${a.key}`;
    a.credentials = { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } };
    delete a.bucket;
  }
  exp.artifacts.workspace.key = wsKey;
  exp.artifacts.workspace.qualified = `s3://${path.host}/${BUCKET}/${wsKey}`;
  exp.resources_needed = { ...exp.resources_needed, hdd: "8g" };
  message.config.resources_needed = exp.resources_needed;
  message.config.storage = { type: "s3", endpoint: path.endpoint, bucket: BUCKET };
  return message;
}

/** How the runner and the peer reach s3rver: directly, or through the shaped link. */
type Path = {
  /** "" for loopback (the existing row names), else "shaped link (…): ". */
  prefix: string;
  host: string;
  endpoint: string;
  link?: ShapedLink;
};

/** One path's figures over the runs. */
type Figures = {
  down: number[];
  up: number[];
  awsDown: number[];
  awsUp: number[];
  downRatio: number[];
  upRatio: number[];
  rss: number[];
  /** Shaped link only: sending time lost to a busy proxy (LinkStats.lateMs) while the runner ran, per run. */
  lateRunnerMs: number[];
  /** The same while `aws s3 cp` ran (both ways; up to 10 connections at a time). */
  lateAwsMs: number[];
};

const figures = (): Figures => ({
  down: [],
  up: [],
  awsDown: [],
  awsUp: [],
  downRatio: [],
  upRatio: [],
  rss: [],
  lateRunnerMs: [],
  lateAwsMs: [],
});

function numberFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${text}: not a positive number`);
  return n;
}

type Context = {
  sb: Sandbox;
  server: S3Server;
  aws: string;
  ws: { key: string; tarPath: string };
  say: (line: string) => void;
};

/** One runner experiment (download, script, upload) and then `aws s3 cp` both ways, over `path`. */
async function measureOnce(c: Context, path: Path, i: number, f: Figures): Promise<void> {
  const { sb, server, aws, ws } = c;
  rmSync(join(sb.cacheDir, "artifacts"), { recursive: true, force: true });
  const key = `${Math.floor(Date.now() / 1000)}_bench-transfer-${path.link ? "shaped" : "loopback"}-${i}`;
  const late = () => path.link?.stats.lateMs ?? 0;
  const lateBefore = late();
  const runner = new BenchRunner(sb, ["--max-cores", "2", "--limit-tasks", "1"]);
  const sampler = new RssSampler(runner.pid, 100, Boolean(process.env.BENCH_TRACE));
  // A runner that has settled (as one serving a queue for a while has): its start-up probe of the
  // python interpreters, a few processes, is over before the experiment arrives.
  await runner.waitFor(/python interpreters/, 60_000);
  enqueue(sb.queueRoot, QUEUE, s3Message(sb, path, ws.key, key));
  const starting = await runner.waitFor(new RegExp(`starting experiment ${key}`), 60_000);
  const envReady = await runner.waitFor(/reusing cached python environment/, 1_800_000);
  const finished = await runner.waitFor(new RegExp(`experiment ${key} finished`), 1_800_000);
  await runner.exited;
  f.rss.push(sampler.stop());
  const lateRunner = late() - lateBefore;
  const logText = await fetchLog(server, key, sb);
  const clock = scriptClock(logText);
  if (!/workspace bytes \d+/.test(logText))
    throw new Error(`the experiment did not see its workspace:\n${logText.slice(-2000)}`);
  if (process.env.BENCH_TRACE) {
    for (const l of logText.split("\n").filter((x) => x.includes("[studio-runner]"))) c.say(`  ${l}`);
    for (const l of runner.text().split("\n")) c.say(`  runner: ${l.slice(0, 200)}`);
    const at = (ms: number) => new Date(sampler.startedAt + ms).toISOString().slice(11, 23);
    c.say(`  rss: ${sampler.timeline.map(([ms, kib]) => `${at(ms)} ${Math.round(kibToMB(kib))}`).join(", ")}`);
  }
  const downMs = envReady.timeMs - starting.timeMs;
  const upMs = finished.timeMs - clock.endMs;
  f.down.push(downMs / 1000);
  f.up.push(upMs / 1000);
  if (aws) {
    const local = join(sb.dir, "aws-download.tar");
    const d = await awsCp(aws, path.endpoint, `s3://${BUCKET}/${ws.key}`, local);
    rmSync(local, { force: true });
    const u = await awsCp(aws, path.endpoint, ws.tarPath, `s3://${BUCKET}/aws-peer/${key}/model.bin`);
    f.awsDown.push(d / 1000);
    f.awsUp.push(u / 1000);
    f.downRatio.push(d / downMs);
    f.upRatio.push(u / upMs);
  }
  if (path.link) {
    f.lateRunnerMs.push(lateRunner);
    f.lateAwsMs.push(late() - lateBefore - lateRunner);
  }
  c.say(
    `transfer: ${path.link ? "shaped" : "loopback"} run ${i + 1}: runner down ${(downMs / 1000).toFixed(1)} s, ` +
      `up ${(upMs / 1000).toFixed(1)} s; aws down ${fmt(f.awsDown.at(-1) ?? NaN)} s, up ${fmt(f.awsUp.at(-1) ?? NaN)} s`,
  );
  // Keep s3rver's disk use bounded: this run's objects are no longer needed.
  rmSync(join(sb.dir, "s3rver", BUCKET, "experiments"), { recursive: true, force: true });
  rmSync(join(sb.dir, "s3rver", BUCKET, "aws-peer"), { recursive: true, force: true });
}

function rowsOf(path: Path, size: string, f: Figures, noAws: string | undefined): Row[] {
  const p = path.prefix;
  const ratio = { value: TRANSFER_RATIO_TARGET, direction: "higher" as const };
  const late = (ms: number[], during: string) =>
    ms.length
      ? `the shaped link fell behind its cap by ${fmt(Math.max(...ms))} ms at most in a run, ${during} ` +
        "(sending time lost to a busy proxy, summed over the connections)"
      : undefined;
  return [
    row(
      "transfer",
      `${p}${size} download + cache + unpack, runner`,
      "s",
      f.down,
      undefined,
      late(f.lateRunnerMs, "during the runner's download and upload"),
    ),
    row(
      "transfer",
      `${p}${size} download, aws s3 cp (peer)`,
      "s",
      f.awsDown,
      undefined,
      noAws ?? late(f.lateAwsMs, "during both aws s3 cp"),
    ),
    row("transfer", `${p}download: aws s3 cp time ÷ runner time`, "×", f.downRatio, ratio, noAws),
    row("transfer", `${p}${size} tar + upload + ack, runner`, "s", f.up),
    row("transfer", `${p}${size} upload, aws s3 cp (peer)`, "s", f.awsUp, undefined, noAws),
    row("transfer", `${p}upload: aws s3 cp time ÷ runner time`, "×", f.upRatio, ratio, noAws),
    row("transfer", `${p}runner peak RSS (whole run, VmHWM)`, "MB", f.rss, {
      value: TRANSFER_RSS_TARGET_MB,
      direction: "lower",
    }),
  ];
}

export async function runTransfer(options: BenchOptions): Promise<Row[]> {
  const runs = numberFromEnv("BENCH_TRANSFER_RUNS", options.quick ? 1 : 3);
  const files = 4;
  const totalMiB = numberFromEnv("BENCH_TRANSFER_MIB", options.quick ? 256 : 1024);
  const fileBytes = Math.ceil(totalMiB / files / (CHUNK_BYTES / MiB)) * CHUNK_BYTES;
  const modelBytes = files * fileBytes;
  const size =
    modelBytes >= 1024 * MiB
      ? `${(modelBytes / (1024 * MiB)).toFixed(2).replace(/\.?0+$/, "")} GiB`
      : `${modelBytes / MiB} MiB`;
  const shaped = process.env.BENCH_SHAPED !== "0";
  const shape: LinkShape = {
    bytesPerSecond: numberFromEnv("BENCH_SHAPED_MBPS", 12) * 1e6,
    firstByteDelayMs: numberFromEnv("BENCH_SHAPED_FIRST_BYTE_MS", 20),
  };
  const aws = spawnSync("bash", ["-c", "command -v aws"], { encoding: "utf8" }).stdout.trim();
  const sb = await makeSandbox("bench-transfer");
  const server = await startS3rver({ keys: [KEYS], buckets: [BUCKET], dataDir: join(sb.dir, "s3rver") });
  const loopback: Path = { prefix: "", host: server.host, endpoint: server.endpoint };
  const paths: Path[] = [loopback];
  let link: ShapedLink | undefined;
  if (shaped) {
    link = new ShapedLink(server.port, shape);
    await link.start();
    paths.push({ prefix: `shaped link (${describeShape(shape)}): `, host: link.host, endpoint: link.endpoint, link });
  }
  const results = new Map(paths.map((p) => [p, figures()]));
  try {
    options.say(`transfer: making a ${size} workspace`);
    const ws = await seedWorkspace(sb, server, files, fileBytes, modelBytes);
    // Warm-up on file: storage: the (empty) python environment is built once, outside the figures.
    const runner0 = new BenchRunner(sb, ["--max-cores", "2"]);
    const [warm] = trivialMessages(sb.storageRoot, 1);
    enqueue(sb.queueRoot, QUEUE, warm!.message);
    await runner0.waitFor(new RegExp(`experiment ${warm!.key} finished`), 300_000);
    await runner0.stop();
    const context: Context = { sb, server, aws, ws, say: options.say };
    for (let i = 0; i < runs; i++) {
      for (const path of paths) {
        options.say(
          `transfer: run ${i + 1}/${runs}, ${path.link ? "shaped link" : "loopback"}: runner, then aws s3 cp`,
        );
        await measureOnce(context, path, i, results.get(path)!);
      }
    }
  } finally {
    await link?.stop();
    await server.stop();
    rmSync(sb.dir, { recursive: true, force: true });
  }
  const noAws = aws ? undefined : "not run: no aws CLI on this machine";
  return paths.flatMap((p) => rowsOf(p, size, results.get(p)!, noAws));
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
