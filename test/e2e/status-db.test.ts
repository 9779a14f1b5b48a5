// The studioml experiment record in an S3 database (config.database type s3) on a real S3
// server: waiting → running → finished with the time fields set, and "stopped" written into it
// stops a running experiment within 15 s.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Readable } from "node:stream";
import { enqueue, filesIn, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment, tarMember } from "../helpers/e2e.ts";
import { CLIENT_KEYS, clientStore } from "../helpers/fixture-s3.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";

const DB_BUCKET = "studioml-meta";
let server: S3Server;
beforeAll(async () => {
  server = await startS3rver({ keys: [CLIENT_KEYS], buckets: [DB_BUCKET] });
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

const recordAt = (key: string) => `s3://${server.host}/${DB_BUCKET}/experiments/${key}`;

async function readRecord(key: string): Promise<Record<string, any> | undefined> {
  const store = clientStore(server);
  if (!(await store.head(recordAt(key)))) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of await store.get(recordAt(key))) chunks.push(Buffer.from(c as Uint8Array));
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const writeRecord = (key: string, doc: object) => clientStore(server).put(recordAt(key), Readable.from([Buffer.from(JSON.stringify(doc))]));

function withDatabase(m: Record<string, any>, sleepS: number) {
  m.experiment.pythonver = "3.11";
  m.config.env = { SLEEP_S: String(sleepS) };
  m.config.database = {
    type: "s3",
    endpoint: server.endpoint,
    bucket: DB_BUCKET,
    authentication: "none",
    credentials: { aws: { access_key: CLIENT_KEYS.accessKey, secret_access_key: CLIENT_KEYS.secretAccessKey, region: "us-west-2" } },
  };
}

const SCRIPT = "import os, time\nprint('working', flush=True)\ntime.sleep(float(os.environ['SLEEP_S']))\nprint('done', flush=True)\n";

describe("experiment record in an S3 database", () => {
  test("waiting → running → finished, with time_started, time_last_checkpoint and time_finished", async () => {
    const sb = await makeSandbox("status", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => withDatabase(m, 4));
    await writeRecord(exp.key, { ...exp.message.experiment, status: "waiting" }); // as the client does
    enqueue(sb.queueRoot, "local_status", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    const seen: string[] = [];
    let running: Record<string, any> | undefined;
    while (runner.child.exitCode === null) {
      const rec = await readRecord(exp.key).catch(() => undefined);
      if (rec && seen[seen.length - 1] !== rec.status) seen.push(rec.status);
      if (rec?.status === "running") running = rec;
      await Bun.sleep(200);
    }
    expect(await runner.exited).toBe(0);
    const final = (await readRecord(exp.key))!;
    if (seen[seen.length - 1] !== final.status) seen.push(final.status);
    expect(seen).toEqual(["waiting", "running", "finished"]);
    expect(running!.time_started).toBeGreaterThan(exp.message.experiment.time_added);
    expect(final.time_finished).toBeGreaterThan(final.time_started);
    expect(final.time_last_checkpoint).toBeGreaterThanOrEqual(final.time_started);
    expect(final.key).toBe(exp.key);
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("done");
  }, 180_000);

  test('writing "stopped" into the record stops the running experiment within 15 s', async () => {
    const sb = await makeSandbox("status-stop", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => withDatabase(m, 300));
    await writeRecord(exp.key, { ...exp.message.experiment, status: "waiting" });
    enqueue(sb.queueRoot, "local_stop", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    for (let i = 0; i < 600 && (await readRecord(exp.key))?.status !== "running"; i++) await Bun.sleep(200);
    await Bun.sleep(1000);
    const rec = (await readRecord(exp.key))!;
    expect(rec.status).toBe("running");
    await writeRecord(exp.key, { ...rec, status: "stopped" });
    const stoppedAt = Date.now();
    expect(await runner.exited).toBe(0);
    const tookMs = Date.now() - stoppedAt;
    console.log(`runner done ${tookMs} ms after the record said "stopped"`);
    expect(tookMs).toBeLessThan(15_000);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain('the experiment record says "stopped"');
    expect(log).not.toContain("done");
    const final = (await readRecord(exp.key))!;
    expect(final.status).toBe("stopped");
    expect(final.time_finished).toBeGreaterThan(0);
    expect(filesIn(join(sb.queueRoot, "local_stop"))).toEqual([]);
  }, 180_000);
});
