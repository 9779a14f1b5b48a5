// `doctor`'s machine checks: NVML and each GPU card, the runner's directories (writable, or
// creatable, by the user doctor runs as), free disk against --min-free-disk, and the clock (not
// behind this binary's build, and kept in sync: signed requests to S3, SQS and Google fail when it
// drifts by minutes).

import { dlopen, FFIType, ptr } from "bun:ffi";
import { existsSync, mkdtempSync, rmdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { formatBytes } from "../config/units.ts";
import { describeInventory, gpuStartupProblem, isSchedulable, readInventory } from "../gpu/inventory.ts";
import { freeDiskBytes } from "../resources/machine.ts";
import { LIBC_NAMES } from "../storage/descriptor-offset.ts";
import { type CheckResult, fail, ok, warn } from "./check-result.ts";

export function gpuChecks(env: Record<string, string | undefined>, cpuOnly: boolean): CheckResult[] {
  const inventory = readInventory(env);
  const problem = gpuStartupProblem(inventory, cpuOnly, env);
  if (problem)
    return [
      fail(
        "gpus",
        problem,
        "load the NVIDIA driver (nvidia-smi must list the cards), fix CUDA_VISIBLE_DEVICES, or --cpu-only",
      ),
    ];
  if (cpuOnly) return [ok("gpus", `--cpu-only: ${describeInventory(inventory)}`)];
  if (inventory.nvml !== "ok") return [ok("gpus", `no NVML (${inventory.nvml}): a CPU machine`)];
  const lines = [ok("gpus", `NVML ${inventory.libraryPath}: ${describeInventory(inventory)}`)];
  for (const d of inventory.devices) {
    const text = `${d.name}, ${formatBytes(d.memTotalBytes)} (${formatBytes(d.memFreeBytes)} free), ${d.uuid}, ${d.pciBusId}`;
    if (isSchedulable(d)) lines.push(ok(`gpu ${d.index}`, text));
    else
      lines.push(
        warn(
          `gpu ${d.index}`,
          `${text}: left out (${d.migEnabled ? "MIG mode" : `${d.eccUncorrected} uncorrected ECC errors`})`,
          d.migEnabled ? "disable MIG (nvidia-smi -mig 0) to schedule the card" : "have the card serviced",
        ),
      );
  }
  // Cards left out are on their own lines above; the other problems (unmatched visible devices …) here.
  const perCard = new Set(inventory.devices.filter((d) => !isSchedulable(d)).map((d) => d.uuid));
  for (const p of inventory.problems) if (![...perCard].some((u) => p.includes(u))) lines.push(warn("gpus", p));
  return lines;
}

/** The directory itself, or its nearest ancestor that exists. */
function existingAncestor(dir: string): string {
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  return at;
}

/** Whether this user can make an entry in `dir` (a probe directory, removed at once); the errno when not. */
function writeProblem(dir: string): string | undefined {
  try {
    rmdirSync(mkdtempSync(join(dir, ".studio-runner-doctor-")));
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code ?? e.message;
  }
}

const whoAmI = () => `uid ${process.geteuid?.() ?? "?"}`;

export function dirCheck(label: string, flag: string, dir: string): CheckResult {
  const name = `dir ${label}`;
  const fix = `make it writable by the runner's user (chown), or choose another with ${flag}`;
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) return fail(name, `${dir} is not a directory`, fix);
    const problem = writeProblem(dir);
    return problem
      ? fail(name, `${dir} is not writable by ${whoAmI()} (${problem})`, fix)
      : ok(name, `${dir} writable`);
  }
  const parent = existingAncestor(dir);
  const problem = statSync(parent).isDirectory() ? writeProblem(parent) : "ENOTDIR";
  return problem
    ? fail(name, `${dir} does not exist and cannot be created in ${parent} by ${whoAmI()} (${problem})`, fix)
    : ok(name, `${dir} (created on first run, in ${parent})`);
}

export function diskCheck(label: string, dir: string, floorBytes: number): CheckResult {
  const name = `disk ${label}`;
  const at = existingAncestor(dir);
  const free = freeDiskBytes(at);
  const text = `${formatBytes(free)} free at ${at}`;
  if (free <= floorBytes)
    return fail(
      name,
      `${text}, not above --min-free-disk ${formatBytes(floorBytes)}: no work would be taken`,
      "free disk space, or lower --min-free-disk",
    );
  return ok(name, `${text} (--min-free-disk ${formatBytes(floorBytes)})`);
}

/** adjtimex(2)'s answer when the kernel's clock is not synchronised (TIME_ERROR). */
const TIME_ERROR = 5;
/** struct timex is 208 bytes on 64-bit Linux; room to spare. */
const TIMEX_BYTES = 512;

/** The kernel's clock state from adjtimex(2) with no change asked; undefined where it cannot be read. */
function kernelClockState(): number | undefined {
  if (process.platform !== "linux") return undefined;
  for (const name of LIBC_NAMES) {
    try {
      const { symbols, close } = dlopen(name, { adjtimex: { args: [FFIType.ptr], returns: FFIType.i32 } });
      const timex = new Uint8Array(TIMEX_BYTES);
      const state = symbols.adjtimex(ptr(timex));
      close();
      return state >= 0 ? state : undefined;
    } catch {
      // Not this libc.
    }
  }
  return undefined;
}

export function clockCheck(buildDate: string): CheckResult {
  const now = new Date();
  const built = Date.parse(buildDate);
  if (Number.isFinite(built) && now.getTime() < built)
    return fail(
      "clock",
      `${now.toISOString()} is before this binary's build date ${buildDate}`,
      "set the clock (timedatectl set-ntp true, or chrony/ntpd); signed requests fail on a wrong clock",
    );
  const state = kernelClockState();
  if (state === TIME_ERROR)
    return warn(
      "clock",
      `${now.toISOString()}, not synchronised (adjtimex: TIME_ERROR)`,
      "run NTP (timedatectl set-ntp true, chrony or ntpd); S3, SQS and Google refuse requests signed " +
        "more than a few minutes off",
    );
  return ok("clock", `${now.toISOString()}${state === undefined ? "" : ", synchronised (adjtimex)"}`);
}
