// A real Keras model (tensorflow-cpu from the machine's offline wheelhouse, synthetic data)
// trains through the compiled runner; the log shows its loss lines and the model is uploaded.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  makeSandbox,
  REPO,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  tarNames,
} from "../helpers/e2e.ts";

const wheelhouse = existsSync("/opt/pypi/simple/tensorflow-cpu");
if (!wheelhouse) console.warn("!!! SKIPPING the Keras e2e test: no offline tensorflow-cpu wheelhouse on this machine");

describe("keras training job", () => {
  test.skipIf(!wheelhouse)(
    "trains on CPU through the runner and logs its loss",
    async () => {
      const sb = await makeSandbox("keras", { cacheDir: SHARED_CACHE });
      const script = readFileSync(join(REPO, "examples/keras-mnist-like/train.py"), "utf8");
      const exp = simpleExperiment(sb.storageRoot, { "train.py": script }, (m) => {
        m.experiment.filename = "train.py";
        m.experiment.args = ["--epochs", "3"];
        m.experiment.pythonver = "3.11";
        m.experiment.pythonenv = ["tensorflow-cpu==2.21.0"];
        m.experiment.resources_needed = { cpus: 2, ram: "4g", hdd: "3g", gpus: 0 };
      });
      enqueue(sb.queueRoot, "local_keras", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
      expect(await runner.exited).toBe(0);
      const log = tarMember(join(exp.experimentDir, "output.tar"));
      expect(log).toMatch(/epoch 1: loss=\d+\.\d+ accuracy=/);
      expect(log).toMatch(/epoch 3: loss=\d+\.\d+ accuracy=/);
      expect(log).toContain("exited with code 0");
      expect(tarNames(join(exp.experimentDir, "modeldir.tar"))).toContain("model.keras");
    },
    900_000,
  );
});
