// Deleting a RabbitMQ queue stops the experiments running from it (as the Go runner does): the
// log says why, the results so far are uploaded, and nothing is requeued anywhere.

import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { jobPrinted, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment, tarMember } from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  readyCount,
  uniqueQueue,
  withChannel,
} from "../helpers/rabbitmq.ts";

const available = (await rabbitMQAvailable()) || !!process.env.CI;

beforeAll(async () => {
  if (available) await ensureRabbitMQ();
}, 240_000);

describe("RabbitMQ queue deleted", () => {
  test.skipIf(!available)(
    "the running experiment is stopped, its log says why and is uploaded; the runner goes on",
    async () => {
      const queue = uniqueQueue("deleted");
      const sb = await makeSandbox("rmq-deleted", { cacheDir: SHARED_CACHE });
      const exp = simpleExperiment(
        sb.storageRoot,
        { "main.py": "import time\nprint('started', flush=True)\ntime.sleep(120)\n" },
        (m) => {
          m.experiment.pythonver = "3.11";
          m.experiment.resources_needed = { cpus: 1, ram: "256m", hdd: "256m", gpus: 0 };
        },
      );
      await publishLikeClient(queue, [exp.message]);
      const r = new RunnerProcess(sb, [
        "--amqp-url",
        AMQP_URL,
        "--queue-match",
        `^${queue}$`,
        "--max-cores",
        "1",
        "--file-storage-roots",
        sb.storageRoot,
      ]);
      try {
        // Delete the queue once the script itself runs (it prints "started" first).
        await r.waitForLog(/python environment \S+ in /);
        await waitFor('the job\'s "started" in its live output', () => jobPrinted(sb.workDir, "started"));
        const deletedAt = Date.now();
        await withChannel((ch) => ch.deleteQueue(queue));
        await r.waitForLog(/finished: stopped: request withdrawn/, 30_000);
        expect(Date.now() - deletedAt).toBeLessThan(15_000);
        expect(r.stderr).toContain(`queue ${queue} was deleted`);
        const log = tarMember(join(exp.experimentDir, "output.tar"));
        expect(log).toContain("started");
        expect(log).toContain(`queue ${queue} was deleted: stopping the experiment`);
        expect(await readyCount(queue)).toBeUndefined();
        r.child.kill("SIGTERM");
        expect(await r.exited).toBe(0);
      } finally {
        await r.stop();
        await deleteQueues([queue]);
      }
    },
    120_000,
  );
});
