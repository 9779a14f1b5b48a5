// Executor "container": the experiment runs in its Singularity/Apptainer image. The tool gets a
// fixed environment; the job's reaches the container through an env file only.

import { join } from "node:path";
import { formatDuration } from "../../config/units.ts";
import {
  CONTAINER_IMAGE_LABEL,
  checkContainerRequest,
  ContainerToolMissingError,
  containerArgv,
  containerEnv,
  containerScript,
  findContainerTool,
  launcherEnv,
  writeEnvFile,
} from "../../container/apptainer.ts";
import { need } from "../attempt-state.ts";
import { type Executor, limitNote } from "./executor.ts";

export const containerExecutor: Executor = {
  name: "container",
  handles: (s) => s.image !== undefined,
  async prepare(s) {
    const { ctx, request, attemptDir, key } = s;
    const image = need(s, "image");
    const log = need(s, "log");
    const dirs = need(s, "dirs");
    const jobEnv = need(s, "jobEnv");
    const tool = findContainerTool(ctx.runnerEnv);
    if (!tool) throw new ContainerToolMissingError();
    const envFile = join(attemptDir, ".container-env");
    writeEnvFile(envFile, containerEnv(jobEnv.env, ctx.runnerEnv));
    const cwd = dirs.workspace ?? attemptDir;
    checkContainerRequest({
      image,
      imageField: `experiment.artifacts.${CONTAINER_IMAGE_LABEL}.qualified`,
      filename: request.experiment.filename,
      bindDirs: [attemptDir],
      key,
    });
    const gpus = (s.reservation?.gpuUuids ?? []).length > 0;
    const argv = containerArgv({
      tool,
      image,
      binds: [attemptDir],
      pwd: cwd,
      envFile,
      gpus,
      command: containerScript(request.experiment.filename, request.experiment.args),
    });
    if (request.experiment.pythonenv.length || request.config.pip.length)
      log.note("note: container jobs use the image's own Python packages; experiment.pythonenv is not installed");
    const shown = argv
      .slice(argv.indexOf(image) + 1)
      .map((a) => JSON.stringify(a))
      .join(" ");
    log.note(
      `running in ${image} with ${tool}${gpus ? " (--nv)" : ""}: ` +
        `${shown || "the image's runscript"}${limitNote(s, formatDuration)}`,
    );
    return { argv, env: launcherEnv(ctx.runnerEnv), cwd };
  },
};
