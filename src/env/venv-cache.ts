// Python virtual environments cached by a hash of (interpreter, requirements, options): built
// once when several jobs want the same one (in this process and across processes), never
// reused half-built, and evicted by age and total size.

import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { formatBytes, formatDuration } from "../config/units.ts";
import { PermanentError, RetryableError } from "../errors.ts";
import { runCommand } from "../exec/command.ts";
import { isProcessAlive } from "../exec/pid.ts";
import type { Interpreter } from "./interpreters.ts";
import { failedRequirementFromPipOutput, matchRequirementLine, pipErrorLines } from "./requirements.ts";

export type VenvSpec = { interpreter: Interpreter; requirements: string[]; systemSitePackages: boolean };
export type FailedRequirement = { requirement: string; message: string };
export type Venv = {
  hash: string;
  dir: string;
  python: string;
  reused: boolean;
  failed: FailedRequirement[];
  buildMs: number;
  release(): void;
};

type Marker = {
  hash: string;
  interpreter: string;
  requirements: string[];
  failed: FailedRequirement[];
  builtAt: string;
  buildMs: number;
  sizeBytes: number;
};

export type VenvCacheOptions = {
  root: string;
  maxBytes: number;
  maxAgeMs: number;
  strict: boolean;
  /** Build venvs that see the interpreter's own packages (GPU hosts with torch/TF preinstalled). */
  systemSitePackages?: boolean;
  /** Environment for venv/pip (the runner's own, secrets removed): pip's configuration lives here. */
  env: Record<string, string | undefined>;
  log?: (message: string) => void;
};

const MARKER = ".studio-runner-venv.json";

export function venvHash(spec: VenvSpec, strict: boolean): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(JSON.stringify([spec.interpreter.path, spec.interpreter.versionText, spec.systemSitePackages, strict, [...spec.requirements].sort()]));
  return h.digest("hex").slice(0, 24);
}

export class VenvCache {
  private readonly building = new Map<string, Promise<{ marker: Marker; built: boolean }>>();
  private readonly inUse = new Map<string, number>();

  constructor(readonly options: VenvCacheOptions) {}

