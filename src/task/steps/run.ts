// Step "run": starts the job as the executor said (its output into the log, paused while the log
// is congested), records its pid with the attempt's owner record, and waits for it to exit.

import { hostname } from "node:os";
import { JobProcess } from "../../exec/process-tree.ts";
import { need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";
import { recordOwner } from "../orphans.ts";

export const runStep: AttemptStep = {
  name: "run",
  async prepare(s) {
    const { ctx, key } = s;
    const launch = need(s, "launch");
    const log = need(s, "log");
    const spawnedMs = performance.now();
    const job = new JobProcess(launch.argv, {
      cwd: launch.cwd,
      env: launch.env,
      onLine: (line) => log.write(line),
      sandboxed: !!ctx.sandbox,
      sink: log,
      jobEnvPayload: launch.payload,
    });
    s.job.attach(job);
    await recordOwner(s.attemptDir, {
      host: hostname(),
      runnerPid: process.pid,
      runnerId: ctx.runnerId,
      jobPid: job.pid,
    });
    s.exit = await job.exited;
    const ranMs = performance.now() - spawnedMs;
    log.note(`the script ran ${(ranMs / 1000).toFixed(3)} s (start to exit)`);
    ctx.log.info(`experiment ${key}: the script ran ${(ranMs / 1000).toFixed(3)} s`, {
      experiment: key,
      scriptMs: Math.round(ranMs),
    });
  },
};
