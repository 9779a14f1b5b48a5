// Helpers for end-to-end tests: a sandbox of queue root, storage, working and cache dirs, the
// compiled binary as a child process, and readers for what lands in storage.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dir, "../..");
export const BINARY = join(REPO, "dist", "studio-runner");
export const FIXTURE = join(REPO, "test", "fixtures", "studioml-client-message.json");
const TMP = join(REPO, ".test-tmp");

/** Every log the binary writes in a test is kept, for the secret scan that runs after the suite. */
export const LOGS_DIR = join(TMP, "logs");
let logSerial = 0;
function keepLog(kind: string, args: string[], text: string): void {
  try {
    mkdirSync(LOGS_DIR, { recursive: true });
    writeFileSync(
      join(LOGS_DIR, `${kind}-${process.pid}-${++logSerial}.log`),
      `$ studio-runner ${args.join(" ")}\n${text}`,
    );
  } catch {
    // the scan then has less to look at; the test itself is unaffected
  }
}

/** The compiled binary, built once if the test command did not build it. */
export function ensureBinary(): string {
  if (!existsSync(BINARY)) {
    const r = spawnSync(join(REPO, "node_modules/.bin/bun"), ["run", "build.ts"], { cwd: REPO, stdio: "inherit" });
    if (r.status !== 0) throw new Error("build failed");
  }
  return BINARY;
}

export type Sandbox = { dir: string; queueRoot: string; storageRoot: string; workDir: string; cacheDir: string };

export async function makeSandbox(name: string, options: { cacheDir?: string } = {}): Promise<Sandbox> {
  mkdirSync(TMP, { recursive: true });
  const dir = await mkdtemp(join(TMP, `${name}-`));
  const s = {
    dir,
    queueRoot: join(dir, "queue"),
    storageRoot: join(dir, "storage"),
    workDir: join(dir, "work"),
    cacheDir: options.cacheDir ?? join(dir, "cache"),
  };
  for (const d of [s.queueRoot, s.storageRoot, s.workDir, s.cacheDir]) mkdirSync(d, { recursive: true });
  return s;
}

/** A venv cache shared by e2e tests that do not test the cache itself. */
export const SHARED_CACHE = join(TMP, "shared-cache");

export const testEnv = (): Record<string, string> => {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return env;
};

/**
 * Flags a test runner gets unless the test gave them (as a flag or its environment variable): the
 * tests' storage servers (s3rver, moto, local http) listen on loopback and the fixture names them,
 * so --allow-private-endpoints; file: storage lives in the sandbox, so --file-storage-roots
 * <storageRoot>. A test of those rules passes its own (e.g. --allow-private-endpoints=false).
 */
export function runnerDefaults(sandbox: Sandbox, args: string[], env: Record<string, string> = {}): string[] {
  const given = (flag: string) =>
    args.some((a) => new RegExp(`^--(no-)?${flag}(=|$)`).test(a)) ||
    env[flag.toUpperCase().replaceAll("-", "_")] !== undefined;
  const out: string[] = [];
  if (!given("allow-private-endpoints")) out.push("--allow-private-endpoints");
  if (!given("file-storage-roots")) out.push("--file-storage-roots", sandbox.storageRoot);
  return out;
}

export class RunnerProcess {
  readonly child: ChildProcess;
  stderr = "";
  stdout = "";
  readonly exited: Promise<number | null>;

