// Reports on `<queue>_response` from the compiled binary, one backend per real server here: the
// local directory queue, RabbitMQ, SQS (fauxqs) and Pub/Sub (the emulator). Each runs a succeeding
// and a failing experiment and reads back Prestart → Started → Stopping → Success / Failed (with
// the reason and exit code) and the experiments' log lines; one local case is encrypted with the
// experimenter's RSA key (--response-signatures-dir) and decrypted here with the private key.

import { afterAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { PubSub, type Message } from "@google-cloud/pubsub";
import { PubsubQueueBackend } from "../../src/queue/pubsub/pubsub-queue.ts";
import { SqsQueueBackend } from "../../src/queue/sqs/sqs-queue.ts";
import { decryptPayload } from "../../src/request/envelope/hybrid.ts";
import { enqueue, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment, type Sandbox } from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  uniqueQueue,
  withChannel,
} from "../helpers/rabbitmq.ts";
import { pubsubEmulatorInstalled, startPubsubEmulator, type PubsubEmulator } from "../helpers/pubsub-emulator.ts";
import { startSqsServer, type SqsServer } from "../helpers/sqs-server.ts";

const OK_SCRIPT = "print('report line one', flush=True)\nprint('report line two', flush=True)\n";
const FAIL_SCRIPT = "import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n";

type Doc = {
  time: string;
  experiment_id: string;
  unique_id: string;
  executor_id: string;
  progress?: { state: string; error?: { msg: string; code: number } };
  logging?: { message: string; fields: Record<string, string> };
};

function twoExperiments(sb: Sandbox) {
  const make = (script: string) =>
    simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
      m.experiment.pythonver = "3.11";
      delete m.config.database;
    });
  return { ok: make(OK_SCRIPT), bad: make(FAIL_SCRIPT) };
}

/** The reports of one experiment, in the order they arrived. */
function check(docs: Doc[], keys: { ok: string; bad: string }) {
  const of = (key: string) => docs.filter((d) => d.experiment_id === key);
  const states = (key: string) =>
    of(key)
      .filter((d) => d.progress)
      .map((d) => d.progress!.state);
  const text = (key: string) =>
    of(key)
      .filter((d) => d.logging)
      .map((d) => d.logging!.message)
      .join("\n");
  expect(states(keys.ok)).toEqual(["Prestart", "Started", "Stopping", "Success"]);
  expect(text(keys.ok)).toContain("report line one\nreport line two");
  expect(states(keys.bad)).toEqual(["Prestart", "Started", "Stopping", "Failed"]);
  const failed = of(keys.bad).find((d) => d.progress?.state === "Failed")!;
  expect(failed.progress!.error!.code).toBe(3);
  expect(failed.progress!.error!.msg).toContain("3");
  expect(text(keys.bad)).toContain("about to fail");
  for (const key of [keys.ok, keys.bad]) {
    const ids = new Set(of(key).map((d) => d.unique_id));
    expect(ids.size).toBe(1);
    expect(of(key)[0]!.executor_id).toBeTruthy();
  }
}

/** Reports may arrive out of order on SQS and Pub/Sub: put them in the order they were made. */
const byTime = (docs: Doc[]) => [...docs].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
const parse = (bodies: string[]) => bodies.map((b) => JSON.parse(b) as Doc);

