// Step "layout": the attempt's directory (one folder per artifact label), its artifact mapping,
// the job's environment and the owner record; cleanup removes it all (unless --debug keeps it).

import { mkdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { asFault } from "../../errors.ts";
import { writeRunnerFile } from "../../fs/safe-open.ts";
import type { AttemptStep } from "../attempt-step.ts";
import { buildJobEnv } from "../job-env.ts";
import { forgetOwner, recordOwner } from "../orphans.ts";

export const layoutStep: AttemptStep = {
  name: "layout",
  async prepare(s) {
    const { request, ctx, attemptDir, reservation } = s;
    try {
      const dirs: Record<string, string> = {};
      for (const label of Object.keys(request.experiment.artifacts)) dirs[label] = join(attemptDir, label);
      dirs.output ??= join(attemptDir, "output");
      await mkdir(dirs.output, { recursive: true });
      const mappingFile = join(attemptDir, "artifact-mapping.json");
      // Readable, not writable, by the job (whatever the umask), never written through anything planted at its name.
      await writeRunnerFile(attemptDir, "artifact-mapping.json", JSON.stringify(dirs, null, 2), 0o444, {
        exactMode: true,
      });
      s.jobEnv = buildJobEnv({
        runnerEnv: ctx.runnerEnv,
        request,
        attemptDir,
        mappingFile,
        cpus: reservation?.needs.cpus ?? request.experiment.resources.cpus,
        gpuIds: reservation?.gpuUuids ?? [],
        allowEnvSecrets: ctx.allowEnvSecrets,
      });
      await recordOwner(attemptDir, { host: hostname(), runnerPid: process.pid, runnerId: ctx.runnerId });
      s.dirs = dirs;
    } catch (err) {
      // a fault here (disk full, unwritable working dir) settles the delivery like any other
      throw asFault(err).with({ phase: "lay out the experiment's directory" });
    }
  },
  async cleanup(s, ending) {
    const remove = async () => {
      await forgetOwner(s.attemptDir).catch(() => undefined);
      if (!s.ctx.keepDirectories) await rm(s.attemptDir, { recursive: true, force: true }).catch(() => undefined);
    };
    // A finished experiment is acked first (nothing of it is needed any more; its owner record
    // lets a restarted runner remove the directory should this one stop in between). Any other
    // ending removes it before the request can be taken again (a full disk is a common cause of faults).
    if (ending.kind === "finished") s.afterSettle.push(remove);
    else await remove();
  },
};
