// Covers src/sandbox/bwrap.ts with the REAL bubblewrap of this machine: hidden secrets (files,
// directories, sockets, other experiments, the cache apart from the venv), the read-only system and
// private /tmp, loopback-only versus shared network, the whole process tree dying with bwrap, the
// minimal /dev, no capabilities, and the exact argv. Skipped loudly where /usr/bin/bwrap is
// missing; under CI=true that is a failure instead.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { JobProcess } from "../../src/exec/process-tree.ts";
import {
  bwrapArgv,
  bwrapEnvArgs,
  findBwrap,
  probeBwrap,
  probeSandbox,
  requireBwrap,
  SandboxUnavailableError,
  type SandboxHost,
  type SandboxOptions,
} from "../../src/sandbox/bwrap.ts";
import { envLoaderArgv, LAUNCHER_ENV, shellEnvScript } from "../../src/exec/launcher-env.ts";
import { deviceMinor, gpuMinors, procBusId } from "../../src/sandbox/gpu-devices.ts";
import type { JobUser } from "../../src/sandbox/job-user.ts";
import { runnerHiddenPaths } from "../../src/sandbox/hidden-paths.ts";
import { waitFor } from "../helpers/wait-for.ts";

const BWRAP = "/usr/bin/bwrap";
/** What a job sees in its /dev: the sandbox's minimal device set, nothing of the host's. */
const SANDBOX_DEV_ENTRIES = [
  ..."core fd full null ptmx pts random shm stderr stdin stdout tty urandom zero".split(" "),
];
const missing = !existsSync(BWRAP);
if (missing) {
  if (process.env.CI === "true")
    throw new Error(`${BWRAP} is missing: bubblewrap is required under CI (apt-get install bubblewrap)`);
  console.warn(`\n!!!!! bwrap sandbox tests SKIPPED: ${BWRAP} is missing (apt-get install bubblewrap) !!!!!\n`);
}

// The real interpreter (not a pyenv shim) and its prefix, bound read-only like a venv's base.
const py = missing
  ? undefined
  : spawnSync("python3", ["-c", "import sys; print(sys.executable); print(sys.base_prefix)"], { encoding: "utf8" });
const [PYTHON, PY_PREFIX] = (py?.stdout ?? "").trim().split("\n") as [string, string];

// Outside /tmp on purpose: /tmp is private in the sandbox, so hiding there would prove nothing.
let root = "";
let work = ""; // the runner's working dir (hidden) …
let exp = ""; // … holding this experiment (writable) …
let otherExp = ""; // … and another one (must stay hidden)
let cache = ""; // the runner's cache (hidden) …
let venv = ""; // … apart from the venv (read-only)
let secretFile = "";
let secretDir = "";
let socketPath = "";
const servers: Server[] = [];

beforeAll(async () => {
  if (missing) return;
  root = mkdtempSync("/var/tmp/bwrap-test-");
  work = join(root, "work");
  exp = join(work, "exp-1", "attempt-1");
  otherExp = join(work, "exp-2");
  cache = join(root, "cache");
  venv = join(cache, "venvs", "v1");
  for (const d of [exp, otherExp, venv, join(cache, "blobs"), join(root, "secrets")]) mkdirSync(d, { recursive: true });
  writeFileSync(join(otherExp, "other.txt"), "someone else's data");
  writeFileSync(join(venv, "marker.txt"), "venv file");
  writeFileSync(join(cache, "blobs", "blob.txt"), "cached blob");
  secretFile = join(root, "credentials.json");
  writeFileSync(secretFile, "RUNNER-SECRET-FILE");
  secretDir = join(root, "secrets");
  writeFileSync(join(secretDir, "credentials"), "RUNNER-SECRET-DIR");
  socketPath = join(root, "runner.sock");
  const sock = createServer((c) => c.end("SOCKET-SECRET"));
  await new Promise<void>((r) => sock.listen(socketPath, r));
  servers.push(sock);
});
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  if (root) rmSync(root, { recursive: true, force: true });
});

const options = (over: Partial<SandboxOptions> = {}): SandboxOptions => ({
  bwrapPath: BWRAP,
  experimentDir: exp,
  readOnlyPaths: [PY_PREFIX, venv],
  hiddenPaths: [secretFile, secretDir, socketPath, work, cache],
  network: "loopback",
  gpuDevices: false,
  cwd: exp,
  ...over,
});