describe("response reports: local queue", () => {
  test("plain reports in <root>/<queue>_response, in order", async () => {
    const sb = await makeSandbox("reports-local", { cacheDir: SHARED_CACHE });
    const queue = "local_reports";
    const dir = join(sb.queueRoot, `${queue}_response`);
    mkdirSync(dir, { recursive: true });
    const { ok, bad } = twoExperiments(sb);
    enqueue(sb.queueRoot, queue, ok.message);
    enqueue(sb.queueRoot, queue, bad.message);
    const runner = new RunnerProcess(sb, ["--queue-match", `^${queue}$`, "--limit-tasks", "2"]);
    expect(await runner.exited).toBe(0);
    const names = readdirSync(dir)
      .filter((n) => !n.startsWith("."))
      .sort();
    check(parse(names.map((n) => readFileSync(join(dir, n), "utf8"))), { ok: ok.key, bad: bad.key });
    expect(runner.stderr).toContain(`reports for queue ${queue} go to ${dir}`);
  }, 300_000);

  test("no report queue, no reports: the runner creates none", async () => {
    const sb = await makeSandbox("reports-none", { cacheDir: SHARED_CACHE });
    const { ok } = twoExperiments(sb);
    enqueue(sb.queueRoot, "local_noreports", ok.message);
    const runner = new RunnerProcess(sb, ["--queue-match", "^local_noreports$", "--limit-tasks", "1"]);
    expect(await runner.exited).toBe(0);
    expect(readdirSync(sb.queueRoot).filter((n) => n.endsWith("_response"))).toEqual([]);
  }, 300_000);

  test("encrypted with the experimenter's key from --response-signatures-dir; opened " +
    "with the private key", async () => {
    const sb = await makeSandbox("reports-sealed", { cacheDir: SHARED_CACHE });
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const keys = join(sb.dir, "response-keys");
    mkdirSync(keys);
    writeFileSync(join(keys, "local_sealed"), publicKey.export({ type: "spki", format: "pem" }));
    const queue = "local_sealed_reports";
    const dir = join(sb.queueRoot, `${queue}_response`);
    mkdirSync(dir, { recursive: true });
    const { ok, bad } = twoExperiments(sb);
    enqueue(sb.queueRoot, queue, ok.message);
    enqueue(sb.queueRoot, queue, bad.message);
    const runner = new RunnerProcess(sb, [
      "--queue-match",
      `^${queue}$`,
      "--limit-tasks",
      "2",
      "--response-signatures-dir",
      keys,
    ]);
    expect(await runner.exited).toBe(0);
    const bodies = readdirSync(dir)
      .filter((n) => !n.startsWith("."))
      .sort()
      .map((n) => readFileSync(join(dir, n), "utf8"));
    expect(bodies.length).toBeGreaterThan(4);
    for (const b of bodies) {
      expect(b).toMatch(/^[A-Za-z0-9+/=]+,[A-Za-z0-9+/=]+$/);
      expect(b).not.toContain(ok.key);
    }
    check(parse(bodies.map((b) => new TextDecoder().decode(decryptPayload(b, privateKey)))), {
      ok: ok.key,
      bad: bad.key,
    });
    expect(runner.stderr).toContain("encrypted with the experimenter's key");
  }, 300_000);
});

const rabbit = (await rabbitMQAvailable()) || !!process.env.CI;
describe("response reports: RabbitMQ", () => {
  const made: string[] = [];
  afterAll(() => deleteQueues(made));
  test.skipIf(!rabbit)(
    "reports on the existing queue <queue>_response, in order",
    async () => {
      await ensureRabbitMQ();
      const sb = await makeSandbox("reports-rmq", { cacheDir: SHARED_CACHE });
      const queue = uniqueQueue("reports");
      const responses = `${queue}_response`;
      made.push(queue, responses);
      await withChannel((ch) => ch.assertQueue(responses, { durable: false }));
      const { ok, bad } = twoExperiments(sb);
      await publishLikeClient(queue, [ok.message, bad.message]);
      const runner = new RunnerProcess(sb, [
        "--amqp-url",
        AMQP_URL,
        "--queue-match",
        `^${queue}$`,
        "--limit-tasks",
        "2",
        "--file-storage-roots",
        sb.storageRoot,
      ]);
      expect(await runner.exited).toBe(0);
      const bodies = await withChannel(async (ch) => {
        const out: string[] = [];
        for (let m = await ch.get(responses, { noAck: true }); m; m = await ch.get(responses, { noAck: true })) {
          expect(m.properties.contentType).toBe("application/json");
          out.push(m.content.toString("utf8"));
        }
        return out;
      });
      check(parse(bodies), { ok: ok.key, bad: bad.key });
    },
    300_000,
  );
});

