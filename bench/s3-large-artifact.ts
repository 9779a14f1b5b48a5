// Benchmark: a 1 GiB workspace on a local S3 server goes down through the compiled runner, and a
// 1 GiB modeldir comes back up; prints the runner's peak RSS and the transfer times. Run with
// `node_modules/.bin/bun bench/s3-large-artifact.ts` (needs ~8 GiB of free disk; about 1–3 min).

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { formatBytes } from "../src/config/units.ts";
import { S3Store } from "../src/storage/s3/s3-store.ts";
import { enqueue, ensureBinary, FIXTURE, makeSandbox, RunnerProcess, tarMember } from "../test/helpers/e2e.ts";
import { startS3rver } from "../test/helpers/s3-server.ts";

const MiB = 1024 * 1024;
const WORKSPACE_FILES = 4;
const FILE_BYTES = 256 * MiB;
const CHUNK_BYTES = 8 * MiB;
const MODEL_BYTES = 1024 * MiB;
const RSS_SAMPLE_MS = 100;
const RSS_TARGET_MB = 200;
const BUCKET = "studioml-artifacts";
const KEYS = { accessKey: "AKIABENCHMARK001", secretAccessKey: "bench-secret" };

const MAIN = `
import json, os, time
print("T_START", time.time(), flush=True)
total = 0
for root, _dirs, files in os.walk("data"):
    for f in sorted(files):
        size = os.path.getsize(os.path.join(root, f))
        total += size
        print("workspace file", os.path.join(root, f), size)
print("workspace bytes", total)
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
with open(os.path.join(mapping["modeldir"], "model.bin"), "wb") as out:
    for _ in range(${MODEL_BYTES / CHUNK_BYTES}):
        out.write(os.urandom(${CHUNK_BYTES}))
print("T_END", time.time(), flush=True)
`;

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const rate = (bytes: number, ms: number) => `${((bytes / MiB) / (ms / 1000)).toFixed(0)} MiB/s`;

function rssKiB(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { rss, hwm };
  } catch {
    return undefined;
  }
}

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

