// The captured client message published to RabbitMQ exactly as the python client does, with the
// workspace in S3 under blobstore/<sha256>.tar, runs from the compiled binary; the results land
// at experiments/<key>/<label>.tar and the message is acked only after that. Also `submit
// --amqp-url --wait` against the same broker and S3 server.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { makeSandbox, REPO, runBinary, RunnerProcess, SHARED_CACHE, tarMember, tarNames } from "../helpers/e2e.ts";
import { CLIENT_KEYS, clientStore, FIXTURE_BUCKET, fixtureOnS3, RESULT_LABELS } from "../helpers/fixture-s3.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  rabbitmqctl,
  uniqueQueue,
} from "../helpers/rabbitmq.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";

const available = (await rabbitMQAvailable()) || !!process.env.CI;
let server: S3Server;
const queues: string[] = [];
beforeAll(async () => {
  if (available) await ensureRabbitMQ();
  server = await startS3rver({ keys: [CLIENT_KEYS], buckets: [FIXTURE_BUCKET] });
}, 240_000);
afterAll(async () => {
  await server?.stop();
  if (available) await deleteQueues(queues).catch(() => undefined);
});

const TRAIN = `
import json, os, sys
print("argv:", json.dumps(sys.argv[1:]))
print("data:", open("data/input.txt").read().strip())
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "weights.txt"), "w").write("w=7\\n")
import time; time.sleep(4)  # long enough to watch the message held unacked
`;

/** Ready and unacked counts straight from the broker (the management API's figures lag by seconds). */
function counts(queue: string): { ready: number; unacked: number } | undefined {
  const r = rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged");
  const line = r.out.split("\n").find((l) => l.split(/\s+/)[0] === queue);
  if (!line) return undefined;
  const [, ready, unacked] = line.trim().split(/\s+/);
  return { ready: Number(ready), unacked: Number(unacked) };
}

describe("RabbitMQ + S3", () => {
  test.skipIf(!available)(
    "the captured client message runs from RabbitMQ with S3 storage; acked only after the results are in S3",
    async () => {
      const sb = await makeSandbox("rmq-s3", { cacheDir: SHARED_CACHE });
      const queue = uniqueQueue("fixture");
      queues.push(queue);
      const { message, key, location } = await fixtureOnS3(server, sb, {
        "train.py": TRAIN,
        "data/input.txt": "from rabbit\n",
      });
      await publishLikeClient(queue, [message]);
      // Idle for a while after the ack, so the moment of the ack is observed while the runner lives.
      const runner = new RunnerProcess(sb, [
        "--amqp-url",
        AMQP_URL,
        "--queue-match",
        `^${queue}$`,
        "--limit-idle-duration",
        "4s",
      ]);

      // While the message is unacked, poll; the moment it is gone, every result must be in S3.
      let sawUnacked = false;
      let resultsAtAck: boolean | undefined;
      while (runner.child.exitCode === null && resultsAtAck === undefined) {
        const c = counts(queue);
        if (!c) continue;
        const { ready, unacked } = c;
        if (unacked > 0) sawUnacked = true;
        if (sawUnacked && unacked === 0 && ready === 0) {
          const heads = await Promise.all(RESULT_LABELS.map((l) => clientStore(server).head(location(l))));
          resultsAtAck = heads.every((h) => h !== undefined);
        }
        await Bun.sleep(20);
      }
      expect(await runner.exited).toBe(0);
      expect(sawUnacked).toBe(true);
      expect(resultsAtAck).toBe(true);

      const out = join(sb.dir, "output.tar");
      await pipeline(await clientStore(server).get(location("output")), createWriteStream(out));
      const log = tarMember(out);
      expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
      expect(log).toContain("data: from rabbit");
      expect(log).toContain(`from queue ${queue}`);
      expect(log).toContain("exited with code 0");
      const modeldir = join(sb.dir, "modeldir.tar");
      await pipeline(await clientStore(server).get(location("modeldir")), createWriteStream(modeldir));
      expect(tarNames(modeldir)).toContain("weights.txt");
      expect(runner.stderr).toContain(`experiment ${key} finished`);
      expect(runner.stderr).not.toContain("guest:guest");
    },
    600_000,
  );

  test.skipIf(!available)(
    "submit --amqp-url --wait publishes to RabbitMQ with S3 storage and prints the log",
    async () => {
      const sb = await makeSandbox("rmq-submit", { cacheDir: SHARED_CACHE });
      const queue = uniqueQueue("submit");
      queues.push(queue);
      const runner = new RunnerProcess(sb, [
        "--amqp-url",
        AMQP_URL,
        "--queue-match",
        `^${queue}$`,
        "--limit-tasks",
        "1",
      ]);
      const env = {
        AWS_ACCESS_KEY_ID: CLIENT_KEYS.accessKey,
        AWS_SECRET_ACCESS_KEY: CLIENT_KEYS.secretAccessKey,
        AWS_REGION: "us-west-2",
      };
      const r = runBinary(
        [
          "submit",
          "--amqp-url",
          AMQP_URL,
          "--queue",
          queue,
          "--storage",
          `s3://${server.host}/${FIXTURE_BUCKET}`,
          "--s3-endpoint",
          server.endpoint,
          "--pythonver",
          "3.11",
          "--workspace",
          join(REPO, "examples/hello"),
          "--wait",
          "--wait-timeout",
          "5m",
          "train.py",
          "--msg",
          "via rabbit",
          "--steps",
          "2",
        ],
        { env },
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("msg='via rabbit' lr=0.1 steps=2");
      expect(await runner.exited).toBe(0);
    },
    300_000,
  );
});