type Result = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };
function run(argv: string[], timeoutMs = 20_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/root" },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out: ${argv.join(" ")}\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
/** Runs a Python script in the sandbox; the script prints one JSON object. */
async function inside(script: string, over: Partial<SandboxOptions> = {}): Promise<Record<string, unknown>> {
  const r = await run(bwrapArgv(options(over), [PYTHON, "-c", script]));
  if (r.code !== 0) throw new Error(`sandboxed python failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

const PY_TRY = `
import json, os, socket, errno
def attempt(fn):
    try:
        v = fn()
        return "ok:" + (v if isinstance(v, str) else repr(v))
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def read(p):
    with open(p) as f: return f.read()
def write(p):
    with open(p, "w") as f: f.write("x")
    return "written"
def connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.settimeout(3)
    try:
        s.connect((host, port)); return "connected"
    finally: s.close()
def unix(p):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(3)
    try:
        s.connect(p); return s.recv(100).decode()
    finally: s.close()
`;

describe.skipIf(missing)("bwrap sandbox with the real bubblewrap", () => {
  test("findBwrap, probeBwrap and requireBwrap", async () => {
    expect(findBwrap({ PATH: "/nonexistent:/usr/bin" })).toBe(BWRAP);
    expect(findBwrap({ PATH: "/nonexistent" })).toBeUndefined();
    expect(findBwrap({})).toBeUndefined();
    expect(await probeBwrap(BWRAP)).toBeUndefined();
    expect(await probeBwrap("/bin/false")).toContain("cannot create namespaces");
    expect(await probeBwrap("/nonexistent/bwrap")).toContain("cannot run");
    expect(await requireBwrap({ PATH: "/usr/bin" })).toBe(BWRAP);
    const err = await requireBwrap({ PATH: "/nonexistent" }).catch((e) => e);
    expect(err).toBeInstanceOf(SandboxUnavailableError);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("bwrap (bubblewrap) is not on the PATH");
  });

  test("a. the runner's secrets are readable outside but not inside (files, directories, sockets)", async () => {
    expect(readFileSync(secretFile, "utf8")).toBe("RUNNER-SECRET-FILE");
    expect(readFileSync(join(secretDir, "credentials"), "utf8")).toBe("RUNNER-SECRET-DIR");
    const r = await inside(`${PY_TRY}
print(json.dumps({
  "file": attempt(lambda: read(${JSON.stringify(secretFile)})),
  "dirFile": attempt(lambda: read(${JSON.stringify(join(secretDir, "credentials"))})),
  "dirList": attempt(lambda: ",".join(os.listdir(${JSON.stringify(secretDir)}))),
  "socket": attempt(lambda: unix(${JSON.stringify(socketPath)})),
  "otherExperiment": attempt(lambda: read(${JSON.stringify(join(otherExp, "other.txt"))})),
  "cacheBlob": attempt(lambda: read(${JSON.stringify(join(cache, "blobs", "blob.txt"))})),
  "venv": attempt(lambda: read(${JSON.stringify(join(venv, "marker.txt"))})),
  "venvWrite": attempt(lambda: write(${JSON.stringify(join(venv, "new.txt"))})),
  "hiddenDirWrite": attempt(lambda: write(${JSON.stringify(join(secretDir, "planted"))})),
  "capEff": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1],
}))`);
    console.log("inside, hidden paths:", JSON.stringify(r));
    // /dev/null over the file; on bwrap's nodev bind it cannot even be opened.
    expect(["EACCES", "ok:''"]).toContain(r.file as string);
    expect(r.dirFile).toBe("ENOENT");
    expect(r.dirList).toBe("EACCES"); // empty tmpfs, mode 0111
    expect(r.socket).toBe("ECONNREFUSED"); // /dev/null over the socket
    expect(r.otherExperiment).toBe("ENOENT");
    expect(r.cacheBlob).toBe("ENOENT");
    expect(r.venv).toBe("ok:venv file");
    expect(r.venvWrite).toBe("EROFS");
    expect(["EROFS", "EACCES"]).toContain(r.hiddenDirWrite as string);
    expect(r.capEff).toBe("0000000000000000");
    // Without capabilities the hiding mounts cannot be undone.
    const um = await run(
      bwrapArgv(options(), [
        "sh",
        "-c",
        `umount ${secretDir} || umount -l ${secretDir}; cat ${secretDir}/credentials; ` +
          `mount -o remount,rw / && echo REMOUNTED`,
      ]),
    );
    expect(um.stdout).not.toContain("RUNNER-SECRET");
    expect(um.stdout).not.toContain("REMOUNTED");
  });

  test("b. only the experiment directory is writable; /tmp is private", async () => {
    const r = await inside(`${PY_TRY}
print(json.dumps({
  "exp": attempt(lambda: write(${JSON.stringify(join(exp, "out.txt"))})),
  "cwd": os.getcwd(),
  "parent": attempt(lambda: write(${JSON.stringify(join(root, "escape.txt"))})),
  "root": attempt(lambda: write("/root/escape.txt")),
  "varTmp": attempt(lambda: write("/var/tmp/escape-${process.pid}.txt")),
  "etc": attempt(lambda: write("/etc/escape.txt")),
  "tmp": attempt(lambda: write("/tmp/private-${process.pid}.txt")),
  "tmpList": ",".join(sorted(os.listdir("/tmp"))),
  "devShm": attempt(lambda: write("/dev/shm/x")),
}))`);
    console.log("inside, writes:", JSON.stringify(r));
    expect(r.exp).toBe("ok:written");
    expect(readFileSync(join(exp, "out.txt"), "utf8")).toBe("x");
    expect(r.cwd).toBe(exp);
    for (const k of ["parent", "root", "varTmp", "etc"]) expect([k, r[k]]).toEqual([k, "EROFS"]);
    expect(existsSync(join(root, "escape.txt"))).toBe(false);
    expect(r.tmp).toBe("ok:written");
    expect(r.tmpList).toBe(`private-${process.pid}.txt`);
    expect(existsSync(`/tmp/private-${process.pid}.txt`)).toBe(false);
    expect(r.devShm).toBe("ok:written");
  });

  test("c. loopback-only network versus shared network", async () => {
    const server = createServer((c) => c.end());
    await new Promise<void>((r) => server.listen(0, "0.0.0.0", r));
    servers.push(server);
    const port = (server.address() as { port: number }).port;
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    const script = `${PY_TRY}
print(json.dumps({
  "loopback": attempt(lambda: connect("127.0.0.1", ${port})),
  "external": attempt(lambda: connect(${JSON.stringify(external ?? "192.0.2.1")}, ${port})),
  "lo": open("/sys/class/net/lo/flags").read().strip(),
}))`;
    const loop = await inside(script, { network: "loopback" });
    console.log(`inside, loopback mode (external address ${external ?? "none; 192.0.2.1"}):`, JSON.stringify(loop));
    expect(loop.loopback).toBe("ECONNREFUSED"); // its own lo, where nothing listens
    expect(["ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED"]).toContain(loop.external as string);
    const shared = await inside(script, { network: "shared" });
    console.log("inside, shared mode:", JSON.stringify(shared));
    expect(shared.loopback).toBe("ok:connected");
    if (external) expect(shared.external).toBe("ok:connected");
  });

  const findMarked = (marker: string) =>
    readdirSync("/proc")
      .filter((e) => /^\d+$/.test(e))
      .filter((e) => {
        try {
          return readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0").includes(marker);
        } catch {
          return false;
        }
      })
      .map(Number);
  const waitGone = async (pids: number[], ms: number) => {
    const until = Date.now() + ms;
    while (Date.now() < until && pids.some((p) => existsSync(`/proc/${p}`))) await Bun.sleep(25);
    return pids.filter((p) => existsSync(`/proc/${p}`));
  };

  test("d. SIGKILL to bwrap kills the whole tree, grandchildren in their own session included", async () => {
    const marker = `bwrap-grandchild-${process.pid}-${Date.now()}`;
    const script = `
import subprocess, sys, time
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", ${JSON.stringify(marker)}],
                     start_new_session=True)
print("ready", p.pid, flush=True)
time.sleep(300)`;
    const argv = bwrapArgv(options(), [PYTHON, "-c", script]);
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
      child.on("exit", (code, signal) => r({ code, signal })),
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (b: Buffer) => b.toString().includes("ready") && resolve());
      setTimeout(() => reject(new Error("job did not start")), 15_000); // only bounds a hang
    });
    // Under load the grandchild may show up in /proc a little after "ready".
    const pids = await waitFor(
      "the grandchild in /proc",
      () => findMarked(marker).length && findMarked(marker),
      5_000,
      50,
    );
    expect(pids.length).toBe(1);
    const tree = [pids[0]!, ...findMarked(script).filter((p) => p !== child.pid)];
    console.log(`bwrap ${child.pid}; grandchild (outside pid) ${pids[0]}; sandboxed processes ${tree.join(",")}`);
    process.kill(child.pid!, "SIGKILL"); // bwrap alone: the job is not in bwrap's process group
    expect((await exited).signal).toBe("SIGKILL");
    expect(await waitGone(tree, 2000)).toEqual([]);
    expect(findMarked(marker)).toEqual([]);
  });

  test("d2. through JobProcess: stop() ends the sandbox and its grandchildren; exit code passes through", async () => {
    const marker = `bwrap-jobprocess-${process.pid}-${Date.now()}`;
    const lines: string[] = [];
    const script = `
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: (print("got SIGTERM", flush=True), sys.exit(7)))
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", ${JSON.stringify(marker)}],
                 start_new_session=True)
