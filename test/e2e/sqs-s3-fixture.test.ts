// The captured client message sent to SQS (fauxqs) with its workspace in S3 (s3rver) runs from
// the compiled binary; a job that outlives three visibility timeouts is not redelivered while
// the runner lives, and after SIGKILL of the runner it is redelivered and completes.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { SqsQueueBackend } from "../../src/queue/sqs/sqs-queue.ts";
import {
  jobPrinted,
  makeSandbox,
  REPO,
  runBinary,
  RunnerProcess,
  type Sandbox,
  SHARED_CACHE,
  tarMember,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";
import { CLIENT_KEYS, clientStore, FIXTURE_BUCKET, fixtureOnS3 } from "../helpers/fixture-s3.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";
import { startSqsServer, type SqsServer } from "../helpers/sqs-server.ts";

let s3: S3Server;
let sqs: SqsServer;
beforeAll(async () => {
  s3 = await startS3rver({ keys: [CLIENT_KEYS], buckets: [FIXTURE_BUCKET] });
  sqs = await startSqsServer();
}, 120_000);
afterAll(async () => {
  await s3?.stop();
  await sqs?.stop();
});

const credentials = { accessKeyId: "AKIAFAKE", secretAccessKey: "fake-secret-for-fauxqs" };
const producer = () =>
  new SqsQueueBackend({
    accounts: [{ name: "test", credentials, region: "us-east-1" }],
    endpoint: sqs.endpoint,
    maxDeliveries: 3,
  });

/** An --sqs-certs directory with one account. */
function certsDir(sb: Sandbox): string {
  const dir = join(sb.dir, "sqs-certs", "account-a");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "credentials"),
    `[default]\naws_access_key_id = ${credentials.accessKeyId}\n` +
      `aws_secret_access_key = ${credentials.secretAccessKey}\n`,
  );
  writeFileSync(join(dir, "config"), "[default]\nregion = us-east-1\n");
  return join(sb.dir, "sqs-certs");
}

const runnerArgs = (sb: Sandbox, queue: string, extra: string[] = []) => [
  "--sqs-certs",
  certsDir(sb),
  "--sqs-endpoint",
  sqs.endpoint,
  "--queue-match",
  `^${queue}$`,
  ...extra,
];

async function outputLog(location: string, dest: string): Promise<string> {
  await pipeline(await clientStore(s3).get(location), createWriteStream(dest));
  return tarMember(dest);
}

describe("SQS + S3", () => {
  test("the captured client message runs from SQS with S3 storage", async () => {
    const sb = await makeSandbox("sqs-s3", { cacheDir: SHARED_CACHE });
    const queue = `sqs_fixture_${Date.now()}`;
    const train =
      "import json, sys\nprint('argv:', json.dumps(sys.argv[1:]))\n" +
      "print('data:', open('data/input.txt').read().strip())\n";
    const { message, key, location } = await fixtureOnS3(s3, sb, { "train.py": train, "data/input.txt": "from sqs\n" });
    const q = producer();
    await q.publish(queue, JSON.stringify(message));
    await q.close();
    const runner = new RunnerProcess(sb, runnerArgs(sb, queue, ["--limit-tasks", "1"]));
    expect(await runner.exited).toBe(0);
    const log = await outputLog(location("output"), join(sb.dir, "output.tar"));
    expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
    expect(log).toContain("data: from sqs");
    expect(log).toContain(`from queue ${queue}`);
    expect(log).toContain("exited with code 0");
    expect(runner.stderr).toContain(`experiment ${key} finished`);
    const after = producer();
    expect(await after.open(queue).receive()).toBeUndefined();
    await after.close();
  }, 300_000);

  test("a job longer than three visibility timeouts is not redelivered; after SIGKILL " +
    "it is, and completes", async () => {
    const sb = await makeSandbox("sqs-long", { cacheDir: SHARED_CACHE });
    const queue = `sqs_long_${Date.now()}`;
    const script =
      "import os, time\nprint('attempt', flush=True)\n" +
      "time.sleep(float(os.environ.get('SLEEP_S', '8')))\nprint('complete', flush=True)\n";
    const { message, location } = await fixtureOnS3(s3, sb, { "train.py": script, "data/input.txt": "x\n" });
    message.config.env = { SLEEP_S: "8" };
    const q = producer();
    await q.publish(queue, JSON.stringify(message));
    await q.close();
    // Two runners with a 2 s lease: an 8 s job outlives three leases; the second must get nothing.
    const a = new RunnerProcess(sb, runnerArgs(sb, queue, ["--sqs-visibility", "2s", "--limit-tasks", "1"]));
    await a.waitForLog(/starting experiment/);
    const b = new RunnerProcess(sb, runnerArgs(sb, queue, ["--sqs-visibility", "2s", "--limit-idle-duration", "9s"]));
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
    expect(b.stderr).not.toContain("starting experiment");
    const log = await outputLog(location("output"), join(sb.dir, "output-a.tar"));
    expect(log).toContain("delivery 1 from queue");
    expect(log).toContain("complete");

    // Again, but the runner is SIGKILLed mid-job: the message comes back and completes.
    const queue2 = `${queue}_k`;
    // A key of its own: a second run of the completed key would be refused as a replay.
    const again = await fixtureOnS3(s3, sb, { "train.py": script, "data/input.txt": "y\n" }, { freshKey: true });
    again.message.config.env = { SLEEP_S: "6" };
    const q2 = producer();
    await q2.publish(queue2, JSON.stringify(again.message));
    await q2.close();
    const killed = new RunnerProcess(sb, runnerArgs(sb, queue2, ["--sqs-visibility", "2s"]));
    await killed.waitForLog(/starting experiment/);
    await waitFor('the job\'s "attempt" in its live output', () => jobPrinted(sb.workDir, "attempt"));
    killed.child.kill("SIGKILL");
    await killed.exited;
    const rescuer = new RunnerProcess(sb, runnerArgs(sb, queue2, ["--sqs-visibility", "2s", "--limit-tasks", "1"]));
    expect(await rescuer.exited).toBe(0);
    const log2 = await outputLog(again.location("output"), join(sb.dir, "output-b.tar"));
    expect(log2).toContain("delivery 2 from queue");
    expect(log2).toContain("complete");
  }, 300_000);
});

