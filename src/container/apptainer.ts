// The Apptainer/Singularity executor for requests with a `_singularity` artifact: finds the tool,
// writes the job's environment to a private env file, and builds the `exec` (or `run`) command
// line that binds the experiment's directory in and passes the allocated GPUs with --nv.
//
// The tool itself is a launcher run by the runner: it gets a fixed minimal environment
// (launcherEnv: no request variable, so no APPTAINER_BIND, APPTAINERENV_*, LD_PRELOAD … from
// config.env; those reach only the container, through the env file with --containall), and no
// request string can become one of its options (checkContainerRequest, and `--` before the image).

import { accessSync, constants, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { PermanentError, RequestError } from "../errors.ts";

/** The fixed PATH of launchers (the runner's own tools live in the system directories). */
export const LAUNCHER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Image references the tool resolves itself; anything else is an object in storage. */
const REGISTRY_REFERENCE = /^(docker|docker-archive|oras|library|shub):\/\//i;

/** The artifact that names a container image (protocol.md §5). */
export const CONTAINER_IMAGE_LABEL = "_singularity";

export function isRegistryReference(qualified: string): boolean {
  return REGISTRY_REFERENCE.test(qualified);
}

/** apptainer, else singularity, from PATH; undefined when neither is installed. */
export function findContainerTool(env: Record<string, string | undefined>): string | undefined {
  for (const name of ["apptainer", "singularity"]) {
    for (const dir of (env.PATH ?? "").split(delimiter).filter(Boolean)) {
      const candidate = join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

export class ContainerToolMissingError extends PermanentError {
  constructor() {
    super("the request names a _singularity image, but neither apptainer nor singularity is installed on this runner", {
      field: "experiment.artifacts._singularity",
    });
  }
}

/**
 * The environment the container tool itself runs with: PATH and locale, plus the operator's own
 * APPTAINER_* / SINGULARITY_* settings from the runner's environment (cache and tmp dirs, the
 * site's binds: the operator is trusted). Nothing of the request: config.env reaches the
 * container only through the env file. `runnerEnv` must be the runner's process environment,
 * never the job's.
 */
export function launcherEnv(runnerEnv: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = { PATH: LAUNCHER_PATH, LANG: "C.UTF-8" };
  for (const [name, value] of Object.entries(runnerEnv)) {
    if (value !== undefined && /^(APPTAINER|SINGULARITY)_[A-Z0-9_]+$/.test(name)) env[name] = value;
  }
  return env;
}

/**
 * Refuses request strings that would reach the tool's own command line as something else than
 * data (attack class 3): an image reference or script name starting with `-` (read as an
 * option), and a bind path holding `:` or `,` (the --bind syntax's separators; the path carries
 * the experiment key). Throws a PermanentError naming the field and value.
 */
export function checkContainerRequest(c: {
  image: string;
  imageField: string;
  filename: string | null;
  bindDirs: string[];
  key: string;
}): void {
  if (c.image.startsWith("-") || /[\0\n]/.test(c.image)) {
    throw new RequestError(
      c.imageField,
      c.image,
      "is not an image reference (it would be read as an option of the container tool)",
    );
  }
  if (c.filename !== null && c.filename !== "-m" && c.filename.startsWith("-")) {
    throw new RequestError(
      "experiment.filename",
      c.filename,
      'starts with "-": name a script (only "-m" is accepted, to run a module)',
    );
  }
  for (const dir of c.bindDirs) {
    if (!/[:,]/.test(dir)) continue;
    if (/[:,]/.test(c.key)) {
      throw new RequestError(
        "experiment.key",
        c.key,
        'holds ":" or ",", which a container job\'s key cannot have ' +
          "(its directory is bound by path, and these separate bind specifications)",
      );
    }
    throw new PermanentError(
      `the runner's working directory ${JSON.stringify(dir)} holds ":" or ",": container jobs cannot run here ` +
        "(operator: choose another --working-dir)",
    );
  }
}

/** One value in the env-file syntax the tool sources: single-quoted, quotes escaped. */
const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

/** Writes the job's variables (mode 0600: they may hold the request's own secrets). */
export function writeEnvFile(path: string, env: Record<string, string>): void {
  const lines = Object.entries(env)
    .filter(([name]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${name}=${quote(value)}`);
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/**
 * The variables a container job gets: the job environment without what only passed through from
 * the runner's own environment (its PATH, HOME, … belong to the host, not the image).
 */
export function containerEnv(
  jobEnv: Record<string, string>,
  runnerEnv: Record<string, string | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(jobEnv)) {
    if (runnerEnv[name] === value && !/^(CUDA_|NVIDIA_|STUDIOML_)/.test(name)) continue;
    if (name === "VIRTUAL_ENV" || name === "PATH") continue;
    out[name] = value;
  }
  return out;
}

export type ContainerCommand = {
  tool: string;
  /** A local image file (SIF) or a registry reference the tool pulls. */
  image: string;
  /** Directories bound at the same path inside. */
  binds: string[];
  pwd: string;
  envFile: string;
  /** GPUs were allocated: bind the driver in; CUDA_VISIBLE_DEVICES in the env file picks the cards. */
  gpus: boolean;
  /** The script and its arguments, or undefined to run the image's own runscript. */
  command?: string[];
};

/**
 * The tool's command line: `--containall` (clean environment, private /tmp, $HOME, IPC and PID
 * namespaces; nothing of the host bound but the site's own bind paths), `--no-privs` (a runner
 * run as root gives the container no capabilities), only the given directories bound, the env
 * file, `--nv` only when GPUs were allocated (CUDA_VISIBLE_DEVICES in the env file picks them),
 * then `--` so the image can never be read as an option, the image and the command.
 */
export function containerArgv(c: ContainerCommand): string[] {
  const argv = [
    c.tool,
    c.command ? "exec" : "run",
    "--containall",
    "--no-privs",
    "--env-file",
    c.envFile,
    "--pwd",
    c.pwd,
  ];
  for (const dir of c.binds) argv.push("--bind", `${dir}:${dir}`);
  if (c.gpus) argv.push("--nv");
  argv.push("--", c.image);
  if (c.command) argv.push(...c.command);
  return argv;
}

/** What runs inside for a studioml experiment: `python3 script args`, `python3 -m …`, or the runscript. */
export function containerScript(filename: string | null, args: string[]): string[] | undefined {
  if (filename === null) return undefined;
  return filename === "-m" ? ["python3", "-m", ...args] : ["python3", filename, ...args];
}