print("ready", flush=True)
time.sleep(300)`;
    const job = new JobProcess(bwrapArgv(options(), [PYTHON, "-c", script]), {
      cwd: exp,
      env: { PATH: process.env.PATH ?? "" },
      onLine: (l) => lines.push(l),
    });
    await waitFor('the job\'s "ready"', () => lines.includes("ready"), 15_000, 25);
    const marked = await waitFor(
      "the grandchild in /proc",
      () => findMarked(marker).length && findMarked(marker),
      5_000,
      50,
    );
    expect(marked.length).toBe(1);
    const info = await job.stop("test", 5000);
    console.log("JobProcess.stop on a sandboxed job:", JSON.stringify(info), JSON.stringify(lines));
    expect(await waitGone(marked, 2000)).toEqual([]);
    // The SIGTERM reaches bwrap (which dies at once: no forwarding) and, through process-tree's
    // descendant walk, the job; whether the job's handler runs first is a race. Either way the job
    // does not outlive the stop.
    expect(info.code === 7 || info.code === 137 || info.signal === "SIGTERM").toBe(true);

    const ok = new JobProcess(bwrapArgv(options(), [PYTHON, "-c", "import sys; print('hi'); sys.exit(3)"]), {
      cwd: exp,
      env: { PATH: process.env.PATH ?? "" },
      onLine: (l) => lines.push(l),
    });
    expect((await ok.exited).code).toBe(3);
    expect(lines).toContain("hi");
  });

  test("d3. a graceful stop signals bwrap's descendants, not bwrap: the job's SIGTERM handler runs", async () => {
    const script = `
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: (print("got SIGTERM", flush=True), sys.exit(7)))
print("ready", flush=True)
time.sleep(300)`;
    const argv = bwrapArgv(options(), [PYTHON, "-c", script]);
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    await new Promise<void>((resolve) =>
      child.stdout!.on("data", (b: Buffer) => ((out += b.toString()), out.includes("ready") && resolve())),
    );
    const job = readdirSync("/proc")
      .filter((e) => /^\d+$/.test(e) && Number(e) !== child.pid)
      .map(Number)
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith(PYTHON + "\0-c\0");
        } catch {
          return false;
        }
      })
      .filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes("got SIGTERM"));
    expect(job.length).toBe(1);
    process.kill(job[0]!, "SIGTERM");
    expect(await exited).toBe(7);
    expect(out).toContain("got SIGTERM");
  });

  test("e. without gpuDevices the sandbox has only bwrap's minimal /dev", async () => {
    const r = await inside(`import json, os; print(json.dumps({"dev": sorted(os.listdir("/dev"))}))`);
    console.log("inside /dev:", (r.dev as string[]).join(" "));
    expect(r.dev).toEqual(SANDBOX_DEV_ENTRIES);
    expect((r.dev as string[]).some((n) => n.startsWith("nvidia") || n === "dri")).toBe(false);
  });
});

describe("bwrapArgv (no bwrap needed)", () => {
  const fakeHost: SandboxHost = {
    lookup(path) {
      const dirs = [
        "/srv/work",
        "/srv/work/exp-1/attempt-1",
        "/srv/cache",
        "/srv/cache/venvs/abc",
        "/opt/python3.11",
        "/root/.aws",
        "/tmp/somewhere",
      ];
      const files = ["/etc/studio/runner.yaml", "/srv/google/creds.json", "/run/docker.sock"];
      if (path === "/var/run/docker.sock") return { real: "/run/docker.sock", kind: "file" };
      if (dirs.includes(path)) return { real: path, kind: "dir" };
      if (files.includes(path)) return { real: path, kind: "file" };
      return undefined;
    },
    gpuDeviceNodes: () => ["/dev/dri", "/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidiactl"],
  };
  const golden: SandboxOptions = {
    bwrapPath: "/usr/bin/bwrap",
    experimentDir: "/srv/work/exp-1/attempt-1",
    readOnlyPaths: ["/opt/python3.11", "/srv/cache/venvs/abc"],
    hiddenPaths: [
      "/root/.aws",
      "/root/.config/gcloud",
      "/srv/google/creds.json",
      "/etc/studio/runner.yaml",
      "/srv/work",
      "/srv/cache",
      "/tmp/somewhere",
      "/var/run/docker.sock",
    ],
    network: "loopback",
    gpuDevices: false,
    cwd: "/srv/work/exp-1/attempt-1/workspace",
  };

  test("f. golden argv: the command line reviewers see", () => {
    const argv = bwrapArgv(golden, ["/srv/cache/venvs/abc/bin/python", "train.py", "--epochs", "3"], fakeHost);
    // prettier-ignore
    expect(argv).toEqual([
      "/usr/bin/bwrap",
      "--ro-bind",
      "/",
      "/",
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      "--tmpfs",
      "/tmp",
      // parents before children: the experiment and the venv are bound on top of what hides them
      "--perms",
      "0111",
      "--tmpfs",
      "/root/.aws",
      "--perms",
      "0111",
      "--tmpfs",
      "/srv/work",
      "--perms",
      "0111",
      "--tmpfs",
      "/srv/cache",
      "--ro-bind",
      "/dev/null",
      "/run/docker.sock",
      "--ro-bind",
      "/opt/python3.11",
      "/opt/python3.11",
      "--ro-bind",
      "/dev/null",
      "/srv/google/creds.json",
      "--ro-bind",
      "/dev/null",
      "/etc/studio/runner.yaml",
      "--ro-bind",
      "/srv/cache/venvs/abc",
      "/srv/cache/venvs/abc",
      "--bind",
      "/srv/work/exp-1/attempt-1",
      "/srv/work/exp-1/attempt-1",
      "--remount-ro",
      "/root/.aws",
      "--remount-ro",
      "/srv/work",
      "--remount-ro",
      "/srv/cache",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-cgroup-try",
      "--unshare-net",
      "--cap-drop",
      "ALL",
      "--die-with-parent",
      "--new-session",
      "--chdir",
      "/srv/work/exp-1/attempt-1/workspace",
      "--",
      "/srv/cache/venvs/abc/bin/python",
      "train.py",
      "--epochs",
      "3",
    ]);
  });

  test("shared network and GPUs: no --unshare-net, device nodes bound with --dev-bind", () => {
    const argv = bwrapArgv(
      { ...golden, network: "shared", gpuDevices: true, hiddenPaths: [], readOnlyPaths: [] },
      ["python"],
      fakeHost,
    );
    expect(argv).not.toContain("--unshare-net");
    expect(argv.join(" ")).toContain(
      "--dev-bind /dev/dri /dev/dri --dev-bind /dev/nvidia-uvm /dev/nvidia-uvm " +
        "--dev-bind /dev/nvidia0 /dev/nvidia0 --dev-bind /dev/nvidiactl /dev/nvidiactl " +
        "--unshare-pid",
    );
    // a runner that is not root: its own user namespace, none further inside
    expect(bwrapArgv({ ...golden, disableUserns: true }, ["python"], fakeHost).join(" ")).toContain(
      "--unshare-user --disable-userns --unshare-pid",
    );
  });

  test("the same path hidden and granted: the grant wins; bad input is refused", () => {
    const argv = bwrapArgv(
      { ...golden, hiddenPaths: ["/srv/cache/venvs/abc", "/srv/work/exp-1/attempt-1"] },
      ["python"],
      fakeHost,
    ).join(" ");
    expect(argv).not.toContain("--tmpfs /srv/cache/venvs/abc");
    expect(argv).not.toContain("--tmpfs /srv/work/exp-1/attempt-1");
    expect(argv).not.toContain("--remount-ro");
    expect(() => bwrapArgv({ ...golden, experimentDir: "relative" }, ["python"], fakeHost)).toThrow("absolute");
    expect(() => bwrapArgv({ ...golden, readOnlyPaths: ["/nope"] }, ["python"], fakeHost)).toThrow("does not exist");
    expect(() => bwrapArgv(golden, [], fakeHost)).toThrow("empty command");
  });

  test("runnerHiddenPaths: what the runner knows about its own secrets", () => {
    const paths = runnerHiddenPaths({
      home: "/root",
      env: {
        GOOGLE_APPLICATION_CREDENTIALS: "/srv/google/creds.json",
        KUBECONFIG: "/a/kube:/b/kube",
        PATH: "/usr/bin",
      },
      configFile: "/etc/studio/runner.yaml",
      sqsCerts: "/srv/sqs",
      googleCerts: "/srv/google",
      queueRoot: "/root/.studioml/queue",
      workingDir: "/srv/work",
      cacheDir: "/srv/cache",
    });
    for (const p of [
      "/root/.aws",
      "/root/.config/gcloud",
      "/srv/google/creds.json",
      "/a/kube",
      "/b/kube",
      "/etc/studio/runner.yaml",
      "/srv/sqs",
      "/srv/google",
      "/root/.studioml/queue",
      "/srv/work",
      "/srv/cache",
      "/var/run/secrets",
      "/run/docker.sock",
    ])
      expect(paths).toContain(p);
    expect(paths).not.toContain("/usr/bin");
    const more = runnerHiddenPaths({
      home: "/root",
      env: {
        SSH_AUTH_SOCK: "/tmp/ssh-x/agent.1",
        DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/0/bus,guid=abc",
        XDG_RUNTIME_DIR: "/run/user/0",
        DOCKER_HOST: "unix:///srv/docker.sock",
      },
      queueRoot: "/q",
      workingDir: "/w",
      cacheDir: "/c",
      secretPaths: ["/srv/keys/encrypt", "/srv/keys/signatures", undefined, "/srv/admin-token"],
    });
    for (const p of [
      "/root",
      "/srv/keys/encrypt",
      "/srv/keys/signatures",
      "/srv/admin-token",
      "/tmp/ssh-x/agent.1",
      "/run/user/0/bus",
      "/run/user/0",
      "/srv/docker.sock",
      "/etc/studio-runner",
      "/run/dbus",
      "/run/containerd",
    ])
      expect(more).toContain(p);
    expect(runnerHiddenPaths({ home: "/", env: {}, queueRoot: "/q", workingDir: "/w", cacheDir: "/c" })).not.toContain(
      "/",
    );
  });
});

// ---- jobs as the job user (runner root), environment only to the job, GPUs per card ----

const isRoot = process.geteuid?.() === 0;
const NOBODY: JobUser = { uid: 65534, gid: 65534, label: "65534:65534" };

describe("bwrapArgv with a job user (no bwrap needed)", () => {
  const dirs = [
    "/srv",
    "/srv/work",
    "/srv/work/exp-1",
    "/srv/work/exp-1/attempt-1",
    "/root",
    "/root/.pyenv",
    "/root/.pyenv/versions",
    "/root/.pyenv/versions/3.11.7",
    "/home/op",
    "/home/op/cache",
    "/home/op/cache/venvs",
    "/home/op/cache/venvs/abc",
  ];
  const host: SandboxHost = {
    lookup: (path) =>
      dirs.includes(path)
        ? { real: path, kind: "dir" }
        : path === "/etc/studio-runner/env"
          ? { real: path, kind: "file" }
          : undefined,
    gpuDeviceNodes: () => [
      "/dev/dri",
      "/dev/nvidia-caps",
      "/dev/nvidia-modeset",
      "/dev/nvidia-uvm",
      "/dev/nvidia-uvm-tools",
      "/dev/nvidia0",
      "/dev/nvidia1",
      "/dev/nvidia2",
      "/dev/nvidiactl",
    ],
    // /root and /home/op are 0700: nobody cannot walk through them
    searchable: (dir) => dir !== "/root" && dir !== "/home/op",
  };
  const base: SandboxOptions = {
    bwrapPath: "/usr/bin/bwrap",
    experimentDir: "/srv/work/exp-1/attempt-1",
    readOnlyPaths: ["/root/.pyenv/versions/3.11.7", "/home/op/cache/venvs/abc"],
    hiddenPaths: ["/root", "/root/.aws", "/srv/work", "/etc/studio-runner/env"],
    network: "loopback",
    gpuDevices: [1],
    cwd: "/srv/work/exp-1/attempt-1/workspace",
    jobUser: NOBODY,
    envArgsFd: 3,
  };

  test(
    "g. golden two-stage argv: root builds the view, setpriv drops, bwrap as the " + "job user makes the namespaces",
    () => {
      const argv = bwrapArgv(base, ["/home/op/cache/venvs/abc/bin/python", "--help", "--", "--bind"], host);
      // prettier-ignore
      expect(argv).toEqual([
        "/usr/bin/bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev-bind",
        "/proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        // the runner's home hidden (its .aws inside needs nothing more); /home/op covered because
        // nobody cannot search it; the paths down to what is bound back recreated, searchable
        "--perms",
        "0111",
        "--tmpfs",
        "/root",
        "--perms",
        "0111",
        "--tmpfs",
        "/srv/work",
        "--perms",
        "0711",
        "--dir",
        "/root/.pyenv",
        "--perms",
        "0111",
        "--tmpfs",
        "/home/op",
        "--ro-bind",
        "/dev/null",
        "/etc/studio-runner/env",
        "--perms",
        "0711",
        "--dir",
        "/root/.pyenv/versions",
        "--perms",
        "0711",
        "--dir",
        "/home/op/cache",
        "--perms",
        "0711",
        "--dir",
        "/srv/work/exp-1",
        "--ro-bind",
        "/root/.pyenv/versions/3.11.7",
        "/root/.pyenv/versions/3.11.7",
        "--bind",
        "/srv/work/exp-1/attempt-1",
        "/srv/work/exp-1/attempt-1",
        "--perms",
        "0711",
        "--dir",
        "/home/op/cache/venvs",
        "--ro-bind",
        "/home/op/cache/venvs/abc",
        "/home/op/cache/venvs/abc",
        "--remount-ro",
        "/root",
        "--remount-ro",
        "/srv/work",
        "--remount-ro",
        "/home/op",
        // only card 1 and the driver's control nodes; no /dev/dri, no other card
        "--dev-bind",
        "/dev/nvidia-caps",
        "/dev/nvidia-caps",
        "--dev-bind",
        "/dev/nvidia-modeset",
        "/dev/nvidia-modeset",
        "--dev-bind",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm",
        "--dev-bind",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-uvm-tools",
        "--dev-bind",
        "/dev/nvidia1",
        "/dev/nvidia1",
        "--dev-bind",
        "/dev/nvidiactl",
        "/dev/nvidiactl",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
        "--die-with-parent",
        "--",
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--no-new-privs",
        "--",
        "/usr/bin/bwrap",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--disable-userns",
        "--dev-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--unshare-net",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--args",
        "3",
        "--chdir",
        "/srv/work/exp-1/attempt-1/workspace",
        // the request's arguments come only after the last "--": never options of bwrap or setpriv
        "--",
        "/home/op/cache/venvs/abc/bin/python",
        "--help",
        "--",
        "--bind",
      ]);
    },
  );

  test("GPUs: a list of minors binds only those cards (class 10); none allocated binds none", () => {
    const two = bwrapArgv({ ...base, gpuDevices: [0, 2] }, ["python"], host).join(" ");
    expect(two).toContain("--dev-bind /dev/nvidia0 /dev/nvidia0");
    expect(two).toContain("--dev-bind /dev/nvidia2 /dev/nvidia2");
    expect(two).not.toContain("/dev/nvidia1 ");
    expect(two).not.toContain("/dev/dri");
    expect(bwrapArgv({ ...base, gpuDevices: [] }, ["python"], host).join(" ")).not.toContain("nvidia");
    expect(bwrapArgv({ ...base, gpuDevices: false }, ["python"], host).join(" ")).not.toContain("nvidia");
  });

  test("minor numbers from /proc/driver/nvidia, NVML's index where the driver does not say", () => {
    const proc = mkdtempSync("/var/tmp/nvidia-proc-");
    try {
      mkdirSync(join(proc, "0000:3b:00.0"));
      writeFileSync(
        join(proc, "0000:3b:00.0", "information"),
        "Model: \t\t NVIDIA H100\nIRQ:   \t\t 42\nDevice Minor: \t 5\nBus Location: \t 0000:3b:00.0\n",
      );
      expect(procBusId("00000000:3B:00.0")).toBe("0000:3b:00.0");
      expect(procBusId("0000:3b:00.0")).toBe("0000:3b:00.0");
      expect(deviceMinor("00000000:3B:00.0", proc)).toBe(5);
      expect(deviceMinor("00000000:AF:00.0", proc)).toBeUndefined();
      const r = gpuMinors(
        [
          { uuid: "GPU-a", index: 0, pciBusId: "00000000:3B:00.0" },
          { uuid: "GPU-b", index: 1, pciBusId: "00000000:AF:00.0" },
        ],
        proc,
      );
      expect(r).toEqual({ minors: { "GPU-a": 5, "GPU-b": 1 }, guessed: ["GPU-b"] });
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });

  test("the job's environment as bwrap --args and as the env loader's script", () => {
    const env = { FOO: "a b", LD_PRELOAD: "./evil.so", "BAD=NAME": "x", "dotted.name": "y", Q: "it's" };
    const args = bwrapEnvArgs(env).toString("utf8").split("\0");
    expect(args.slice(0, 6)).toEqual(["--setenv", "FOO", "a b", "--setenv", "LD_PRELOAD", "./evil.so"]);
    expect(args).not.toContain("BAD=NAME");
    expect(args).toContain("dotted.name");
    const { script, skipped } = shellEnvScript(env);
    expect(skipped).toEqual(["BAD=NAME", "dotted.name"]);
    expect(script).toContain("unset PATH LANG\n");
    expect(script).toContain("export Q='it'\\''s'\n");
    expect(envLoaderArgv(["python", "x"]).slice(-2)).toEqual(["python", "x"]);
    expect(LAUNCHER_ENV).toEqual({
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      LANG: "C.UTF-8",
    });
  });
});

describe.skipIf(missing || !isRoot)("two stages with the real bubblewrap, runner root, job as nobody", () => {
  // `root` is a mkdtemp directory (0700): nobody cannot walk into it, and the interpreter lives
  // under /root (0700) too; the sandbox must still reach both.
  const jobOptions = (over: Partial<SandboxOptions> = {}) =>
    options({ jobUser: NOBODY, hiddenPaths: [secretFile, secretDir, socketPath, work, cache, "/root"], ...over });

  test("probeSandbox runs a job as nobody", async () => {
    expect(await probeSandbox(BWRAP, { jobUser: NOBODY, network: "loopback" })).toBeUndefined();
  });

  test(
    "h. uid/gid nobody, no capabilities, no_new_privs, no user namespaces, " +
      "/etc/shadow unreadable, secrets hidden, own dir writable",
    async () => {
      spawnSync("chown", ["-R", "65534:65534", exp]);
      const r = await inside(
        `${PY_TRY}
