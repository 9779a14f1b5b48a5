// Step "cgroup": the job's cgroup, where the runner may make one — for every job, also one that
// states no RAM or CPUs: its process-count limit holds a fork bomb, and removing it at the end
// kills whatever the job left running (a double-forked `setsid` child included). Never fails the
// attempt. After the exit it tells the peak memory and whether the kernel killed the job for it.

import { formatBytes } from "../../config/units.ts";
import { errorMessage } from "../../errors.ts";
import { createJobCgroup, defaultJobPidsMax, type JobCgroup, jobGroupName } from "../../exec/cgroup.ts";
import { type AttemptState, need } from "../attempt-state.ts";
import type { AttemptStep } from "../attempt-step.ts";

let cgroupSerial = 0;

/** The RAM and CPUs the job may use: its reservation's, else what the request states (RAM only). */
export function jobLimits(s: AttemptState): { ramBytes: number; cpus: number } {
  return {
    ramBytes: s.reservation?.needs.ramBytes ?? s.request.experiment.resources.ramBytes,
    cpus: s.reservation?.needs.cpus ?? 0,
  };
}

export function cgroupStep(): AttemptStep {
  const groups = new WeakMap<AttemptState, JobCgroup>();
  return {
    name: "cgroup",
    async prepare(s) {
      const support = s.ctx.cgroups;
      const launch = need(s, "launch");
      const log = need(s, "log");
      if (!support || support.version === "none") return;
      const limits = jobLimits(s);
      try {
        const group = createJobCgroup(support, jobGroupName(++cgroupSerial), {
          memoryBytes: limits.ramBytes > 0 ? limits.ramBytes : undefined,
          cpus: limits.cpus > 0 ? limits.cpus : undefined,
          pidsMax: defaultJobPidsMax(limits.cpus),
        });
        groups.set(s, group);
        launch.argv = group.wrapCommand(launch.argv);
      } catch (err) {
        const why = errorMessage(err);
        log.note(
          "warning: the experiment runs without its cgroup " +
            `(RAM/CPU/process limits, cleanup of leftover processes): ${why}`,
        );
        s.ctx.log.warn(`experiment ${s.key} runs without its cgroup (RAM/CPU/process limits): ${why}`);
      }
    },
    async afterExit(s) {
      const group = groups.get(s);
      const exit = s.exit;
      if (!group || !exit) return;
      await group.destroy();
      const log = need(s, "log");
      const peak = group.peakMemoryBytes();
      if (peak !== undefined) log.note(`peak memory ${formatBytes(peak)}`);
      const { ramBytes } = jobLimits(s);
      if (group.oomKilled() && ramBytes > 0) {
        log.note(
          `the experiment used more than its memory limit of ${formatBytes(ramBytes)} and was killed by the kernel`,
        );
        exit.memoryLimitBytes = ramBytes;
      }
    },
    async cleanup(s) {
      await groups.get(s)?.destroy();
    },
  };
}
