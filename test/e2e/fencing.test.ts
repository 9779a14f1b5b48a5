// Fencing by attempt: an attempt records itself beside the experiment's output in storage; when a
// newer attempt of the same experiment takes over (as after a lost lease), the older one stops at
// its next upload, uploads nothing more, and gives the request back uncounted instead of acking.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  makeSandbox,
  makeTar,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  tarNames,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";

const SCRIPT = `import json, os, time
m = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
for i in range(120):
    open(os.path.join(m["modeldir"], "step.txt"), "w").write(str(i))
    print("step", i, flush=True)
    time.sleep(0.5)
print("done", flush=True)
`;

describe("fencing stale attempts", () => {
  test("a newer attempt's claim stops the older one before it overwrites the newer results", async () => {
    const sb = await makeSandbox("fencing", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.saveWorkspaceFrequency = "2s";
      delete m.config.database;
    });
    const marker = join(exp.experimentDir, "_studio_runner_attempt.json");
    enqueue(sb.queueRoot, "local_fence", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    await waitFor("the first attempt's claim", () => existsSync(marker), 60_000);
    const mine = JSON.parse(readFileSync(marker, "utf8"));
    expect(mine.delivery).toBe(1);
    // A checkpoint by the first attempt: its modeldir (the job's step.txt) is in storage.
    const modeldir = join(exp.experimentDir, "modeldir.tar");
    await waitFor(
      "a checkpoint by the first attempt",
      () => existsSync(modeldir) && tarNames(modeldir).includes("step.txt"),
    );
    // A newer attempt (elsewhere) takes the experiment over and writes its own log.
    writeFileSync(
      marker,
      JSON.stringify({
        attempt: "newer-attempt",
        delivery: 2,
        host: "elsewhere",
        runnerId: "other",
        startedAt: new Date().toISOString(),
      }),
    );
    const newerLog = join(sb.dir, "newer-output.tar");
    makeTar(newerLog, { output: "the newer attempt's log\n" });
    writeFileSync(join(exp.experimentDir, "output.tar"), readFileSync(newerLog));
    expect(await runner.exited).toBe(0);

    expect(runner.stderr).toContain("superseded by a newer attempt of this experiment (delivery 2 on elsewhere");
    // The newer attempt's results stay as they are; the request went back to the queue uncounted.
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("the newer attempt's log");
    expect(JSON.parse(readFileSync(marker, "utf8")).attempt).toBe("newer-attempt");
    expect(filesIn(join(sb.queueRoot, "local_fence")).length).toBe(1);
    expect(existsSync(join(sb.queueRoot, ".failed", "local_fence"))).toBe(false);
    expect(runner.stderr).not.toContain(`experiment ${exp.key} finished`);
  }, 180_000);
});
