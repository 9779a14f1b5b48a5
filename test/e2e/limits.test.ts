// An experiment's resources_needed.ram and cpus are enforced with a cgroup where the runner may
// make one (cgroup v1 on the CI machines, v2 elsewhere): a job using more RAM than it asked for
// is killed by the kernel and reported as such; one within its limit runs normally.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { detectCgroups } from "../../src/exec/cgroup.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";

const support = detectCgroups();
const usable = support.version !== "none" || !!process.env.CI;
if (support.version === "none")
  console.warn(`\n*** cgroups unusable here (${support.reason}): the RAM-limit tests cannot run ***\n`);

const HOG =
  "import time\nprint('allocating', flush=True)\nblocks = []\nfor i in range(40):\n    blocks.append(bytearray(10 * 1024 * 1024))\n    time.sleep(0.01)\nprint('allocated', len(blocks) * 10, 'MiB', flush=True)\n";

describe("RAM and CPU limits", () => {
  test.skipIf(!usable)(
    "a job using more RAM than resources_needed.ram is killed by the limit and reported as such",
    async () => {
      const sb = await makeSandbox("limits", { cacheDir: SHARED_CACHE });
      const make = (ram: string) =>
        simpleExperiment(sb.storageRoot, { "main.py": HOG }, (m) => {
          m.experiment.pythonver = "3.11";
          m.experiment.resources_needed = { cpus: 1, gpus: 0, ram, hdd: "10m" };
          m.config.resources_needed = m.experiment.resources_needed;
        });
      const small = make("100m");
      const enough = make("1g");
      enqueue(sb.queueRoot, "local_limits", small.message);
      enqueue(sb.queueRoot, "local_limits", enough.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "2"]);
      expect(await runner.exited).toBe(0);
      expect(runner.stderr).toContain("RAM and CPU limits are enforced with cgroup");

      const killed = tarMember(join(small.experimentDir, "output.tar"));
      expect(killed).toContain("allocating");
      expect(killed).not.toContain("allocated 400 MiB");
      expect(killed).toContain(
        "the experiment used more than its memory limit of 100.0MiB and was killed by the kernel",
      );
      expect(killed).toContain("experiment killed by its memory limit of 100.0MiB (resources_needed.ram)");
      expect(runner.stderr).toContain(`experiment ${small.key} finished: killed by its memory limit`);

      const fine = tarMember(join(enough.experimentDir, "output.tar"));
      expect(fine).toContain("allocated 400 MiB");
      expect(fine).toContain("experiment exited with code 0");
      expect(fine).toMatch(/peak memory \d/);
      // Both finished (a failing script is a finished experiment): nothing left in the queue.
      expect(filesIn(join(sb.queueRoot, "local_limits"))).toEqual([]);
    },
    300_000,
  );
});

describe("time limits beyond a timer's range", () => {
  test("an experiment with max_duration 720h (30 days) runs to its end (a JavaScript timer holds about 24.8 days at most)", async () => {
    const sb = await makeSandbox("limits-30d", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(
      sb.storageRoot,
      { "main.py": "import time\ntime.sleep(1)\nprint('slept', flush=True)\n" },
      (m) => {
        m.experiment.pythonver = "3.11";
        m.experiment.max_duration = "720h";
        m.config.experimentLifetime = "1440h";
        delete m.config.database;
      },
    );
    enqueue(sb.queueRoot, "local_long", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    expect(await runner.exited).toBe(0);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("slept");
    expect(log).toContain("experiment exited with code 0");
    expect(log).not.toContain("reached: stopping");
  }, 120_000);
});
