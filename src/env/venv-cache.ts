// Python virtual environments cached by a hash of (interpreter, requirements, options): built
// once when several jobs want the same one (in this process and across processes), never
// reused half-built, never reused once changed after the build (see venv-manifest.ts), and
// evicted by age and total size. Builds are launched by build-sandbox.ts: sandboxed when the
// runner sandboxes, as the job user when the runner is root, with a fixed environment; what is
// installed is decided in one pass (pin-install.ts). At most --max-env-builds different
// environments build at once. Environments prepared ahead (`studio-runner env prepare`) are kept
// until pruned, and with --venv-reuse-superset also serve experiments whose pins they satisfy.

import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  ftruncateSync,
  openSync,
  rmSync,
  writeSync,
} from "node:fs";
import { lutimes, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { formatBytes, formatDuration } from "../config/units.ts";
import { RetryableError } from "../errors.ts";
import { runCommand } from "../exec/command.ts";
import { isProcessAlive } from "../exec/pid.ts";
import {
  buildArgv,
  buildEnv,
  interpreterPrefixes,
  pipSettingPaths,
  reachable,
  runBuildStep,
  type BuildIsolation,
} from "./build-sandbox.ts";
import type { Interpreter } from "./interpreters.ts";
import { installPins, type SkippedLine } from "./pin-install.ts";
import { reportLines, type PinMode, type PinOutcome } from "./pin-plan.ts";
import { PROBE_SCRIPT } from "./pin-probe.ts";
import { satisfiesPins } from "./superset.ts";
import { manifestDigest, RUNNER_FILES, sealVenv, takeManifest, verifyManifest } from "./venv-manifest.ts";

export type VenvSpec = {
  interpreter: Interpreter;
  requirements: string[];
  systemSitePackages: boolean;
  /** Lines of the request skipped before the build (said in the log; not part of the hash). */
  skipped?: SkippedLine[];
};
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

export type Marker = {
  hash: string;
  interpreter: string;
  /** The interpreter's version (what an experiment's pythonver chose). */
  pythonVersion?: string;
  systemSitePackages?: boolean;
  requirements: string[];
  failed: FailedRequirement[];
  builtAt: string;
  buildMs: number;
  sizeBytes: number;
  /** How pins that cannot be met exactly were treated. */
  mode?: PinMode;
  /** The outcome of every requirement line (what was installed, substituted, missing, skipped). */
  pins?: PinOutcome[];
  /** Every distribution installed (canonical name → version). */
  distributions?: Record<string, string>;
  /** pip install rounds the build took. */
  pipRounds?: number;
  /** Where the build's time went (milliseconds per stage). */
  stagesMs?: Record<string, number>;
  /** Built by `studio-runner env prepare`: kept until pruned, never evicted for age. */
  prepared?: boolean;
};

export type VenvCacheOptions = {
  root: string;
  maxBytes: number;
  maxAgeMs: number;
  /** What happens to pins that cannot be met exactly: left out (default), nearest (relax), failure (strict). */
  pinMode: PinMode;
  /** Different environments built at once (--max-env-builds; the same one is never built twice at once). */
  maxBuilds?: number;
  /** --venv-reuse-superset: a prepared environment that satisfies every pin serves the experiment. */
  reuseSuperset?: boolean;
  /** Build venvs that see the interpreter's own packages (GPU hosts with torch/TF preinstalled). */
  systemSitePackages?: boolean;
  /** The runner's own environment: builds get only pip's and the proxies' settings from it (see buildEnv). */
  env: Record<string, string | undefined>;
  /** How builds are isolated (sandbox, job user); set once the runner has chosen its sandbox. */
  isolation?: BuildIsolation;
  /** --allow-pip-urls: requirement lines may be URLs, paths and pip options. */
  allowPipUrls?: boolean;
  log?: (message: string) => void;
};

const MARKER = RUNNER_FILES[0]!;
const MANIFEST = RUNNER_FILES[1]!;

type Readiness = { marker: Marker } | { changed: string } | undefined;

/** The environment's cache key: the request's lines (never what was substituted), interpreter and mode. */
export function venvHash(spec: VenvSpec, mode: PinMode): string {
  const h = new Bun.CryptoHasher("sha256");
  const key: unknown[] = [
    spec.interpreter.path,
    spec.interpreter.versionText,
    spec.systemSitePackages,
    mode === "strict",
    [...spec.requirements].sort(),
  ];
  if (mode === "relax") key.push("relax");
  h.update(JSON.stringify(key));
  return h.digest("hex").slice(0, 24);
}

/** A counting semaphore: at most `limit` holders at once, the rest wait in order. */
class Slots {
  private used = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  get busy(): boolean {
    return this.used >= this.limit;
  }
  async take(): Promise<() => void> {
    if (this.used >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.used++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.used--;
    };
  }
}

export class VenvCache {
  private readonly building = new Map<string, Promise<{ marker: Marker; built: boolean }>>();
  private readonly inUse = new Map<string, number>();
  /**
   * Digest of each manifest this process wrote or verified, with the build it belongs to: a
   * rewritten manifest is caught too. A venv rebuilt since (by another runner sharing the cache:
   * another builtAt) is checked against its own manifest file.
   */
  private readonly manifestDigests = new Map<string, { digest: string; builtAt: string }>();
  private warnedUnreachable = false;
  private readonly buildSlots: Slots;

  constructor(readonly options: VenvCacheOptions) {
    this.buildSlots = new Slots(Math.max(1, options.maxBuilds ?? 1));
  }

  /** A ready venv for the spec; `out` receives lines meant for the experiment's log. */
  async acquire(spec: VenvSpec, out: (line: string) => void, o: { prepared?: boolean } = {}): Promise<Venv> {
    let hash = venvHash(spec, this.options.pinMode);
    let dir = join(this.options.root, hash);
    const started = performance.now();
    const pin = (h: string) => this.inUse.set(h, (this.inUse.get(h) ?? 0) + 1);
    const unpin = (h: string) => {
      const n = (this.inUse.get(h) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(h);
      else this.inUse.set(h, n);
    };
    let ready: Readiness;
    let readyKnown = false;
    if (this.options.reuseSuperset && !o.prepared && !(await this.readMarker(dir))) {
      const prepared = await this.preparedSuperset(spec);
      if (prepared) {
        // Pinned before it is checked, so eviction cannot take it between the check and the use; one
        // that changed since it was prepared is not used (this experiment builds its own).
        pin(prepared.hash);
        const checked = await this.readiness(prepared.hash, join(this.options.root, prepared.hash));
        if (checked && "marker" in checked) {
          out(
            `[studio-runner] python environment ${prepared.hash}, ` +
              `prepared ahead with ${prepared.requirements.length} requirements, ` +
              `satisfies all ${spec.requirements.length} of this experiment's pins: reusing it (--venv-reuse-superset)`,
          );
          this.options.log?.(
            `reusing prepared python environment ${prepared.hash} for pins it satisfies (--venv-reuse-superset)`,
          );
          hash = prepared.hash;
          dir = join(this.options.root, hash);
          ready = checked;
          readyKnown = true;
        } else unpin(prepared.hash);
      }
    }
    if (!readyKnown) pin(hash);
    let release = () => {
      unpin(hash);
      release = () => undefined;
    };
    try {
      if (!readyKnown) ready = await this.readiness(hash, dir);
      let marker = ready && "marker" in ready ? ready.marker : undefined;
      let reused = true;
      if (ready && "changed" in ready) {
        out(
          `[studio-runner] python environment ${hash} was changed after it was built (${ready.changed}); rebuilding it`,
        );
        this.options.log?.(
          `python environment ${hash} was changed after it was built (${ready.changed}); rebuilding it`,
        );
      }
      if (!marker) {
        const pending = this.building.get(hash);
        if (pending) {
          out(`[studio-runner] waiting for python environment ${hash}, which another experiment is building`);
          marker = (await pending).marker;
        } else {
          const build = this.buildLocked(spec, hash, dir, out, !!o.prepared).finally(() => this.building.delete(hash));
          this.building.set(hash, build);
          const result = await build;
          marker = result.marker;
          reused = !result.built;
        }
      }
      if (o.prepared && !marker.prepared) {
        marker = { ...marker, prepared: true };
        rewriteMarker(join(dir, MARKER), marker);
      }
      const now = new Date();
      await lutimes(join(dir, MARKER), now, now).catch(() => undefined);
      if (reused) {
        out(
          `[studio-runner] reusing cached python environment ${hash} (python ${spec.interpreter.versionText}, ` +
            `${marker.requirements.length} requirements, built ${marker.builtAt}` +
            `${marker.prepared ? ", prepared ahead" : ""})`,
        );
        out(`[studio-runner] python environment ${hash} reused in ${formatDuration(performance.now() - started)}`);
        this.options.log?.(`reusing cached python environment ${hash}`);
        if (marker.pins) for (const line of reportLines(marker.pins)) out(`[studio-runner] ${line}`);
      }
      if (!marker.pins && marker.failed.length) {
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

  /** Built and unchanged since (the marker), changed (why), or not built. */
  private async readiness(hash: string, dir: string): Promise<Readiness> {
    const marker = await this.readMarker(dir);
    if (!marker) return undefined;
    // A digest this process recorded (it built or checked the venv) is trusted over the file's.
    const recorded = this.manifestDigests.get(hash);
    const known = recorded?.builtAt === marker.builtAt ? recorded.digest : undefined;
    // Sandboxed jobs get their venv read-only: once this process has built or checked it, nobody
    // but the runner can have changed it. Unsandboxed, every reuse checks again.
    if (known && this.options.isolation?.sandbox) return { marker };
    let manifest: Buffer | undefined;
    try {
      manifest = await readFile(join(dir, MANIFEST));
    } catch {
      if (!known) return { changed: "it has no manifest (built by an older runner?)" };
    }
    const digest = known ?? manifestDigest(manifest!);
    const changed = await verifyManifest(dir, digest, manifest).catch(
      (err: Error) => `it could not be checked: ${err.message}`,
    );
    if (changed) return { changed };
    this.manifestDigests.set(hash, { digest, builtAt: marker.builtAt });
    return { marker };
  }

  /** Build under a cross-process lock; whoever gets the lock second finds the venv ready. */
  private async buildLocked(
    spec: VenvSpec,
    hash: string,
    dir: string,
    out: (line: string) => void,
    prepared: boolean,
  ): Promise<{ marker: Marker; built: boolean }> {
    const lock = `${dir}.lock`;
    await mkdir(this.options.root, { recursive: true });
    let announced = false;
    for (;;) {
      try {
        await mkdir(lock);
        await writeFile(join(lock, "owner"), `${hostname()} ${process.pid}`);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST")
          throw new RetryableError(`cannot lock ${lock}: ${(err as Error).message}`);
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
      const ready = await this.readiness(hash, dir);
      if (ready && "marker" in ready) return { marker: ready.marker, built: false };
      // Different environments build side by side up to --max-env-builds; the lock above is held meanwhile.
      if (this.buildSlots.busy)
        out(
          `[studio-runner] waiting for a build slot (--max-env-builds ${this.options.maxBuilds ?? 1}) ` +
            `to build python environment ${hash}`,
        );
      const give = await this.buildSlots.take();
      try {
        return { marker: await this.build(spec, hash, dir, out, prepared), built: true };
      } finally {
        give();
      }
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

  /** How this build is launched: the argv wrapper, its environment and working directory. */
  private launcher(spec: VenvSpec, dir: string, files: Record<string, string>, out: (line: string) => void) {
    const iso = this.options.isolation ?? {};
    const readOnlyPaths = [
      ...interpreterPrefixes(spec.interpreter.path),
      ...pipSettingPaths(this.options.env),
      ...Object.values(files),
    ];
    let runAsJobUser = !!iso.jobUser;
    const unreachable =
      iso.jobUser && !iso.sandbox ? [dir, ...readOnlyPaths].filter((p) => !reachable(iso.jobUser!, [p])) : [];
    if (iso.jobUser && unreachable.length) {
      // Without a mount namespace the job user cannot reach an interpreter or cache under a
      // directory only root may enter (/root is 0700): build as the runner, loudly.
      runAsJobUser = false;
      const why = `the job user ${iso.jobUser.label} cannot reach ${unreachable.join(", ")} without a sandbox`;
      out(`[studio-runner] warning: python environment built as the runner, not as the job user: ${why}`);
      if (!this.warnedUnreachable)
        this.options.log?.(
          `warning: python environments are built as the runner (root), not as --job-user: ${why}; ` +
            "use --sandbox bwrap or make them reachable",
        );
      this.warnedUnreachable = true;
    }
    const env = buildEnv(this.options.env, iso.sandbox ? "/tmp" : (this.options.env.HOME ?? "/"));
    const user = runAsJobUser ? iso.jobUser : undefined;
    const run = (command: string[]) =>
      runBuildStep(buildArgv(iso, { buildDir: dir, readOnlyPaths, runAsJobUser }, command), { env, cwd: dir });
    return { run, user, sandboxed: !!iso.sandbox };
  }

  private async build(
    spec: VenvSpec,
    hash: string,
    dir: string,
    out: (line: string) => void,
    prepared: boolean,
  ): Promise<Marker> {
    const started = performance.now();
    await rm(dir, { recursive: true, force: true }); // a half-built or changed leftover is never reused
    this.manifestDigests.delete(hash);
    out(
      `[studio-runner] building python environment ${hash} with python ${spec.interpreter.versionText} ` +
        `(${spec.requirements.length} requirements)`,
    );
    this.options.log?.(`building python environment ${hash} (${spec.requirements.length} requirements)`);
    await mkdir(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    // The requirement list lives in the lock directory (the runner's, read-only to the build), never
    // in a file the build could replace between pip's rounds.
    const files = {
      requirements: join(`${dir}.lock`, "requirements.txt"),
      probeInput: join(`${dir}.lock`, "probe-input.json"),
      probeScript: join(`${dir}.lock`, "pip-probe.py"),
    };
    for (const [name, text] of [
      ["requirements", ""],
      ["probeInput", ""],
      ["probeScript", PROBE_SCRIPT],
    ] as const) {
      await writeFile(files[name], text, { mode: 0o644 });
      chmodSync(files[name], 0o644);
    }
    const launch = this.launcher(spec, dir, files, out);
    if (launch.user) chownSync(dir, launch.user.uid, launch.user.gid); // the build dir is the build user's until sealed
    if (launch.sandboxed)
      out(
        `[studio-runner] building in a bubblewrap sandbox: only ${dir} is writable` +
          `${launch.user ? `, as ${launch.user.label}` : ""}`,
      );
    try {
      const stagesMs: Record<string, number> = {};
      let mark = performance.now();
      const stage = (name: string) => {
        const now = performance.now();
        stagesMs[name] = Math.round(now - mark);
        mark = now;
      };
      const venvArgs = [
        spec.interpreter.path,
        "-m",
        "venv",
        ...(spec.systemSitePackages ? ["--system-site-packages"] : []),
        dir,
      ];
      const created = await launch.run(venvArgs);
      if (created.code !== 0)
        throw new RetryableError(`python -m venv failed: ${created.output.trim().split("\n").slice(-3).join(" | ")}`);
      if (spec.systemSitePackages) await this.linkHostEnvironment(spec.interpreter, dir);
      stage("venv");
      const python = join(dir, "bin", "python");
      const installed = await installPins({
        python,
        lines: spec.requirements,
        skipped: spec.skipped ?? [],
        mode: this.options.pinMode,
        run: launch.run,
        files,
        out,
      });
      const failed: FailedRequirement[] = installed.pins
        .filter((p) => p.outcome === "missing")
        .map((p) => ({ requirement: p.requirement, message: p.why ?? "not installed" }));
      stagesMs.indexes = Math.round(installed.times.indexesMs);
      stagesMs.pip = Math.round(installed.times.pipMs);
      stagesMs.check = Math.round(installed.times.checkMs);
      mark = performance.now();
      // The build's processes are gone (bwrap's PID namespace ends with it): hand the venv to the runner.
      sealVenv(
        dir,
        launch.user
          ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, buildUid: launch.user.uid }
          : undefined,
      );
      stage("seal");
      const marker: Marker = {
        hash,
        interpreter: spec.interpreter.path,
        pythonVersion: spec.interpreter.versionText,
        systemSitePackages: spec.systemSitePackages,
        requirements: spec.requirements,
        failed,
        builtAt: new Date().toISOString(),
        buildMs: 0,
        sizeBytes: await directorySize(dir),
        stagesMs,
        mode: this.options.pinMode,
        pins: installed.pins,
        distributions: installed.distributions,
        pipRounds: installed.rounds,
        ...(prepared ? { prepared: true } : {}),
      };
      // Both files exist (empty: not ready) before the manifest is taken, so writing them later
      // changes neither the directory nor anything the manifest records.
      for (const name of RUNNER_FILES) createEmpty(join(dir, name));
      stage("size");
      const manifest = await takeManifest(dir);
      await writeFile(join(dir, MANIFEST), manifest, { flag: "r+" });
      this.manifestDigests.set(hash, { digest: manifestDigest(manifest), builtAt: marker.builtAt });
      stage("manifest");
      marker.buildMs = Math.round(performance.now() - started);
      await writeFile(join(dir, MARKER), JSON.stringify(marker, null, 2), { flag: "r+" });
      const took = Object.entries(stagesMs)
        .map(
          ([k, v]) =>
            `${k} ${formatDuration(v)}${k === "pip" && installed.rounds > 1 ? ` in ${installed.rounds} rounds` : ""}`,
        )
        .join(", ");
      out(
        `[studio-runner] python environment ${hash} ready in ${formatDuration(marker.buildMs)} ` +
          `(${formatBytes(marker.sizeBytes)}, ${manifest.filter((b) => b === 0).length} files; ${took})`,
      );
      return marker;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * An interpreter that itself lives in a venv (common on GPU hosts) does not expose that venv's
   * packages through --system-site-packages; a .pth file pointing at them does. The host
   * interpreter is the operator's: it is asked directly, with a fixed environment.
   */
  private async linkHostEnvironment(interpreter: Interpreter, dir: string) {
    const probe = await runCommand(
      [
        interpreter.path,
        "-c",
        "import sys, site; print(int(sys.prefix != sys.base_prefix)); print('\\n'.join(site.getsitepackages()))",
      ],
      { env: buildEnv({}, "/") },
    );
    const [inVenv, ...paths] = probe.output.trim().split("\n");
    if (probe.code !== 0 || inVenv !== "1") return;
    const [major, minor] = interpreter.version;
    const site = join(dir, "lib", `python${major}.${minor}`, "site-packages");
    const fd = openSync(
      join(site, "_studio_runner_host.pth"),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o644,
    );
    try {
      writeSync(fd, `${paths.join("\n")}\n`);
    } finally {
      closeSync(fd);
    }
  }

  /** Every finished environment in the cache, with its marker and when it was last used. */
  async list(): Promise<Array<{ hash: string; dir: string; marker: Marker; usedMs: number; building: boolean }>> {
    let names: string[];
    try {
      names = await readdir(this.options.root);
    } catch {
      return [];
    }
    const out = [];
    for (const hash of names.sort()) {
      if (hash.endsWith(".lock")) continue;
      const dir = join(this.options.root, hash);
      const marker = await this.readMarker(dir);
      if (!marker) continue;
      const usedMs = (await stat(join(dir, MARKER)).catch(() => undefined))?.mtimeMs ?? 0;
      out.push({ hash, dir, marker, usedMs, building: existsSync(`${dir}.lock`) });
    }
    return out;
  }

  /** Removes one environment unless it is being built or used by this process; says why not. */
  async remove(hash: string): Promise<string | undefined> {
    if (!/^[0-9a-f]{24}$/.test(hash)) return `${JSON.stringify(hash)} is not an environment hash`;
    const dir = join(this.options.root, hash);
    if (!existsSync(dir)) return `no environment ${hash}`;
    if (this.inUse.has(hash) || this.building.has(hash) || existsSync(`${dir}.lock`))
      return `environment ${hash} is being built or used`;
    await rm(dir, { recursive: true, force: true });
    this.manifestDigests.delete(hash);
    return undefined;
  }

  /** A prepared environment (same interpreter and site-packages setting) that satisfies every pin of `spec`. */
  private async preparedSuperset(spec: VenvSpec): Promise<Marker | undefined> {
    for (const { marker } of await this.list()) {
      if (!marker.prepared || !marker.distributions) continue;
      if (marker.interpreter !== spec.interpreter.path || (marker.pythonVersion ?? "") !== spec.interpreter.versionText)
        continue;
      if (!!marker.systemSitePackages !== spec.systemSitePackages) continue;
      if (satisfiesPins(marker.distributions, spec.requirements)) return marker;
    }
    return undefined;
  }

  /**
   * Remove venvs unused for longer than maxAge, then the least recently used over maxBytes.
   * Prepared environments are never removed for age, and for size only after all others.
   */
  async evict(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.options.root);
    } catch {
      return;
    }
    // Entries in use or being built still take space: they count toward the total but stay.
    const entries: Array<{ hash: string; usedMs: number; sizeBytes: number; pinned: boolean; prepared: boolean }> = [];
    for (const hash of names) {
      if (hash.endsWith(".lock")) continue;
      const pinned =
        this.inUse.has(hash) || this.building.has(hash) || existsSync(join(this.options.root, `${hash}.lock`));
      try {
        const markerPath = join(this.options.root, hash, MARKER);
        const marker = JSON.parse(await readFile(markerPath, "utf8")) as Marker;
        entries.push({
          hash,
          usedMs: (await stat(markerPath)).mtimeMs,
          sizeBytes: marker.sizeBytes,
          pinned,
          prepared: !!marker.prepared,
        });
      } catch {
        if (pinned) continue;
        // Half-built with no lock: a crashed build. Remove it once it is clearly not in progress.
        const s = await stat(join(this.options.root, hash)).catch(() => undefined);
        if (s && Date.now() - s.mtimeMs > 10 * 60_000)
          await rm(join(this.options.root, hash), { recursive: true, force: true });
      }
    }
    entries.sort((a, b) => Number(a.prepared) - Number(b.prepared) || a.usedMs - b.usedMs);
    let total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
    for (const e of entries) {
      if (e.pinned) continue;
      const tooOld = !e.prepared && Date.now() - e.usedMs > this.options.maxAgeMs;
      if (!tooOld && total <= this.options.maxBytes) continue;
      await rm(join(this.options.root, e.hash), { recursive: true, force: true });
      this.manifestDigests.delete(e.hash);
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

/** Replaces the marker's content in place (same file, never followed: the manifest is unchanged). */
function rewriteMarker(path: string, marker: Marker): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify(marker, null, 2), 0);
  } finally {
    closeSync(fd);
  }
}

/** An empty file at `path` the runner owns, whatever was there before (never followed). */
function createEmpty(path: string): void {
  try {
    rmSync(path, { force: true, recursive: true });
  } catch {
    // nothing there
  }
  closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
}
