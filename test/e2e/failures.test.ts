// Requests that cannot succeed end where protocol.md says, with the reason visible: a malformed
// message and a tar with "../" members go to the failed place; a script that exits 1 is a
// finished experiment (acked) whose log says so; a missing workspace fails with the reason in the log;
// a directory that cannot be laid out (disk full, a file in the way) requeues, then keeps the request.

import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tar from "tar-stream";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../helpers/e2e.ts";

let sb: Sandbox;
beforeAll(async () => {
  sb = await makeSandbox("failures", { cacheDir: SHARED_CACHE });
});

const failedReason = (queue: string, id: string) =>
  JSON.parse(readFileSync(join(sb.queueRoot, ".failed", queue, `${id}.reason.json`), "utf8"));

async function evilTar(path: string) {
  const pack = tar.pack();
  pack.entry({ name: "main.py" }, "print('should never run')\n");
  pack.entry({ name: "../escaped.txt" }, "gotcha\n");
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  writeFileSync(path, Buffer.concat(chunks));
}

describe("requests that cannot succeed", () => {
  test("malformed message, '../' tar, exit 1 and a missing workspace each end where the protocol says", async () => {
    const q = "local_failures";
    // 1. Malformed: a size that is not a size.
    const bad = simpleExperiment(sb.storageRoot, { "main.py": "print('hi')\n" }, (m) => {
      m.experiment.resources_needed.ram = "lots";
    });
    const badId = enqueue(sb.queueRoot, q, bad.message);
    const notJsonId = enqueue(sb.queueRoot, q, "{this is not json");

    // 2. Workspace tar with a ../ member.
    const evil = simpleExperiment(sb.storageRoot, { "main.py": "print('x')\n" });
    const evilWs = evil.message.experiment.artifacts.workspace;
    await evilTar(evilWs.qualified.replace(/^file:\/+/, "/"));
    const evilId = enqueue(sb.queueRoot, q, evil.message);

    // 3. A script that fails.
    const failing = simpleExperiment(sb.storageRoot, {
      "main.py": "print('about to fail', flush=True)\nraise SystemExit(1)\n",
    });
    const failingId = enqueue(sb.queueRoot, q, failing.message);

    // 4. The workspace object is missing.
    const missing = simpleExperiment(sb.storageRoot, { "main.py": "print('x')\n" });
    rmSync(missing.message.experiment.artifacts.workspace.qualified.replace(/^file:\/+/, "/"));
    const missingId = enqueue(sb.queueRoot, q, missing.message);

    const runner = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);
    expect(await runner.exited).toBe(0);

    // Malformed: kept in the failed place, the reason names the field and value.
    expect(failedReason(q, badId).summary).toContain('experiment.resources_needed.ram: "lots" is not a size');
    expect(readFileSync(join(sb.queueRoot, ".failed", q, badId), "utf8")).toBe(JSON.stringify(bad.message));
    expect(failedReason(q, notJsonId).summary).toContain("is not valid JSON");

    // ../ member: refused; nothing escaped; log uploaded with the reason; message kept.
    expect(failedReason(q, evilId).summary).toContain('"../escaped.txt" escapes the artifact directory');
    expect(tarMember(join(evil.experimentDir, "output.tar"))).toContain("escapes the artifact directory");
    const escaped = Bun.spawnSync(["find", sb.dir, "-name", "escaped.txt"]).stdout.toString();
    expect(escaped).toBe("");
    expect(tarMember(join(evil.experimentDir, "output.tar"))).not.toContain("should never run");

    // exit 1: a finished experiment (acked, not failed), the log says why.
    const failLog = tarMember(join(failing.experimentDir, "output.tar"));
    expect(failLog).toContain("about to fail");
    expect(failLog).toContain("exited with code 1");
    expect(filesIn(join(sb.queueRoot, ".failed", q))).not.toContain(failingId);

    // Missing immutable workspace: failed, with the reason in the uploaded log.
    expect(failedReason(q, missingId).summary).toContain('immutable artifact "workspace" is missing');
    expect(tarMember(join(missing.experimentDir, "output.tar"))).toContain('immutable artifact "workspace" is missing');

    // Nothing is left in the queue or in flight.
    expect(filesIn(join(sb.queueRoot, q))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".inflight", q))).toEqual([]);
  }, 300_000);

  test("the experiment's directory cannot be made: requeued, then kept in the failed place with the reason; the runner goes on", async () => {
    const q = "local_layout";
    const blocked = simpleExperiment(sb.storageRoot, { "main.py": "print('never')\n" });
    // A file where the experiment's directory must go: every mkdir below it fails.
    mkdirSync(join(sb.workDir, "studio-runner"), { recursive: true });
    writeFileSync(join(sb.workDir, "studio-runner", blocked.message.experiment.key), "in the way\n");
    const blockedId = enqueue(sb.queueRoot, q, blocked.message);
    const fine = simpleExperiment(sb.storageRoot, { "main.py": "print('fine', flush=True)\n" });
    enqueue(sb.queueRoot, q, fine.message);

    const runner = new RunnerProcess(sb, ["--limit-idle-duration", "3s", "--max-deliveries", "2"]);
    expect(await runner.exited).toBe(0);
    const reason = failedReason(q, blockedId);
    expect(JSON.stringify(reason)).toContain("lay out the experiment's directory");
    expect(runner.stderr + runner.stdout).toContain("lay out the experiment's directory); requeued");
    expect(runner.stderr + runner.stdout).not.toContain("attempt crashed");
    expect(tarMember(join(fine.experimentDir, "output.tar"))).toContain("fine");
    expect(filesIn(join(sb.queueRoot, q))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".inflight", q))).toEqual([]);
  }, 120_000);
});
