// The captured studioml client message (rewritten to file: storage) runs through the compiled
// binary: quoted args arrive whole, modeldir and the log land in storage, the whole `pip freeze`
// is installed as far as this machine can, and the failures are reported in the log.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { enqueue, filesIn, fixtureOnFileStorage, makeSandbox, RunnerProcess, SHARED_CACHE, tarMember, tarNames } from "../helpers/e2e.ts";

const TRAIN = `
import json, os, sys
print("argv:", json.dumps(sys.argv[1:]))
print("data:", open("data/input.txt").read().strip())
print("env ACC_FROM_CONFIG_ENV =", os.environ.get("ACC_FROM_CONFIG_ENV"))
print("runner secret visible:", "RUNNER_SECRET_TOKEN" in os.environ)
print("cuda:", os.environ.get("CUDA_VISIBLE_DEVICES"), "threads:", os.environ.get("OMP_NUM_THREADS"))
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "weights.txt"), "w").write("w=42\\n")
import numpy
print("numpy", numpy.__version__, "ok")
`;

describe("captured studioml client message", () => {
  test(
    "runs end to end through the compiled binary",
    async () => {
      const sb = await makeSandbox("fixture", { cacheDir: SHARED_CACHE });
      const { message, key, experimentDir } = fixtureOnFileStorage(sb.storageRoot, { "train.py": TRAIN, "data/input.txt": "hello data\n" });
      const id = enqueue(sb.queueRoot, "local_fixture", message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1"], { RUNNER_SECRET_TOKEN: "tok-9f8e7d6c5b4a" });
      expect(await runner.exited).toBe(0);

      const log = tarMember(join(experimentDir, "output.tar"));
      expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
      expect(log).toContain("data: hello data");
      expect(log).toContain("env ACC_FROM_CONFIG_ENV = yes");
      expect(log).toContain("runner secret visible: False");
      expect(log).toContain("cuda: -1 threads: 1");
      expect(log).toContain("numpy");
      expect(log).not.toContain("tok-9f8e7d6c5b4a");
      // The client's full pip freeze: what the offline wheelhouse lacks is reported, with pip's words.
      // (Either while building, or from the cached environment's record when it is reused.)
      expect(log).toMatch(/annotated-types==0\.7\.0: .*No matching distribution/);
      expect(log).toMatch(/asttokens==3\.0\.1: /); // a pin is not a secret to mask
      expect(log).toContain("exited with code 0");

      expect(tarNames(join(experimentDir, "modeldir.tar"))).toContain("weights.txt");
      expect(tarMember(join(experimentDir, "modeldir.tar"), "weights.txt")).toBe("w=42\n");
      expect(existsSync(join(experimentDir, "output.tar"))).toBe(true);
      // Acked: gone from the queue, nothing in flight or failed.
      expect(filesIn(join(sb.queueRoot, "local_fixture"))).toEqual([]);
      expect(filesIn(join(sb.queueRoot, ".inflight", "local_fixture"))).toEqual([]);
      expect(filesIn(join(sb.queueRoot, ".failed", "local_fixture"))).toEqual([]);
      expect(runner.stderr).toContain(`experiment ${key} finished`);
      void id;
      void readFileSync;
    },
    900_000,
  );
});
