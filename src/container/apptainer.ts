// The Apptainer/Singularity executor for requests with a `_singularity` artifact: finds the tool,
// writes the job's environment to a private env file, and builds the `exec` (or `run`) command
// line that binds the experiment's directory in and passes the allocated GPUs with --nv.

import { accessSync, constants, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { PermanentError } from "../errors.ts";

/** Image references the tool resolves itself; anything else is an object in storage. */
const REGISTRY_REFERENCE = /^(docker|docker-archive|oras|library|shub):\/\//i;

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
    super("the request names a _singularity image, but neither apptainer nor singularity is installed on this runner", { field: "experiment.artifacts._singularity" });
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
export function containerEnv(jobEnv: Record<string, string>, runnerEnv: Record<string, string | undefined>): Record<string, string> {
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

export function containerArgv(c: ContainerCommand): string[] {
  const argv = [c.tool, c.command ? "exec" : "run", "--cleanenv", "--contain", "--env-file", c.envFile, "--pwd", c.pwd];
  for (const dir of c.binds) argv.push("--bind", `${dir}:${dir}`);
  if (c.gpus) argv.push("--nv");
  argv.push(c.image);
  if (c.command) argv.push(...c.command);
  return argv;
}

/** What runs inside for a studioml experiment: `python3 script args`, `python3 -m …`, or the runscript. */
export function containerScript(filename: string | null, args: string[]): string[] | undefined {
  if (filename === null) return undefined;
  return filename === "-m" ? ["python3", "-m", ...args] : ["python3", filename, ...args];
}
