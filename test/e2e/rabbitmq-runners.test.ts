// Several runner processes (the compiled binary) on one RabbitMQ queue: 50 small experiments,
// each done exactly once in effect; and the same with one runner SIGKILLed mid-run: nothing lost.

import { beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  makeSandbox,
  runBinary,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../helpers/e2e.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  peekAll,
  publishLikeClient,
  rabbitMQAvailable,
  readyCount,
  uniqueQueue,
} from "../helpers/rabbitmq.ts";

const available = (await rabbitMQAvailable()) || !!process.env.CI;
if (!available)
  console.error(
    "\n*** SKIPPING the RabbitMQ end-to-end tests: no broker on 127.0.0.1:5672 and rabbitmq-server is not installed ***\n",
  );

const SCRIPT = `
import os, time
with open(os.environ["RUNS_LOG"], "a") as f:
    f.write(os.environ["STUDIOML_EXPERIMENT"] + "\\n")
print("hello from", os.environ["STUDIOML_EXPERIMENT"], flush=True)
time.sleep(float(os.environ.get("SLEEP_S", "0.2")))
print("done", flush=True)
`;

const TOTAL = 50;

type Batch = { keys: string[]; dirs: Map<string, string>; runsLog: string };

/** TOTAL experiments on file: storage, published to queue like the python client does. */
async function publishBatch(sb: Sandbox, queue: string, sleepS: string): Promise<Batch> {
  const runsLog = join(sb.dir, "runs.log");
  appendFileSync(runsLog, "");
  const keys: string[] = [];
  const dirs = new Map<string, string>();
  const bodies: object[] = [];
  for (let i = 0; i < TOTAL; i++) {
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      m.experiment.pythonver = "3.11";
      m.experiment.resources_needed = { cpus: 1, ram: "256m", hdd: "256m", gpus: 0 };
      m.config.env = { RUNS_LOG: runsLog, SLEEP_S: sleepS };
    });
    keys.push(exp.key);
    dirs.set(exp.key, exp.experimentDir);
    bodies.push(exp.message);
  }
  await publishLikeClient(queue, bodies);
  return { keys, dirs, runsLog };
}

const runner = (sb: Sandbox, queue: string) =>
  // --sandbox none on purpose: every run appends its key to one host file (RUNS_LOG) that the
  // sandbox would rightly keep read-only; what is tested here is the broker, not the sandbox.
  new RunnerProcess(sb, [
    "--sandbox",
    "none",
    "--amqp-url",
    AMQP_URL,
    "--queue-match",
    `^${queue}$`,
    "--max-cores",
    "2",
    "--max-deliveries",
    "5",
    "--file-storage-roots",
    sb.storageRoot,
  ]);

const finishedKeys = (runners: RunnerProcess[]) => {
  const done = new Set<string>();
  for (const r of runners)
    for (const m of r.stderr.matchAll(/experiment (\S+) finished: exited with code 0/g)) done.add(m[1]!);
  return done;
};

