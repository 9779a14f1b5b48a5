// `doctor`'s isolation checks: cgroup limits (which version, and whether this user can create and
// remove a job's group), the bubblewrap sandbox (found, and a job launched in it exactly as the
// runner would), and apptainer/singularity for container experiments.

import { readFileSync } from "node:fs";
import { findContainerTool } from "../container/apptainer.ts";
import { runCommand } from "../exec/command.ts";
import { LAUNCHER_ENV } from "../exec/launcher-env.ts";
import { CgroupError, createJobCgroup, detectCgroups } from "../exec/cgroup.ts";
import { requireBwrap, SandboxUnavailableError, type SandboxNetwork } from "../sandbox/bwrap.ts";
import { JobUserError, resolveJobUser } from "../sandbox/job-user.ts";
import { type CheckResult, fail, ok, warn, within } from "./check-result.ts";

const TOOL_TIMEOUT_MS = 10_000;

export async function cgroupCheck(enabled: boolean): Promise<CheckResult> {
  const name = "cgroups";
  if (!enabled) return warn(name, "--cgroup-limits=false: experiments' RAM and CPU are not limited");
  const support = detectCgroups();
  if (support.version === "none")
    return warn(
      name,
      `experiments' RAM and CPU limits cannot be enforced: ${support.reason}`,
      "run the runner as a systemd service with Delegate=yes (the shipped unit does), or in a container " +
        "with a writable cgroup v2 hierarchy; --cgroup-limits=false silences this",
    );
  try {
    const group = createJobCgroup(support, `doctor-${process.pid}`, { memoryBytes: 64 * 1024 * 1024, cpus: 1 });
    await group.destroy();
  } catch (err) {
    if (!(err instanceof CgroupError)) throw err;
    return fail(
      name,
      `cgroup v${support.version} found, but a job's group cannot be made: ${err.message}`,
      "delegate the runner's cgroup to its user (systemd: Delegate=yes), or --cgroup-limits=false",
    );
  }
  return ok(name, `v${support.version}; a job's group was created and removed${noteText(support.notes)}`);
}

const noteText = (notes: string[]) => (notes.length ? ` (${notes.join("; ")})` : "");

/** The kernel's user-namespace switches, for the detail of a failed sandbox probe. */
function userNamespaceSettings(): string {
  const out: string[] = [];
  for (const f of [
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
  ]) {
    try {
      out.push(`${f.replace("/proc/sys/", "").replaceAll("/", ".")}=${readFileSync(f, "utf8").trim()}`);
    } catch {
      // not on this kernel
    }
  }
  return out.join(", ");
}

export async function sandboxCheck(settings: {
  sandbox: string;
  "job-user"?: string;
  "sandbox-network": SandboxNetwork;
}): Promise<CheckResult> {
  const name = "sandbox";
  if (settings.sandbox === "none")
    return warn(
      name,
      "--sandbox none: experiments are not isolated from each other or from the runner",
      "install bubblewrap and drop --sandbox none",
    );
  try {
    const jobUser = resolveJobUser(settings["job-user"]);
    const path = await requireBwrap(process.env, { jobUser, network: settings["sandbox-network"] });
    return ok(
      name,
      `bubblewrap ${path}: a job ran in it (user namespace, network ${settings["sandbox-network"]}` +
        `${jobUser ? `, as ${jobUser.label}` : ""})`,
    );
  } catch (err) {
    if (err instanceof JobUserError) return fail(name, err.message, "give --job-user an existing user, or uid:gid");
    if (!(err instanceof SandboxUnavailableError)) throw err;
    const switches = userNamespaceSettings();
    return fail(
      name,
      `${err.reason}${switches ? ` [${switches}]` : ""}${settings.sandbox === "auto" ? "; --sandbox auto would run experiments unisolated" : ""}`,
      "install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces " +
        "(sysctl kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0), " +
        "or accept unisolated experiments with --sandbox none",
    );
  }
}

export async function containerCheck(env: Record<string, string | undefined>): Promise<CheckResult> {
  const name = "apptainer";
  const tool = findContainerTool(env);
  if (!tool)
    return warn(
      name,
      "neither apptainer nor singularity is on the PATH: requests with a _singularity image are refused",
      "install apptainer to serve container experiments",
    );
  try {
    const r = await within(runCommand([tool, "--version"], { env: LAUNCHER_ENV }), TOOL_TIMEOUT_MS, tool);
    return r.code === 0
      ? ok(name, `${r.output.trim()} (${tool})`)
      : fail(name, `${tool} --version failed: ${r.output.trim().slice(-300)}`, "reinstall apptainer");
  } catch (err) {
    return fail(name, `${tool}: ${(err as Error).message}`, "reinstall apptainer");
  }
}
