// The studioml experiment record through the compiled binary, for every database type: an S3
// database on a real S3 server, a local one, a studioml API server stand-in (http) and a
// Realtime Database stand-in (firebase). Waiting → running → finished with the time fields set,
// and "stopped" written into the record stops a running experiment within 15 s.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  jobPrinted,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";
import { startDatabases, type DatabaseHarness, type Databases } from "../helpers/status-databases.ts";

let dbs: Databases;
beforeAll(async () => {
  dbs = await startDatabases();
}, 60_000);
afterAll(async () => {
  await dbs?.stop();
});

function withDatabase(db: DatabaseHarness, sleepS: number) {
  return (m: Record<string, any>) => {
    m.experiment.pythonver = "3.11";
    m.config.env = { SLEEP_S: String(sleepS) };
    m.config.database = db.config();
  };
}

const SCRIPT =
  "import os, time\nprint('working', flush=True)\ntime.sleep(float(os.environ['SLEEP_S']))\n" +
  "print('done', flush=True)\n";

for (const type of ["s3", "local", "http", "firebase"])
  describe(`experiment record in a ${type} database, from the binary`, () => {
    const db = () => dbs.all.find((d) => d.type === type)!;

    test("waiting → running → finished, with time_started, time_last_checkpoint and time_finished", async () => {
      const sb = await makeSandbox(`status-${type}`, { cacheDir: SHARED_CACHE });
      const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, withDatabase(db(), 4));
      await db().seed(exp.key, { ...exp.message.experiment, status: "waiting" }); // as the client does
      enqueue(sb.queueRoot, `local_status_${type}`, exp.message);
      const runner = new RunnerProcess(
        sb,
        ["--limit-tasks", "1", "--file-storage-roots", [sb.storageRoot, ...db().fileRoots].join(",")],
        db().runnerEnv,
      );
      const seen: string[] = [];
      let running: Record<string, any> | undefined;
      while (runner.child.exitCode === null) {
        const rec = await db()
          .read(exp.key)
          .catch(() => undefined);
        if (rec && seen[seen.length - 1] !== rec.status) seen.push(rec.status);
        if (rec?.status === "running") running = rec;
        await Bun.sleep(200);
      }
      expect(await runner.exited).toBe(0);
      const final = (await db().read(exp.key))!;
      if (seen[seen.length - 1] !== final.status) seen.push(final.status);
      expect(seen).toEqual(["waiting", "running", "finished"]);
      expect(running!.time_started).toBeGreaterThan(exp.message.experiment.time_added);
      expect(final.time_finished).toBeGreaterThan(final.time_started);
      expect(final.time_last_checkpoint).toBeGreaterThanOrEqual(final.time_started);
      expect(final.key).toBe(exp.key);
      expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("done");
    }, 180_000);

    test('writing "stopped" into the record stops the running experiment within 15 s', async () => {
      const sb = await makeSandbox(`status-stop-${type}`, { cacheDir: SHARED_CACHE });
      const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, withDatabase(db(), 300));
      await db().seed(exp.key, { ...exp.message.experiment, status: "waiting" });
      enqueue(sb.queueRoot, `local_stop_${type}`, exp.message);
      const runner = new RunnerProcess(
        sb,
        ["--limit-tasks", "1", "--file-storage-roots", [sb.storageRoot, ...db().fileRoots].join(",")],
        db().runnerEnv,
      );
      await waitFor(
        "the record to say running",
        async () => (await db().read(exp.key))?.status === "running",
        120_000,
        200,
      );
      // Stop it once the script itself runs (it prints "working" first), not a fixed time after.
      await waitFor('the job\'s "working" in its live output', () => jobPrinted(sb.workDir, "working"));
      const rec = (await db().read(exp.key))!;
      expect(rec.status).toBe("running");
      await db().stop(exp.key);
      const stoppedAt = Date.now();
      expect(await runner.exited).toBe(0);
      const tookMs = Date.now() - stoppedAt;
      console.log(`runner done ${tookMs} ms after the record said "stopped"`);
      expect(tookMs).toBeLessThan(15_000);
      const log = tarMember(join(exp.experimentDir, "output.tar"));
      expect(log).toContain('the experiment record says "stopped"');
      expect(log).not.toContain("done");
      const final = (await db().read(exp.key))!;
      expect(final.status).toBe(db().keepsStopped ? "stopped" : "finished");
      expect(final.time_finished).toBeGreaterThan(0);
      expect(filesIn(join(sb.queueRoot, `local_stop_${type}`))).toEqual([]);
    }, 180_000);
  });
