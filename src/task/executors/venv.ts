// Executor "venv": the experiment's Python environment (built, or reused from the cache) and its
// script, started through the sandbox's launch as the job user; HOME and TMPDIR are the job's own.

import { join } from "node:path";
import { formatDuration } from "../../config/units.ts";
import { chooseInterpreter, findInterpreters } from "../../env/interpreters.ts";
import { requestRequirementSet } from "../../env/requirements.ts";
import { PermanentError } from "../../errors.ts";
import { LAUNCHER_ENV } from "../../exec/launcher-env.ts";
import { prepareJobDirs } from "../../sandbox/job-files.ts";
import { venvJobLaunch } from "../../sandbox/launch.ts";
import { need } from "../attempt-state.ts";
import { type Executor, limitNote } from "./executor.ts";

export const venvExecutor: Executor = {
  name: "venv",
  handles: () => true,
  async prepare(s) {
    const { ctx, request, attemptDir, key } = s;
    const log = need(s, "log");
    const dirs = need(s, "dirs");
    const jobEnv = need(s, "jobEnv");
    const script = request.experiment.filename;
    if (script === null) {
      throw new PermanentError("experiment.filename: null (container-only jobs) needs a _singularity image", {
        field: "experiment.filename",
      });
    }
    const interpreter = chooseInterpreter(request.experiment.pythonver, await findInterpreters());
    const wanted = requestRequirementSet(
      [
        { field: "experiment.pythonenv", lines: request.experiment.pythonenv },
        { field: "config.pip", lines: request.config.pip },
      ],
      ctx.venvs.options.allowPipUrls ?? false,
    );
    const venv = await ctx.venvs.acquire(
      {
        interpreter,
        requirements: wanted.lines,
        skipped: wanted.skipped,
        systemSitePackages: ctx.venvs.options.systemSitePackages ?? false,
      },
      (line) => log.write(line),
    );
    s.releaseEnvironment = venv.release;
    ctx.events?.emit("cache", { cache: "venv", hit: venv.reused });
    const how = venv.reused ? "reusing cached" : "built";
    ctx.log.info(`${how} python environment ${venv.hash} in ${formatDuration(venv.buildMs)}`, { experiment: key });

    const jobUser = ctx.sandbox?.jobUser ?? ctx.jobUser;
    const own = prepareJobDirs(attemptDir, dirs, jobUser);
    const env = {
      ...jobEnv.env,
      VIRTUAL_ENV: venv.dir,
      PATH: `${join(venv.dir, "bin")}:${jobEnv.env.PATH ?? ""}`,
      HOME: own.home,
      TMPDIR: own.tmp,
    };
    const argv =
      script === "-m"
        ? [venv.python, "-m", ...request.experiment.args]
        : [venv.python, script, ...request.experiment.args];
    const shown = argv
      .slice(1)
      .map((a) => JSON.stringify(a))
      .join(" ");
    log.note(`running ${shown}${limitNote(s, formatDuration)}`);
    const cwd = dirs.workspace ?? attemptDir;
    const launch = venvJobLaunch({
      command: argv,
      env,
      attemptDir,
      cwd,
      venvDir: venv.dir,
      sandbox: ctx.sandbox,
      jobUser,
      gpuUuids: s.reservation?.gpuUuids ?? [],
    });
    for (const n of launch.notes) log.note(n);
    const as = jobUser ? `as ${jobUser.label}` : "as the runner's own user";
    if (ctx.sandbox) {
      const network = ctx.sandbox.network === "loopback" ? "loopback only" : "shared with the host";
      log.note(`in a bubblewrap sandbox ${as}: only ${attemptDir} is writable; network ${network}`);
    } else log.note(`NOT sandboxed (--sandbox none), ${as}`);
    return { argv: launch.argv, env: LAUNCHER_ENV, cwd, payload: launch.payload };
  },
};
