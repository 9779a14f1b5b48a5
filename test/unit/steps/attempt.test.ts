// Covers src/task/attempt.ts in-process: a whole attempt from a delivery in memory to its settling,
// with every step real (file storage, a real Python environment, a real job): a finished script is
// acked with its results in storage; a bad request and an expired one are rejected naming why.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { RunnerEvents } from "../../../src/observe/events.ts";
import { runAttempt } from "../../../src/task/attempt.ts";
import { harness, MemoryDelivery } from "../../helpers/attempt-harness.ts";
import { tarMember } from "../../helpers/e2e.ts";

const encode = (o: unknown) => new TextEncoder().encode(typeof o === "string" ? o : JSON.stringify(o));

describe("runAttempt, in-process", () => {
  test("a script that exits 2 is a finished experiment: acked, log and artifacts in storage", async () => {
    const events = new RunnerEvents();
    const phases: string[] = [];
    events.on("attempt.phase", (e) => phases.push(e.phase));
    const h = harness({ "main.py": "import sys\nopen('../modeldir/m.txt','w').write('m')\nsys.exit(2)\n" }, undefined, {
      events,
    });
    const delivery = new MemoryDelivery(encode(h.message));
    const outcome = await runAttempt(delivery, h.ctx, h.control);
    expect(outcome).toEqual({ kind: "finished", exitCode: 2, reason: "exited with code 2" });
    expect(delivery.settled).toEqual([{ how: "ack" }]);
    expect(phases).toEqual(["claim", "fetch", "environment", "run", "upload", "ack"]);
    expect(tarMember(join(h.experimentDir, "modeldir.tar"), "m.txt")).toBe("m");
    expect(tarMember(join(h.experimentDir, "output.tar"), "output")).toContain("experiment exited with code 2");
    expect(readdirSync(join(h.ctx.workingDir, "studio-runner", h.request.experiment.key))).toEqual([]);
    expect(h.ctx.log.lines).toContain(`info experiment ${h.request.experiment.key} finished: exited with code 2`);
  }, 120_000);

  test("a message that is not a request is rejected naming the field", async () => {
    const h = harness();
    const delivery = new MemoryDelivery(encode({ experiment: 5, config: {} }));
    const outcome = await runAttempt(delivery, h.ctx, h.control);
    expect(outcome.kind).toBe("rejected");
    expect(outcome.reason).toStartWith("bad request: experiment");
    expect(delivery.settled).toEqual([{ how: "reject", reason: outcome.reason }]);
  });

  test("an experiment past its lifetime is rejected before anything is laid out", async () => {
    const h = harness(undefined, (m) => {
      m.experiment.time_added = Date.now() / 1000 - 3600;
      m.config.experimentLifetime = "30m";
    });
    const delivery = new MemoryDelivery(encode(h.message));
    const outcome = await runAttempt(delivery, h.ctx, h.control);
    expect(outcome).toEqual({
      kind: "rejected",
      reason: `experiment ${h.request.experiment.key} expired before it could start (config.experimentLifetime)`,
    });
    expect(existsSync(join(h.ctx.workingDir, "studio-runner"))).toBe(false);
  });
});
