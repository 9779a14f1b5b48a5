// Covers src/task/steps/upload.ts: after a finished job every mutable artifact and `_results` (last,
// with the exit message) go to storage and the attempt ends finished; a job stopped by the drain is
// checkpointed and ends as shutdown; a log that could not be written is a runner fault.

import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fetchStep } from "../../../src/task/steps/fetch.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { exitReason, uploadStep } from "../../../src/task/steps/upload.ts";
import { harness, prepareAll } from "../../helpers/attempt-harness.ts";
import { tarMember } from "../../helpers/e2e.ts";

describe("upload step", () => {
  test("finished: artifacts and _results uploaded, the ending says why the job ended", async () => {
    const h = harness(undefined, (m) => {
      const output = m.experiment.artifacts.output;
      m.experiment.artifacts._results = {
        ...output,
        key: output.key.replace("output.tar", "_results.tar"),
        qualified: output.qualified.replace("output.tar", "_results.tar"),
      };
    });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, fetchStep]);
    writeFileSync(join(s.dirs!.modeldir!, "model.txt"), "trained");
    s.exit = { code: 0, signal: null };
    await uploadStep.afterExit!(s);
    expect(s.ending).toEqual({ kind: "finished", exit: s.exit, reason: "exited with code 0" });
    expect(tarMember(join(h.experimentDir, "modeldir.tar"), "model.txt")).toBe("trained");
    const results = JSON.parse(tarMember(join(h.experimentDir, "_results.tar"), "_results.json"));
    expect(results).toMatchObject({ exit_msg: "exited with code 0", experiment_id: h.request.experiment.key });
    expect(tarMember(join(h.experimentDir, "output.tar"), "output")).toContain("experiment exited with code 0 after");
  });

  test("stopped by the drain: checkpointed, ending shutdown", async () => {
    const h = harness();
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, fetchStep]);
    writeFileSync(join(s.dirs!.modeldir!, "model.txt"), "half-trained");
    s.exit = { code: null, signal: "SIGTERM", killedFor: "shutdown" };
    await uploadStep.afterExit!(s);
    expect(s.ending).toEqual({ kind: "shutdown", reason: "runner shutting down" });
    expect(tarMember(join(h.experimentDir, "modeldir.tar"), "model.txt")).toBe("half-trained");
  });

  test("why a job ended, in words", () => {
    expect(exitReason({ code: 0, signal: null })).toBe("exited with code 0");
    expect(exitReason({ code: 2, signal: null })).toBe("exited with code 2");
    expect(exitReason({ code: null, signal: "SIGKILL" })).toBe("exited with signal SIGKILL");
    expect(exitReason({ code: null, signal: "SIGKILL", memoryLimitBytes: 2 ** 30 })).toBe(
      "killed by its memory limit of 1.0GiB (resources_needed.ram)",
    );
    expect(exitReason({ code: null, signal: "SIGTERM", killedFor: "time limit reached (x)" })).toBe(
      "stopped: time limit reached (x)",
    );
  });
});