async function main() {
  ensureBinary();
  const sb = await makeSandbox("bench-s3");
  const server = await startS3rver({ keys: [KEYS], buckets: [BUCKET], dataDir: join(sb.dir, "s3rver") });
  const store = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
  try {
    // 1. A 1 GiB workspace of incompressible files, tarred and uploaded as blobstore/<sha256>.tar.
    let t = Date.now();
    const wsDir = join(sb.dir, "workspace");
    mkdirSync(join(wsDir, "data"), { recursive: true });
    await Bun.write(join(wsDir, "main.py"), MAIN);
    for (let i = 0; i < WORKSPACE_FILES; i++) await writeRandomFile(join(wsDir, "data", `part-${i}.bin`), FILE_BYTES);
    const tarPath = join(sb.dir, "workspace.tar");
    const tar = spawnSync("tar", ["--format=pax", "-cf", tarPath, "-C", wsDir, "main.py", "data"]);
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
    const tarBytes = Bun.file(tarPath).size;
    const wsKey = `blobstore/${await sha256OfFile(tarPath)}.tar`;
    console.log(`workspace: ${WORKSPACE_FILES} files, tar ${formatBytes(tarBytes)}, made in ${seconds(Date.now() - t)}`);
    t = Date.now();
    const wsLocation = `s3://${server.host}/${BUCKET}/${wsKey}`;
    await store.put(wsLocation, createReadStream(tarPath, { highWaterMark: MiB }));
    const seedMs = Date.now() - t;
    console.log(`seed upload (bench process, same S3 adapter): ${formatBytes(tarBytes)} in ${seconds(seedMs)} (${rate(tarBytes, seedMs)})`);
    rmSync(tarPath);
    rmSync(wsDir, { recursive: true, force: true });

    // 2. The client's message, on this server, with the big workspace.
    const message = JSON.parse(readFileSync(FIXTURE, "utf8").replaceAll("127.0.0.1:33504", server.host));
    const exp = message.experiment;
    exp.key = `${Math.floor(Date.now() / 1000)}_bench-s3-large`;
    for (const a of Object.values<any>(exp.artifacts)) {
      a.key = a.key.replace(/experiments\/[^/]+\//, `experiments/${exp.key}/`);
      a.qualified = `s3://${server.host}/${BUCKET}/${a.key}`;
      a.credentials = { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } };
    }
    exp.artifacts.workspace.key = wsKey;
    exp.artifacts.workspace.qualified = wsLocation;
    exp.filename = "main.py";
    exp.args = [];
    exp.pythonenv = [];
    exp.time_added = Date.now() / 1000;
    exp.resources_needed = { ...exp.resources_needed, hdd: "8g" };
    message.config.resources_needed = exp.resources_needed;
    enqueue(sb.queueRoot, "local_bench", message);

    // 3. The runner, its RSS sampled every 100 ms, its log lines timed as they arrive.
    const runner = new RunnerProcess({ ...sb, cacheDir: join(sb.dir, "cache") }, ["--limit-tasks", "1"], {});
    const startedMs = Date.now();
    const lineTimes: Array<{ ms: number; line: string }> = [];
    runner.child.stderr!.on("data", (d) => {
      for (const line of String(d).split("\n")) if (line.trim()) lineTimes.push({ ms: Date.now(), line });
    });
    const pid = runner.child.pid!;
    let peakRssKiB = 0;
    let hwmKiB = 0;
    let samples = 0;
    const timeline: Array<{ ms: number; rssKiB: number }> = [];
    const sampler = setInterval(() => {
      const s = rssKiB(pid);
      if (!s) return;
      samples++;
      timeline.push({ ms: Date.now(), rssKiB: s.rss });
      peakRssKiB = Math.max(peakRssKiB, s.rss);
      hwmKiB = Math.max(hwmKiB, s.hwm);
    }, RSS_SAMPLE_MS);
    const code = await runner.exited;
    clearInterval(sampler);
    const totalMs = Date.now() - startedMs;
    if (code !== 0) throw new Error(`runner exited ${code}:\n${runner.stderr}`);

    // 4. Phases, from the experiment's own clock and the runner's log.
    const outputTar = join(sb.dir, "output.tar");
    await pipeline(await store.get(`s3://${server.host}/${BUCKET}/experiments/${exp.key}/output.tar`), createWriteStream(outputTar));
    const log = tarMember(outputTar);
    const scriptStartMs = Number(/T_START ([\d.]+)/.exec(log)?.[1]) * 1000;
    const scriptEndMs = Number(/T_END ([\d.]+)/.exec(log)?.[1]) * 1000;
    const startingMs = lineTimes.find((l) => /starting experiment/.test(l.line))?.ms ?? startedMs;
    const finishedMs = lineTimes.find((l) => /finished/.test(l.line))?.ms ?? Date.now();
    const model = await store.head(`s3://${server.host}/${BUCKET}/experiments/${exp.key}/modeldir.tar`);
    const workspaceSeen = /workspace bytes (\d+)/.exec(log)?.[1];

    // The venv (empty requirements, fresh cache) is built between download and script start.
    const venvText = /built python environment \S+ in ([\d.]+)(ms|s)/.exec(runner.stderr);
    const venvMs = venvText ? Number(venvText[1]) * (venvText[2] === "s" ? 1000 : 1) : 0;
    const downMs = scriptStartMs - startingMs - venvMs;
    const upMs = finishedMs - scriptEndMs;
    console.log(`experiment saw ${workspaceSeen} workspace bytes; modeldir.tar in S3: ${model ? formatBytes(model.sizeBytes) : "MISSING"}`);
    console.log(`venv build (not a transfer, subtracted): ${seconds(venvMs)}`);
    console.log(`download + cache + unpack (start → script start): ${formatBytes(tarBytes)} in ${seconds(downMs)} (${rate(tarBytes, downMs)})`);
    console.log(`script (list + write 1 GiB): ${seconds(scriptEndMs - scriptStartMs)}`);
    console.log(`pack + upload of modeldir (script end → finished): ${formatBytes(model?.sizeBytes ?? 0)} in ${seconds(upMs)} (${rate(model?.sizeBytes ?? 0, upMs)})`);
    console.log(`runner wall time: ${seconds(totalMs)}`);
    if (process.env.BENCH_TRACE) {
      // RSS every second, with the runner's log lines and the script's start and end in between.
      const marks = [
        ...lineTimes.map((l) => ({ ms: l.ms, text: l.line.slice(0, 100) })),
        { ms: scriptStartMs, text: "(script starts)" },
        { ms: scriptEndMs, text: "(script ends)" },
      ];
      const events = [...timeline.filter((_, i) => i % 10 === 0).map((x) => ({ ms: x.ms, text: `rss ${((x.rssKiB * 1024) / 1e6).toFixed(0)} MB` })), ...marks];
      for (const e of events.sort((a, b) => a.ms - b.ms)) console.log(`  +${((e.ms - startedMs) / 1000).toFixed(1)}s ${e.text}`);
    }
    const peakMB = (peakRssKiB * 1024) / 1e6;
    const hwmMB = (hwmKiB * 1024) / 1e6;
    console.log(`runner peak RSS: ${peakMB.toFixed(0)} MB sampled every ${RSS_SAMPLE_MS} ms (${samples} samples), kernel high-water mark VmHWM ${hwmMB.toFixed(0)} MB; target < ${RSS_TARGET_MB} MB: ${Math.max(peakMB, hwmMB) < RSS_TARGET_MB ? "met" : "NOT met"}`);
  } finally {
    await server.stop();
    rmSync(sb.dir, { recursive: true, force: true });
  }
}

await main();
