// RabbitMQ restarts (stop_app, start_app) while experiments are queued and running: the runners
// reconnect, take back what they were running, and every confirmed request completes.

import { beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment, tarMember } from "../helpers/e2e.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  readyCount,
  restartBroker,
  uniqueQueue,
} from "../helpers/rabbitmq.ts";

const available = (await rabbitMQAvailable()) || !!process.env.CI;
if (!available)
  console.error(
    "\n*** SKIPPING the RabbitMQ restart test: no broker on 127.0.0.1:5672 and rabbitmq-server is not installed ***\n",
  );

const SCRIPT = `
import os, time
with open(os.environ["RUNS_LOG"], "a") as f:
    f.write(os.environ["STUDIOML_EXPERIMENT"] + "\\n")
time.sleep(float(os.environ["SLEEP_S"]))
print("done", flush=True)
`;

// Eight experiments of 20 s on two runners of two slots: four run through the restart (longer
// than the broker's outage plus the reconnect back-off), four wait in the queue.
const TOTAL = 8;

beforeAll(async () => {
  if (available) await ensureRabbitMQ();
}, 240_000);

describe("RabbitMQ restart", () => {
  test.skipIf(!available)(
    "while experiments are queued and running: all complete afterwards, none is lost",
    async () => {
      const queue = uniqueQueue("restart");
      const sb = await makeSandbox("rmq-restart", { cacheDir: SHARED_CACHE });
      const runsLog = join(sb.dir, "runs.log");
      appendFileSync(runsLog, "");
      const exps = Array.from({ length: TOTAL }, () =>
        simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
          m.experiment.pythonver = "3.11";
          m.experiment.resources_needed = { cpus: 1, ram: "256m", hdd: "256m", gpus: 0 };
          m.config.env = { RUNS_LOG: runsLog, SLEEP_S: "20" };
        }),
      );
      await publishLikeClient(
        queue,
        exps.map((e) => e.message),
      );
      // --sandbox none on purpose: every run appends its key to one host file (RUNS_LOG) that the
      // sandbox would rightly keep read-only; what is tested here is the broker, not the sandbox.
      const args = [
        "--sandbox",
        "none",
        "--amqp-url",
        AMQP_URL,
        "--queue-match",
        `^${queue}$`,
        "--max-cores",
        "2",
        "--file-storage-roots",
        sb.storageRoot,
      ];
      const runners = [new RunnerProcess(sb, args), new RunnerProcess(sb, args)];
      const all = () => runners.map((r) => r.stderr).join("\n");
      const count = (re: RegExp) => (all().match(re) ?? []).length;
      const until = async (cond: () => boolean, what: string, timeoutMs = 150_000) => {
        const deadline = Date.now() + timeoutMs;
        while (!cond()) {
          if (Date.now() > deadline)
            throw new Error(`${what}: not in time. Runner logs:\n${runners.map((r) => r.stderr).join("\n-----\n")}`);
          await Bun.sleep(200);
        }
      };
      try {
        // Four running (both runners full), four queued.
        await until(
          () =>
            count(/starting experiment/g) >= 4 && readFileSync(runsLog, "utf8").split("\n").filter(Boolean).length >= 4,
          "four experiments running",
        );
        await restartBroker(1500);
        await until(
          () => count(/experiment \S+ finished: exited with code 0/g) >= TOTAL,
          "all experiments finished after the restart",
          180_000,
        );
        for (const r of runners) r.child.kill("SIGTERM");
        expect(await Promise.all(runners.map((r) => r.exited))).toEqual([0, 0]);

        expect(all()).toContain("lost the connection to RabbitMQ");
        expect(all()).toMatch(/connected to RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/%2f after/);
        const finished = new Set(
          [...all().matchAll(/experiment (\S+) finished: exited with code 0/g)].map((m) => m[1]),
        );
        for (const e of exps) {
          expect(finished.has(e.key)).toBe(true);
          expect(tarMember(join(e.experimentDir, "output.tar"))).toContain("exited with code 0");
        }
        expect(await readyCount(queue)).toBe(0);
        expect(await readyCount(`studioml_failed.${queue}`)).toBeUndefined();
        // What ran twice can only be what was running when the broker went away.
        const runs = new Map<string, number>();
        for (const k of readFileSync(runsLog, "utf8").split("\n").filter(Boolean)) runs.set(k, (runs.get(k) ?? 0) + 1);
        const twice = [...runs.values()].filter((n) => n > 1).length;
        const takenBack = count(/took \S+ back after losing its channel/g);
        console.error(
          `rabbitmq restart: ${takenBack} held message(s) taken back after reconnecting, ${twice} experiment(s) ran twice`,
        );
        expect(takenBack).toBeGreaterThanOrEqual(1);
        expect(twice).toBeLessThanOrEqual(4);
        // A restart is not a deletion: nothing was revoked.
        expect(all()).not.toContain("was deleted");
      } finally {
        for (const r of runners) await r.stop();
        await deleteQueues([queue]);
      }
    },
    300_000,
  );
});