  /** A ready venv for the spec; `out` receives lines meant for the experiment's log. */
  async acquire(spec: VenvSpec, out: (line: string) => void): Promise<Venv> {
    const hash = venvHash(spec, this.options.strict);
    const dir = join(this.options.root, hash);
    const started = performance.now();
    this.inUse.set(hash, (this.inUse.get(hash) ?? 0) + 1);
    let release = () => {
      const n = (this.inUse.get(hash) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(hash);
      else this.inUse.set(hash, n);
      release = () => undefined;
    };
    try {
      let marker = await this.readMarker(dir);
      let reused = true;
      if (!marker) {
        const pending = this.building.get(hash);
        if (pending) {
          out(`[studio-runner] waiting for python environment ${hash}, which another experiment is building`);
          marker = (await pending).marker;
        } else {
          const build = this.buildLocked(spec, hash, dir, out).finally(() => this.building.delete(hash));
          this.building.set(hash, build);
          const result = await build;
          marker = result.marker;
          reused = !result.built;
        }
      }
      const now = new Date();
      await utimes(join(dir, MARKER), now, now).catch(() => undefined);
      if (reused) {
        out(`[studio-runner] reusing cached python environment ${hash} (python ${spec.interpreter.versionText}, ${spec.requirements.length} requirements, built ${marker.builtAt})`);
        out(`[studio-runner] python environment ${hash} reused in ${formatDuration(performance.now() - started)}`);
        this.options.log?.(`reusing cached python environment ${hash}`);
      }
      if (marker.failed.length) {
        out(`[studio-runner] ${marker.failed.length} requirement(s) could not be installed and were left out:`);
        for (const f of marker.failed) out(`[studio-runner]   ${f.requirement}: ${f.message.split("\n").join(" | ")}`);
      }
      return {
        hash,
        dir,
        python: join(dir, "bin", "python"),
        reused,
        failed: marker.failed,
        buildMs: performance.now() - started,
        release: () => release(),
      };
    } catch (err) {
      release();
      throw err;
    }
  }

  private async readMarker(dir: string): Promise<Marker | undefined> {
    try {
      const marker = JSON.parse(await readFile(join(dir, MARKER), "utf8")) as Marker;
      return existsSync(join(dir, "bin", "python")) ? marker : undefined;
    } catch {
      return undefined;
    }
  }

  /** Build under a cross-process lock; whoever gets the lock second finds the venv ready. */
  private async buildLocked(spec: VenvSpec, hash: string, dir: string, out: (line: string) => void): Promise<{ marker: Marker; built: boolean }> {
    const lock = `${dir}.lock`;
    await mkdir(this.options.root, { recursive: true });
    let announced = false;
    for (;;) {
      try {
        await mkdir(lock);
        await writeFile(join(lock, "owner"), `${hostname()} ${process.pid}`);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new RetryableError(`cannot lock ${lock}: ${(err as Error).message}`);
        if (await this.lockIsStale(lock)) {
          await rm(lock, { recursive: true, force: true });
          continue;
        }
        if (!announced) out(`[studio-runner] waiting for python environment ${hash}, which another runner is building`);
        announced = true;
        await Bun.sleep(300);
      }
    }
    try {
      const ready = await this.readMarker(dir);
      if (ready) return { marker: ready, built: false };
      return { marker: await this.build(spec, hash, dir, out), built: true };
    } finally {
      await rm(lock, { recursive: true, force: true });
      this.evict().catch((err) => this.options.log?.(`venv cache eviction failed: ${(err as Error).message}`));
    }
  }

  private async lockIsStale(lock: string): Promise<boolean> {
    try {
      const [host, pid] = (await readFile(join(lock, "owner"), "utf8")).split(" ");
      if (host === hostname()) return !isProcessAlive(Number(pid));
      return Date.now() - (await stat(lock)).mtimeMs > 2 * 60 * 60 * 1000;
    } catch {
      // Owner file not written yet, or lock just released.
      try {
        return Date.now() - (await stat(lock)).mtimeMs > 60_000;
      } catch {
        return false;
      }
    }
  }

  private async build(spec: VenvSpec, hash: string, dir: string, out: (line: string) => void): Promise<Marker> {
    const started = performance.now();
    await rm(dir, { recursive: true, force: true }); // a half-built leftover is never reused
    out(`[studio-runner] building python environment ${hash} with python ${spec.interpreter.versionText} (${spec.requirements.length} requirements)`);
    this.options.log?.(`building python environment ${hash} (${spec.requirements.length} requirements)`);
    const env = { ...this.options.env, PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1" };
    const venvArgs = [spec.interpreter.path, "-m", "venv", ...(spec.systemSitePackages ? ["--system-site-packages"] : []), dir];
    const created = await runCommand(venvArgs, { env });
    if (created.code !== 0) {
      await rm(dir, { recursive: true, force: true });
      throw new RetryableError(`python -m venv failed: ${created.output.trim().split("\n").slice(-3).join(" | ")}`);
    }
    if (spec.systemSitePackages) await this.linkHostEnvironment(spec.interpreter, dir, env);
    const python = join(dir, "bin", "python");
    const failed = await this.install(python, spec.requirements, dir, env, out);
    const marker: Marker = {
      hash,
      interpreter: spec.interpreter.path,
      requirements: spec.requirements,
      failed,
      builtAt: new Date().toISOString(),
      buildMs: Math.round(performance.now() - started),
      sizeBytes: await directorySize(dir),
    };
    await writeFile(join(dir, MARKER), JSON.stringify(marker, null, 2));
    out(`[studio-runner] python environment ${hash} ready in ${formatDuration(marker.buildMs)} (${formatBytes(marker.sizeBytes)})`);
    return marker;
  }

  /**
   * An interpreter that itself lives in a venv (common on GPU hosts) does not expose that venv's
   * packages through --system-site-packages; a .pth file pointing at them does.
   */
  private async linkHostEnvironment(interpreter: Interpreter, dir: string, env: Record<string, string | undefined>) {
    const probe = await runCommand(
      [interpreter.path, "-c", "import sys, site; print(int(sys.prefix != sys.base_prefix)); print('\\n'.join(site.getsitepackages()))"],
      { env },
    );
    const [inVenv, ...paths] = probe.output.trim().split("\n");
    if (probe.code !== 0 || inVenv !== "1") return;
    const site = await runCommand([join(dir, "bin", "python"), "-c", "import site; print(site.getsitepackages()[0])"], { env });
    if (site.code === 0) await writeFile(join(site.output.trim(), "_studio_runner_host.pth"), `${paths.join("\n")}\n`);
  }

  /** pip install everything; when that fails, leave out what cannot be installed (unless strict). */
  private async install(python: string, requirements: string[], dir: string, env: Record<string, string | undefined>, out: (line: string) => void) {
    const failed: FailedRequirement[] = [];
    let remaining = [...requirements];
    const reqFile = join(dir, "studio-runner-requirements.txt");
    for (let round = 0; remaining.length > 0 && round <= requirements.length; round++) {
      await writeFile(reqFile, remaining.join("\n") + "\n");
      const result = await runCommand([python, "-m", "pip", "install", "--no-input", "-r", reqFile], { env });
      if (result.code === 0) return failed;
      const named = failedRequirementFromPipOutput(result.output);
      const line = named ? matchRequirementLine(remaining, named) : undefined;
      const message = pipErrorLines(result.output);
      if (this.options.strict) {
        throw new PermanentError(`pip could not install the requirements (--pip-strict):\n${message}`, { phase: "environment" });
      }
      if (line) {
        failed.push({ requirement: line, message });
        out(`[studio-runner] pip could not install ${line}: ${message.split("\n").join(" | ")}`);
        remaining = remaining.filter((r) => r !== line);
        continue;
      }
      // pip did not say which one: install the rest one by one.
      out(`[studio-runner] pip failed without naming a requirement; installing the rest one at a time`);
      for (const req of remaining) {
        const single = await runCommand([python, "-m", "pip", "install", "--no-input", req], { env });
        if (single.code !== 0) {
          const msg = pipErrorLines(single.output);
          failed.push({ requirement: req, message: msg });
          out(`[studio-runner] pip could not install ${req}: ${msg.split("\n").join(" | ")}`);
        }
      }
      return failed;
    }
    return failed;
  }

  /** Remove venvs unused for longer than maxAge, then the least recently used over maxBytes. */
  async evict(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.options.root);
    } catch {
      return;
    }
    // Entries in use or being built still take space: they count toward the total but stay.
    const entries: Array<{ hash: string; usedMs: number; sizeBytes: number; pinned: boolean }> = [];
    for (const hash of names) {
      if (hash.endsWith(".lock")) continue;
      const pinned = this.inUse.has(hash) || this.building.has(hash) || existsSync(join(this.options.root, `${hash}.lock`));
      try {
        const markerPath = join(this.options.root, hash, MARKER);
        const marker = JSON.parse(await readFile(markerPath, "utf8")) as Marker;
        entries.push({ hash, usedMs: (await stat(markerPath)).mtimeMs, sizeBytes: marker.sizeBytes, pinned });
      } catch {
        if (pinned) continue;
        // Half-built with no lock: a crashed build. Remove it once it is clearly not in progress.
        const s = await stat(join(this.options.root, hash)).catch(() => undefined);
        if (s && Date.now() - s.mtimeMs > 10 * 60_000) await rm(join(this.options.root, hash), { recursive: true, force: true });
      }
    }
    entries.sort((a, b) => a.usedMs - b.usedMs);
    let total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
    for (const e of entries) {
      if (e.pinned) continue;
      const tooOld = Date.now() - e.usedMs > this.options.maxAgeMs;
      if (!tooOld && total <= this.options.maxBytes) continue;
      await rm(join(this.options.root, e.hash), { recursive: true, force: true });
      total -= e.sizeBytes;
      this.options.log?.(`evicted python environment ${e.hash} (${tooOld ? "unused too long" : "cache over size"})`);
    }
  }
}

async function directorySize(dir: string): Promise<number> {
  const du = await runCommand(["du", "-sk", dir]).catch(() => undefined);
  const kib = du && du.code === 0 ? Number(du.output.split(/\s/)[0]) : NaN;
  return Number.isFinite(kib) ? kib * 1024 : 0;
}
