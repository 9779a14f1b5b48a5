// Big experiments are not starved by a stream of small ones: once a request that fits this
// runner (but not now) waits, other queues' work is taken only where it leaves room for it.

import { describe, expect, test } from "bun:test";
import { enqueue, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment } from "../helpers/e2e.ts";

const SCRIPT = "import os, time\ntime.sleep(float(os.environ['SLEEP_S']))\nprint('done', flush=True)\n";

describe("fair taking of work", () => {
  test("a 2-cpu experiment waiting behind 1-cpu ones starts before the later small ones", async () => {
    const sb = await makeSandbox("fairness", { cacheDir: SHARED_CACHE });
    const make = (cpus: number, sleepS: number) =>
      simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
        m.experiment.pythonver = "3.11";
        m.experiment.resources_needed = { cpus, gpus: 0, ram: "10m", hdd: "10m" };
        m.config.resources_needed = m.experiment.resources_needed;
        m.config.env = { SLEEP_S: String(sleepS) };
      });
    const small = Array.from({ length: 6 }, () => make(1, 2));
    const big = make(2, 1);
    for (const s of small) enqueue(sb.queueRoot, "local_a_small", s.message);
    enqueue(sb.queueRoot, "local_b_big", big.message);
    const runner = new RunnerProcess(sb, ["--max-cores", "2", "--limit-tasks", "7"]);
    expect(await runner.exited).toBe(0);
    const starts = [...runner.stderr.matchAll(/starting experiment (\S+)/g)].map((m) => m[1]);
    expect(starts.length).toBe(7);
    const bigAt = starts.indexOf(big.key);
    console.log(`start order: big experiment started ${bigAt + 1}th of 7`);
    expect(runner.stderr).toContain(`experiment ${big.key} in local_b_big waits for resources`);
    // Two small ones were running when it arrived; at most one more may slip in while they end.
    expect(bigAt).toBeLessThanOrEqual(3);
  }, 300_000);
});