describe("submit to SQS with S3 storage", () => {
  test("submit --sqs-certs --storage s3://… --wait runs the example through a runner", async () => {
    const sb = await makeSandbox("sqs-submit", { cacheDir: SHARED_CACHE });
    const queue = `sqs_submit_${Date.now()}`;
    const certs = certsDir(sb);
    const runner = new RunnerProcess(sb, runnerArgs(sb, queue, ["--limit-tasks", "1"]));
    try {
      const r = runBinary(
        [
          "submit",
          "--sqs-certs",
          certs,
          "--sqs-endpoint",
          sqs.endpoint,
          "--queue",
          queue,
          "--storage",
          `s3://${s3.host}/${FIXTURE_BUCKET}`,
          "--s3-endpoint",
          s3.endpoint,
          "--pythonver",
          "3.11",
          "--workspace",
          join(REPO, "examples/hello"),
          "--wait",
          "--wait-timeout",
          "5m",
          "train.py",
          "--steps",
          "2",
        ],
        {
          env: {
            AWS_ACCESS_KEY_ID: CLIENT_KEYS.accessKey,
            AWS_SECRET_ACCESS_KEY: CLIENT_KEYS.secretAccessKey,
            AWS_REGION: "us-west-2",
          },
          timeoutMs: 300_000,
        },
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const key = r.stdout.split("\n")[0]!;
      expect(r.stdout).toContain("step 2: loss=");
      expect(await runner.exited).toBe(0);
      expect(
        await clientStore(s3).head(`s3://${s3.host}/${FIXTURE_BUCKET}/experiments/${key}/modeldir.tar`),
      ).toBeDefined();
      const after = producer();
      expect(await after.open(queue).receive()).toBeUndefined();
      await after.close();
    } finally {
      await runner.stop();
    }
  }, 300_000);

  test("submit refuses two queue systems at once, and SQS flags without certs", () => {
    const both = runBinary([
      "submit",
      "--sqs-certs",
      "/nonexistent",
      "--amqp-url",
      "amqp://127.0.0.1:1",
      "--workspace",
      join(REPO, "examples/hello"),
      "train.py",
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--amqp-url, --sqs-certs/--sqs-default-account: choose one queue system");
    expect(both.stderr).toContain("--sqs-certs: /nonexistent is not a directory");
    const endpointOnly = runBinary([
      "submit",
      "--sqs-endpoint",
      "http://127.0.0.1:1",
      "--workspace",
      join(REPO, "examples/hello"),
      "train.py",
    ]);
    expect(endpointOnly.code).toBe(2);
    expect(endpointOnly.stderr).toContain("--sqs-endpoint is set but neither --sqs-certs nor --sqs-default-account is");
  });
});