describe("response reports: SQS", () => {
  let sqs: SqsServer | undefined;
  afterAll(() => sqs?.stop());
  test("reports on the existing SQS queue <queue>_response", async () => {
    sqs = await startSqsServer();
    const sb = await makeSandbox("reports-sqs", { cacheDir: SHARED_CACHE });
    const credentials = { accessKeyId: "AKIAFAKE", secretAccessKey: "fake-secret-for-fauxqs" };
    const queue = `sqs_reports_${Date.now()}`;
    const client = new SQSClient({ region: "us-east-1", endpoint: sqs.endpoint, credentials });
    const responseUrl = (await client.send(new CreateQueueCommand({ QueueName: `${queue}_response` }))).QueueUrl!;
    const { ok, bad } = twoExperiments(sb);
    const producer = new SqsQueueBackend({
      accounts: [{ name: "t", credentials, region: "us-east-1" }],
      endpoint: sqs.endpoint,
      maxDeliveries: 3,
    });
    await producer.publish(queue, JSON.stringify(ok.message));
    await producer.publish(queue, JSON.stringify(bad.message));
    await producer.close();
    const certs = join(sb.dir, "sqs-certs", "a");
    mkdirSync(certs, { recursive: true });
    writeFileSync(
      join(certs, "credentials"),
      `[default]\naws_access_key_id = ${credentials.accessKeyId}\n` +
        `aws_secret_access_key = ${credentials.secretAccessKey}\n`,
    );
    writeFileSync(join(certs, "config"), "[default]\nregion = us-east-1\n");
    const runner = new RunnerProcess(sb, [
      "--sqs-certs",
      join(sb.dir, "sqs-certs"),
      "--sqs-endpoint",
      sqs.endpoint,
      "--queue-match",
      `^${queue}$`,
      "--limit-tasks",
      "2",
      "--file-storage-roots",
      sb.storageRoot,
    ]);
    expect(await runner.exited).toBe(0);
    const bodies: string[] = [];
    for (;;) {
      const r = await client.send(
        new ReceiveMessageCommand({ QueueUrl: responseUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
      );
      if (!r.Messages?.length) break;
      for (const m of r.Messages) {
        bodies.push(m.Body!);
        await client.send(new DeleteMessageCommand({ QueueUrl: responseUrl, ReceiptHandle: m.ReceiptHandle! }));
      }
    }
    client.destroy();
    check(byTime(parse(bodies)), { ok: ok.key, bad: bad.key });
  }, 300_000);
});

const pubsubHere = pubsubEmulatorInstalled() || !!process.env.CI;
describe("response reports: Pub/Sub", () => {
  let emulator: PubsubEmulator | undefined;
  afterAll(() => emulator?.stop());
  test.skipIf(!pubsubHere)(
    "reports on the existing topic <queue>_response",
    async () => {
      emulator = await startPubsubEmulator();
      process.env.PUBSUB_EMULATOR_HOST = emulator.host;
      const sb = await makeSandbox("reports-pubsub", { cacheDir: SHARED_CACHE });
      const project = `reports-${randomUUID().slice(0, 8)}`;
      const queue = `pubsub_reports_${Date.now()}`;
      const ps = new PubSub({ projectId: project });
      const [topic] = await ps.createTopic(`${queue}_response`);
      const [sub] = await topic.createSubscription(`${queue}_response_sub`);
      const { ok, bad } = twoExperiments(sb);
      const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
      await producer.publish(queue, JSON.stringify(ok.message));
      await producer.publish(queue, JSON.stringify(bad.message));
      await producer.close();
      const runner = new RunnerProcess(
        sb,
        [
          "--pubsub-project",
          project,
          "--queue-match",
          `^${queue}$`,
          "--limit-tasks",
          "2",
          "--file-storage-roots",
          sb.storageRoot,
        ],
        {
          PUBSUB_EMULATOR_HOST: emulator.host,
        },
      );
      expect(await runner.exited).toBe(0);
      const bodies: string[] = [];
      sub.on("message", (m: Message) => {
        bodies.push(m.data.toString("utf8"));
        m.ack();
      });
      // Pub/Sub may deliver out of order: wait for all four progress reports of each experiment
      // (the terminal one may come before the others), not for a fixed time after the last.
      await waitFor(
        "four progress reports of each experiment",
        () =>
          [ok.key, bad.key].every((k) => parse(bodies).filter((d) => d.experiment_id === k && d.progress).length >= 4),
        30_000,
        200,
      );
      // A negative check (no duplicate report comes after them): a fixed quiet time, no event to await.
      await Bun.sleep(1000);
      await sub.close();
      await ps.close();
      check(byTime(parse(bodies)), { ok: ok.key, bad: bad.key });
    },
    300_000,
  );
});