async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  runners: RunnerProcess[],
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not in ${timeoutMs / 1000}s. Runner logs:\n${runners.map((r) => r.stderr.slice(-3000)).join("\n-----\n")}`,
      );
    await Bun.sleep(200);
  }
}

const runsPerKey = (runsLog: string) => {
  const counts = new Map<string, number>();
  for (const line of readFileSync(runsLog, "utf8").split("\n").filter(Boolean))
    counts.set(line, (counts.get(line) ?? 0) + 1);
  return counts;
};

async function drain(runners: RunnerProcess[]) {
  for (const r of runners) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGTERM");
  return Promise.all(runners.map((r) => r.exited));
}

beforeAll(async () => {
  if (available) await ensureRabbitMQ();
}, 240_000);

describe("RabbitMQ: three runners on one queue", () => {
  test.skipIf(!available)(
    "50 experiments: each runs once, delivery 1, one output.tar per key; the queue ends empty",
    async () => {
      const queue = uniqueQueue("e2e3");
      const sb = await makeSandbox("rmq-three", { cacheDir: SHARED_CACHE });
      const runners: RunnerProcess[] = [];
      try {
        const batch = await publishBatch(sb, queue, "0.2");
        for (let i = 0; i < 3; i++) runners.push(runner(sb, queue));
        await waitUntil(() => finishedKeys(runners).size === TOTAL, 150_000, "all 50 finished", runners);
        expect(await drain(runners)).toEqual([0, 0, 0]);
        const runs = runsPerKey(batch.runsLog);
        expect(runs.size).toBe(TOTAL);
        expect([...runs.values()].every((n) => n === 1)).toBe(true);
        for (const key of batch.keys) {
          const out = join(batch.dirs.get(key)!, "output.tar");
          expect(existsSync(out)).toBe(true);
          const log = tarMember(out);
          expect(log).toContain(`delivery 1 from queue ${queue}`);
          expect(log).toContain("exited with code 0");
        }
        // Work was shared, nothing left behind or kept as failed.
        expect(runners.filter((r) => /experiment \S+ finished/.test(r.stderr)).length).toBeGreaterThanOrEqual(2);
        expect(await readyCount(queue)).toBe(0);
        expect(await readyCount(`studioml_failed.${queue}`)).toBeUndefined();
        for (const r of runners) {
          expect(r.stderr).toContain("RabbitMQ queues at amqp://guest:***@127.0.0.1:5672/%2f");
          expect(r.stderr).toContain(`serving rabbitmq queue ${queue}`);
        }
      } finally {
        for (const r of runners) await r.stop();
        await deleteQueues([queue]);
      }
    },
    240_000,
  );

  test.skipIf(!available)(
    "one runner SIGKILLed mid-run: the others finish all 50, nothing lost, only what it held runs again",
    async () => {
      const queue = uniqueQueue("e2ekill");
      const sb = await makeSandbox("rmq-kill", { cacheDir: SHARED_CACHE });
      const runners: RunnerProcess[] = [];
      try {
        const batch = await publishBatch(sb, queue, "0.5");
        for (let i = 0; i < 3; i++) runners.push(runner(sb, queue));
        const victim = runners[0]!;
        // Kill it while it holds experiments it has started but not finished.
        await waitUntil(
          () => {
            const started = (victim.stderr.match(/starting experiment/g) ?? []).length;
            const finished = (victim.stderr.match(/experiment \S+ finished/g) ?? []).length;
            return finished >= 3 && started > finished;
          },
          150_000,
          "the victim runs an experiment",
          runners,
        );
        victim.child.kill("SIGKILL");
        await victim.exited;
        const survivors = runners.slice(1);
        await waitUntil(() => finishedKeys(runners).size === TOTAL, 150_000, "all 50 finished after the kill", runners);
        expect(await drain(survivors)).toEqual([0, 0]);
        for (const key of batch.keys) {
          const log = tarMember(join(batch.dirs.get(key)!, "output.tar"));
          expect(log).toContain("exited with code 0");
        }
        const runs = runsPerKey(batch.runsLog);
        expect(runs.size).toBe(TOTAL);
        const twice = [...runs.entries()].filter(([, n]) => n > 1);
        // Only what the victim held (at most its two slots) ran a second time.
        expect(twice.length).toBeLessThanOrEqual(2);
        expect(twice.every(([, n]) => n === 2)).toBe(true);
        expect(await readyCount(queue)).toBe(0);
        expect(await peekAll(`studioml_failed.${queue}`).catch(() => [])).toEqual([]);
      } finally {
        for (const r of runners) await r.stop();
        await deleteQueues([queue]);
      }
    },
    240_000,
  );
});

describe("RabbitMQ settings", () => {
  test("a bad --amqp-url is a configuration error (exit 2) that names the flag and not the password", () => {
    const r = runBinary(["run", "--amqp-url", "amqp//guest:hunter2@127.0.0.1:5672", "--amqp-mgt-url", "ftp://x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--amqp-url:");
    expect(r.stderr).not.toContain("hunter2");
  });

  test("--help lists the RabbitMQ flags with their environment variables", () => {
    const r = runBinary(["run", "--help"]);
    for (const env of ["AMQP_URL", "AMQP_MGT_URL", "AMQP_QUEUES", "AMQP_QUEUE_TYPE"])
      expect(`${r.stdout}${r.stderr}`).toContain(env);
  });
});
