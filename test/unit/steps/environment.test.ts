// Covers src/task/steps/environment.ts and the executors (src/task/executors/): the container
// executor runs a request that names an image, through the container tool on the runner's PATH
// with the job's environment in an env file only; the venv executor builds a real Python
// environment and starts the script with it; a container-only request without an image is refused.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { environmentStep } from "../../../src/task/steps/environment.ts";
import { fetchStep } from "../../../src/task/steps/fetch.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";
import { REPO } from "../../helpers/e2e.ts";

const STANDIN = join(REPO, "test", "helpers", "apptainer-standin");

describe("environment step", () => {
  test("an image runs through the container executor; the job's env reaches it only by file", async () => {
    const h = harness(
      undefined,
      (m) => {
        m.experiment.artifacts._singularity = { mutable: false, unpack: false, qualified: "docker://python:3.12" };
        m.config.env = { MY_SETTING: "visible-in-the-env-file" };
      },
      {},
    );
    h.ctx.runnerEnv.PATH = `${STANDIN}:${h.ctx.runnerEnv.PATH}`;
    const s = h.state();
    const step = environmentStep();
    await prepareAll(s, [layoutStep, logStep, fetchStep, step]);
    expect(s.launch!.argv[0]).toBe(join(STANDIN, "apptainer"));
    expect(s.launch!.argv).toContain("docker://python:3.12");
    expect(JSON.stringify(s.launch!.env)).not.toContain("visible-in-the-env-file");
    expect(textOf(join(s.attemptDir, ".container-env"))).toContain("visible-in-the-env-file");
    await step.cleanup!(s, { kind: "shutdown", reason: "x" });
  });

  test("a script runs through the venv executor in a real environment, held until cleanup", async () => {
    const h = harness();
    const s = h.state();
    const step = environmentStep();
    await prepareAll(s, [layoutStep, logStep, fetchStep, step]);
    expect(s.launch!.argv.some((a) => a.endsWith("/bin/python") || a.includes("python"))).toBe(true);
    expect(s.launch!.cwd).toBe(s.dirs!.workspace!);
    expect(s.releaseEnvironment).toBeDefined();
    await s.log!.flush();
    expect(textOf(join(s.dirs!.output!, "output"))).toContain('running "main.py"');
    await step.cleanup!(s, { kind: "shutdown", reason: "x" });
    expect(s.releaseEnvironment).toBeUndefined();
  }, 120_000);

  test("a container-only request (filename null) without an image is refused naming the field", async () => {
    const h = harness(undefined, (m) => (m.experiment.filename = null));
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, fetchStep]);
    const err = await environmentStep().prepare!(s).then(
      () => undefined,
      (e) => e,
    );
    expect(err.message).toContain("experiment.filename");
    expect(err.retryable).toBe(false);
  });
});