  constructor(sandbox: Sandbox, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(
      ensureBinary(),
      [
        "run",
        "--queue-root",
        sandbox.queueRoot,
        "--working-dir",
        sandbox.workDir,
        "--cache-dir",
        sandbox.cacheDir,
        ...runnerDefaults(sandbox, args, env),
        ...args,
      ],
      { env: { ...testEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child.stdout!.on("data", (d) => (this.stdout += d));
    this.child.stderr!.on("data", (d) => (this.stderr += d));
    this.exited = new Promise((r) =>
      this.child.on("exit", (code, signal) => {
        keepLog("runner", args, this.stdout + this.stderr);
        r(code ?? (signal ? -1 : null));
      }),
    );
  }

  /** Wait until the runner's log matches, or fail after timeoutMs. */
  async waitForLog(pattern: RegExp, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stderr)) {
      if (Date.now() > deadline) throw new Error(`runner log never matched ${pattern}:\n${this.stderr}`);
      if (this.child.exitCode !== null)
        throw new Error(`runner exited (${this.child.exitCode}) before its log matched ${pattern}:\n${this.stderr}`);
      await Bun.sleep(100);
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** Run the binary to completion. */
export function runBinary(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
) {
  const r = spawnSync(ensureBinary(), args, {
    cwd: options.cwd ?? REPO,
    env: { ...testEnv(), ...(options.env ?? {}) },
    encoding: "utf8",
    timeout: options.timeoutMs ?? 600_000,
  });
  keepLog("cli", args, (r.stdout ?? "") + (r.stderr ?? ""));
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** runBinary without blocking this process: needed when a server the binary talks to runs inside the test. */
export async function runBinaryAsync(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
) {
  const child = spawn(ensureBinary(), args, {
    cwd: options.cwd ?? REPO,
    env: { ...testEnv(), ...(options.env ?? {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 600_000);
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  clearTimeout(timer);
  keepLog("cli", args, stdout + stderr);
  return { code, stdout, stderr };
}

/** Make a plain tar of the given files (path → content), members without "./", like the client. */
export function makeTar(dest: string, files: Record<string, string>): void {
  const src = `${dest}.src`;
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(src, name, ".."), { recursive: true });
    writeFileSync(join(src, name), content);
  }
  const top = [...new Set(Object.keys(files).map((f) => f.split("/")[0]!))].sort();
  const r = spawnSync("tar", ["--format=pax", "-cf", dest, "-C", src, ...top]);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
}

export function sha256File(path: string): string {
  return new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex");
}

/** Text of one member of a tar in storage (first non-empty file when no name is given). */
export function tarMember(tarPath: string, member?: string): string {
  const list = spawnSync("tar", ["-tf", tarPath], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  const names = member ? list.filter((n) => n.replace(/^\.\//, "") === member) : list.filter((n) => !n.endsWith("/"));
  for (const name of names) {
    const out = spawnSync("tar", ["-xOf", tarPath, name], { encoding: "utf8" }).stdout;
    if (out) return out;
  }
  return "";
}

export function tarNames(tarPath: string): string[] {
  return spawnSync("tar", ["-tf", tarPath], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
}

/** Files in a directory (empty when it does not exist), ignoring dotfiles unless asked. */
export function filesIn(dir: string, all = false): string[] {
  try {
    return readdirSync(dir).filter((n) => all || !n.startsWith("."));
  } catch {
    return [];
  }
}

/**
 * The live log of every running attempt under the runner's working directory
 * (<workDir>/studio-runner/<key>/<attempt>/output/output, read from the host), the first whose text
 * passes `has`; undefined while there is none. Tests wait on it for the job to reach a point.
 */
export function liveOutput(workDir: string, has: (text: string) => boolean): string | undefined {
  const root = join(workDir, "studio-runner");
  for (const key of filesIn(root))
    for (const attempt of filesIn(join(root, key))) {
      try {
        const text = readFileSync(join(root, key, attempt, "output", "output"), "utf8");
        if (has(text)) return text;
      } catch {
        // not there (yet), or gone meanwhile
      }
    }
  return undefined;
}

/** The live log holding `needle` anywhere (see liveOutput). */
export const liveOutputWith = (workDir: string, needle: string) => liveOutput(workDir, (t) => t.includes(needle));

/** The live log in which the job itself printed this whole line (the runner's own lines start "[studio-runner]"). */
export const jobPrinted = (workDir: string, line: string) => liveOutput(workDir, (t) => t.split("\n").includes(line));

/**
 * The captured studioml client message, rewritten to file: storage under `storageRoot`: only the
 * artifact locations, the workspace key (the sha256 of the tar the test makes) and time_added
 * change.
 */
export function fixtureOnFileStorage(
  storageRoot: string,
  workspaceFiles: Record<string, string>,
  edit?: (msg: Record<string, any>) => void,
): { message: Record<string, any>; key: string; experimentDir: string } {
  const message = JSON.parse(readFileSync(FIXTURE, "utf8"));
  const bucket = "studioml-artifacts";
  const tarPath = join(storageRoot, "workspace-build.tar");
  mkdirSync(storageRoot, { recursive: true });
  makeTar(tarPath, workspaceFiles);
  const wsKey = `blobstore/${sha256File(tarPath)}.tar`;
  mkdirSync(join(storageRoot, bucket, "blobstore"), { recursive: true });
  writeFileSync(join(storageRoot, bucket, wsKey), readFileSync(tarPath));
  const exp = message.experiment;
  exp.time_added = Date.now() / 1000;
  for (const [label, a] of Object.entries<any>(exp.artifacts)) {
    if (label === "workspace") a.key = wsKey;
    a.qualified = `file:/${storageRoot}/${bucket}/${a.key}`;
    delete a.bucket;
    delete a.credentials;
  }
  message.config.storage = { type: "local", endpoint: `file://${storageRoot}`, bucket };
  edit?.(message);
  return { message, key: exp.key, experimentDir: join(storageRoot, bucket, "experiments", exp.key) };
}

/**
 * The same experiment under a key of its own, as the client gives every new run one: a runner
 * refuses a key it has already completed as a replay, so tests that run the captured message twice
 * in one working directory rename the second.
 */
export function withFreshKey<T extends { message: Record<string, any>; key: string; experimentDir: string }>(
  exp: T,
): T {
  const key = `${Math.floor(Date.now() / 1000)}_${crypto.randomUUID()}`;
  return {
    ...exp,
    message: JSON.parse(JSON.stringify(exp.message).replaceAll(exp.key, key)),
    key,
    experimentDir: exp.experimentDir.replace(exp.key, key),
  };
}

/** Put a message into a local queue the way the python client does (a uuid-named file). */
export function enqueue(queueRoot: string, queue: string, body: string | object): string {
  const id = crypto.randomUUID();
  mkdirSync(join(queueRoot, queue), { recursive: true });
  const tmp = join(queueRoot, `.${id}.tmp`);
  writeFileSync(tmp, typeof body === "string" ? body : JSON.stringify(body));
  require("node:fs").renameSync(tmp, join(queueRoot, queue, id));
  return id;
}

/** A simple experiment message on file storage, built from the fixture. */
export function simpleExperiment(
  storageRoot: string,
  files: Record<string, string>,
  edit?: (msg: Record<string, any>) => void,
) {
  return fixtureOnFileStorage(storageRoot, files, (m) => {
    m.experiment.key = `${Math.floor(Date.now() / 1000)}_${crypto.randomUUID()}`;
    for (const a of Object.values<any>(m.experiment.artifacts)) {
      a.key = a.key.replace(/experiments\/[^/]+\//, `experiments/${m.experiment.key}/`);
      a.qualified = a.qualified.replace(/experiments\/[^/]+\//, `experiments/${m.experiment.key}/`);
    }
    m.experiment.pythonenv = [];
    m.experiment.args = [];
    m.experiment.filename = "main.py";
    edit?.(m);
  });
}