import subprocess
st = {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status")}
print(json.dumps({
  "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
  "capEff": st["CapEff"], "capPrm": st["CapPrm"], "noNewPrivs": st["NoNewPrivs"],
  "unshareU": subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode,
  "shadow": attempt(lambda: read("/etc/shadow")),
  "secret": attempt(lambda: read(${JSON.stringify(join(secretDir, "credentials"))})),
  "rootHome": attempt(lambda: ",".join(os.listdir("/root"))),
  "otherExperiment": attempt(lambda: read(${JSON.stringify(join(otherExp, "other.txt"))})),
  "exp": attempt(lambda: write(${JSON.stringify(join(exp, "job-wrote.txt"))})),
  "tmp": attempt(lambda: write("/tmp/x")),
  "shm": attempt(lambda: write("/dev/shm/x")),
  "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
  "dev": sorted(os.listdir("/dev")),
}))`,
        jobOptions(),
      );
      console.log("inside, as nobody:", JSON.stringify(r));
      expect([r.uid, r.euid, r.gid]).toEqual([65534, 65534, 65534]);
      expect(r.groups).toEqual([]);
      expect(r.capEff).toBe("0000000000000000");
      expect(r.capPrm).toBe("0000000000000000");
      expect(r.noNewPrivs).toBe("1");
      expect(r.unshareU).not.toBe(0);
      expect(r.shadow).toBe("EACCES");
      expect(r.secret).toBe("ENOENT");
      expect(r.rootHome).toBe("EACCES");
      expect(r.otherExperiment).toBe("ENOENT");
      expect(r.exp).toBe("ok:written");
      expect(r.tmp).toBe("ok:written");
      expect(r.shm).toBe("ok:written");
      expect(r.dev).toEqual(SANDBOX_DEV_ENTRIES);
      expect((r.pids as number[]).length).toBeLessThanOrEqual(3); // bwrap's init, python (and a transient child)
      // on the host, the job's file belongs to nobody
      expect(statSync(join(exp, "job-wrote.txt")).uid).toBe(65534);
    },
  );

  test("i. the environment reaches only the job: not bwrap's argv or environ, not setpriv's", async () => {
    const secret = `JOB-ENV-SECRET-${process.pid}-${Date.now()}`;
    const lines: string[] = [];
    const argv = bwrapArgv(jobOptions({ envArgsFd: 3 }), [
      PYTHON,
      "-c",
      "import os, sys, time; print('env', os.environ.get('SECRET_VALUE'), " +
        "os.environ.get('PATH'), flush=True); time.sleep(3)",
    ]);
    const job = new JobProcess(argv, {
      cwd: exp,
      env: LAUNCHER_ENV,
      onLine: (l) => lines.push(l),
      sandboxed: true,
      jobEnvPayload: bwrapEnvArgs({ SECRET_VALUE: secret, PATH: "/job/bin" }),
    });
    await waitFor("the job's env line", () => lines.some((l) => l.startsWith("env ")), 15_000, 25);
    // While it runs: every launcher process (both bwraps) on the host, read by root
    const leaks: string[] = [];
    for (const e of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      try {
        const comm = readFileSync(`/proc/${e}/comm`, "utf8").trim();
        if (comm !== "bwrap" && comm !== "setpriv") continue;
        for (const f of ["cmdline", "environ"])
          if (readFileSync(`/proc/${e}/${f}`, "utf8").includes(secret)) leaks.push(`${e}/${f}`);
      } catch {
        // gone
      }
    }
    const exit = await job.exited;
    expect(lines).toContain(`env ${secret} /job/bin`);
    expect(leaks).toEqual([]);
    expect(exit.code).toBe(0);
  });

  test(
    "j. TIOCSTI: with --new-session the job cannot push input into the runner's " + "terminal (host-checked)",
    async () => {
      const mark = join(root, `tiocsti-${Date.now()}`);
      const probe = `import fcntl, termios
try:
    for c in "touch ${mark}\\n": fcntl.ioctl(0, termios.TIOCSTI, c)
    print("TIOCSTI: ok")
except OSError as e:
    print("TIOCSTI: denied", e.errno)`;
      const shellAfter = (cmd: string) => `${cmd}; read -t 2 line && eval "$line"; true`;
      const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
      // control: the same probe outside the sandbox injects into the terminal and the shell runs it
      const control = spawnSync(
        "script",
        ["-qec", `bash -c ${q(shellAfter(`${PYTHON} -c ${q(probe)}`))}`, "/dev/null"],
        {
          encoding: "utf8",
          timeout: 20_000,
        },
      );
      const controlWorked = existsSync(mark);
      rmSync(mark, { force: true });
      spawnSync("chown", ["-R", "65534:65534", exp]);
      const argv = bwrapArgv(jobOptions(), [PYTHON, "-c", probe]).map(q).join(" ");
      const sandboxed = spawnSync("script", ["-qec", `bash -c ${q(shellAfter(argv))}`, "/dev/null"], {
        encoding: "utf8",
        timeout: 20_000,
      });
      console.log(
        "TIOCSTI control:",
        control.stdout.trim().split("\n")[0],
        "; sandboxed:",
        sandboxed.stdout.trim().split("\n")[0],
      );
      if (!controlWorked)
        console.warn(
          "the control injection (outside the sandbox) did not reach the shell either: the sandboxed check proves less",
        );
      expect(sandboxed.stdout).toContain("TIOCSTI: denied");
      expect(existsSync(mark)).toBe(false);
    },
  );
});
