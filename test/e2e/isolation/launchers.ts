// How a job is launched and what it can see (issue #14 holes 1, 5, 7 and the GPU part of 12;
// attack classes 1-6, 8, 9, 15, 16), from the compiled binary with its DEFAULT settings (no
// --sandbox flag: auto, which is bwrap here; the runner is root, so the job runs as nobody).
// Every verdict is read on the host: a canary library's mark file, /proc of the launchers and of
// the job, what reached storage, file owners, processes left behind.

import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  jobPrinted,
  makeSandbox,
  REPO,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  tarNames,
} from "../../helpers/e2e.ts";
import { processesWith } from "../../helpers/host-processes.ts";
import { waitFor } from "../../helpers/wait-for.ts";

const HAVE_BWRAP = existsSync("/usr/bin/bwrap");
const HAVE_GCC = spawnSync("gcc", ["--version"]).status === 0;
const IS_ROOT = process.geteuid?.() === 0;
if (!HAVE_BWRAP || !HAVE_GCC || !IS_ROOT)
  console.warn(
    `\n*** isolation/launchers: needs bwrap, gcc and root (bwrap ${HAVE_BWRAP}, ` +
      `gcc ${HAVE_GCC}, root ${IS_ROOT}): SKIPPED ***\n`,
  );
const runnable = HAVE_BWRAP && HAVE_GCC && IS_ROOT;

const stamp = `${process.pid}-${Date.now()}`;
const ETC_DIR = "/etc/studio-runner";
const ETC_ENV = join(ETC_DIR, "env");
const etcExisted = existsSync(ETC_DIR);
const etcEnvExisted = existsSync(ETC_ENV);
afterAll(() => {
  if (!etcEnvExisted) rmSync(ETC_ENV, { force: true });
  if (!etcExisted) rmSync(ETC_DIR, { recursive: true, force: true });
});

/** A library whose constructor appends "<pid> <exe>" to `mark` (a host path the sandbox cannot write). */
function canaryLibrary(dir: string, mark: string): string {
  // (Beside the workspace, not in it: the test's tar helper writes text only. An absolute path in
  // LD_PRELOAD reaches a launcher exactly as ./evil.so from the workspace would.)
  const src = join(dir, "evil.c");
  writeFileSync(
    src,
    `#include <stdio.h>
#include <unistd.h>
unsigned int la_version(unsigned int v) { return v; }
__attribute__((constructor)) static void canary(void) {
  char exe[512] = {0};
  readlink("/proc/self/exe", exe, sizeof exe - 1);
  FILE *f = fopen(${JSON.stringify(mark)}, "a");
  if (f) { fprintf(f, "%d %s\\n", (int)getpid(), exe); fclose(f); }
}
`,
  );
  const so = join(dir, "evil.so");
  const r = spawnSync("gcc", ["-shared", "-fPIC", "-o", so, src], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`gcc: ${r.stderr}`);
  chmodSync(so, 0o755);
  return so;
}

const JOB = `import json, os, subprocess, sys, time
marker = sys.argv[-1]
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
out = mapping["modeldir"]
os.makedirs(out, exist_ok=True)
seen = {"argv": sys.argv[1:]}
def grab(name, path):
    try:
        with open(path, "rb") as f: seen[name] = f.read().decode("latin1")
    except Exception as e:
        seen[name] = "denied " + type(e).__name__
for name, path in json.loads(os.environ["STEAL"]).items(): grab(name, path)
procs = {}
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    for f in ("cmdline", "environ"):
        try:
            with open(f"/proc/{p}/{f}", "rb") as fh: procs[f"{p}/{f}"] = fh.read().decode("latin1")
        except Exception as e:
            procs[f"{p}/{f}"] = "denied " + type(e).__name__
seen["procs"] = procs
try: seen["tmp"] = os.listdir("/tmp")
except Exception as e: seen["tmp"] = "denied"
r = subprocess.run(["unshare", "-U", "true"], capture_output=True)
if r.returncode == 0: open(os.path.join(out, "unshare-worked"), "w").write("yes")
with open(os.path.join(out, "stolen.json"), "w") as f: json.dump(seen, f)
open("job-file.txt", "w").write("written by the job")
# a sleeper that leaves the job's session and parent (double fork, setsid)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker + "-sleeper"])
    os._exit(0)
print("job ready", flush=True)
time.sleep(6)
print("job done", flush=True)
`;

const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};
const status = (pid: number) =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.split(":")[0], l.slice(l.indexOf(":") + 1).trim()]),
  );

describe("isolation: launchers and what a job can see (default settings: --sandbox auto)", () => {
  test.skipIf(!runnable)(
    "a hostile job: env canaries never load outside, launchers carry no job env, " +
      "`--` args stay args, uid nobody without caps, runner files unreadable, no " +
      "process left",
    async () => {
      const sb = await makeSandbox("iso-launchers", { cacheDir: SHARED_CACHE });
      // Only the sandbox keeps these from the job: world-readable on the host.
      chmodSync(sb.dir, 0o755);
      const mark = join(sb.dir, "LOADED-OUTSIDE");
      const evil = canaryLibrary(sb.dir, mark);
      const config = join(sb.dir, "runner.yaml");
      writeFileSync(config, `# RUNNER-CONFIG-${stamp}\nmax-deliveries: 3\n`, { mode: 0o644 });
      const keys = join(sb.dir, "keys");
      cpSync(join(REPO, "test/fixtures/envelope/test-only-keys"), keys, { recursive: true });
      spawnSync("chmod", ["-R", "a+rX", keys]);
      const keyFile = join(keys, "runner/encryption/ssh-privatekey");
      const keyText = readFileSync(keyFile, "utf8");
      mkdirSync(ETC_DIR, { recursive: true });
      if (!etcEnvExisted) writeFileSync(ETC_ENV, `AWS_SECRET_ACCESS_KEY=ETC-ENV-${stamp}\n`, { mode: 0o644 });
      const etcText = readFileSync(ETC_ENV, "utf8");
      // another tenant on the host: a process and a /tmp file the job must not see
      const tenantMarker = `other-tenant-${stamp}`;
      const tenant = Bun.spawn(["sh", "-c", "sleep 120", tenantMarker], { stdout: "ignore" });
      writeFileSync(`/tmp/${tenantMarker}`, "other tenant's temp file");

      const marker = `iso-launch-${stamp}`;
      const jobEnvCanary = `JOB-ENV-CANARY-${stamp}`;
      const exp = simpleExperiment(sb.storageRoot, { "main.py": JOB }, (m) => {
        m.experiment.pythonver = "3.11";
        m.experiment.args = ["--bind", "/", "/tmp/escape", "--chdir", "/", "--setenv", "X", "Y", marker];
        m.config.env = {
          LD_PRELOAD: evil,
          LD_AUDIT: evil,
          PYTHONPATH: sb.dir,
          PYTHONSTARTUP: join(sb.dir, "startup.py"),
          PIP_INDEX_URL: "http://127.0.0.1:9/simple",
          JOB_ENV_CANARY: jobEnvCanary,
          STEAL: JSON.stringify({
            key: keyFile,
            etcEnv: ETC_ENV,
            config,
            shadow: "/etc/shadow",
            tenantTmp: `/tmp/${tenantMarker}`,
          }),
        };
      });
      writeFileSync(join(sb.dir, "startup.py"), `open(${JSON.stringify(mark)}, "a").write("pythonstartup\\n")\n`);
      enqueue(sb.queueRoot, "local_iso_launchers", exp.message);
      const runner = new RunnerProcess(
        sb,
        [
          "--config",
          config,
          "--encrypt-dir",
          join(keys, "runner"),
          "--request-signatures-dir",
          join(keys, "signatures"),
          "--clear-text-messages=true", // this request is plain; the keys are here to be hidden
          "--limit-tasks",
          "1",
        ],
        { AWS_SECRET_ACCESS_KEY: `RUNNER-ENV-SECRET-${stamp}` },
      );
      try {
        await runner.waitForLog(/experiments run in a bubblewrap sandbox/, 60_000);
        // While the job runs: look at it and at its launchers from the host.
        const jobPid = await waitFor(
          "the job's python on the host",
          () =>
            processesWith(marker).find(
              (p) => comm(p).startsWith("python") && !readFileSync(`/proc/${p}/cmdline`, "utf8").includes("-sleeper"),
            ),
          150_000,
        );
        expect(jobPid).toBeDefined();
        const st = status(jobPid!);
        console.log(
          "the job seen from the host:",
          JSON.stringify({
            pid: jobPid,
            Uid: st.Uid,
            Gid: st.Gid,
            CapEff: st.CapEff,
            CapBnd: st.CapBnd,
            NoNewPrivs: st.NoNewPrivs,
          }),
        );
        expect(st.Uid!.split(/\s+/)).toEqual(["65534", "65534", "65534", "65534"]);
        expect(st.Gid!.split(/\s+/)[0]).toBe("65534");
        expect(st.CapEff).toBe("0000000000000000");
        expect(st.CapPrm).toBe("0000000000000000");
        expect(st.NoNewPrivs).toBe("1");
        // The launchers (both bwrap stages, setpriv while it lives): no job env on their command
        // line or in their environment; the request's "--" arguments only after the last "--".
        const launchers = processesWith(marker).filter((p) => ["bwrap", "setpriv", "sh"].includes(comm(p)));
        expect(launchers.length).toBeGreaterThan(0);
        for (const p of launchers) {
          const cmdline = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
          const environ = readFileSync(`/proc/${p}/environ`, "utf8");
          expect(cmdline.join(" ")).not.toContain(jobEnvCanary);
          expect(environ).not.toContain(jobEnvCanary);
          expect(environ).not.toContain("LD_PRELOAD");
          expect(environ).not.toContain(`RUNNER-ENV-SECRET-${stamp}`);
          const lastDashes = cmdline.lastIndexOf("--");
          expect(cmdline.indexOf("/tmp/escape")).toBeGreaterThan(lastDashes);
        }
        // The job prints "job ready" once its file is written and its sleeper forked.
        await waitFor('the job\'s "job ready" in its live output', () => jobPrinted(sb.workDir, "job ready"));
        const attempts = join(sb.workDir, "studio-runner", exp.key);
        const attemptDir = join(attempts, readdirSync(attempts)[0]!);
        expect(statSync(join(attemptDir, "workspace", "job-file.txt")).uid).toBe(65534);
        expect(statSync(join(attemptDir, "workspace")).uid).toBe(65534);
        expect(statSync(attemptDir).uid).toBe(65534);
        expect(statSync(join(attemptDir, "artifact-mapping.json")).uid).toBe(0); // the runner's file, read-only
        expect(await runner.exited).toBe(0);
      } finally {
        await runner.stop();
        tenant.kill();
        rmSync(`/tmp/${tenantMarker}`, { force: true });
      }

      // The canary library ran nowhere outside the sandbox (bwrap, setpriv, sh); PYTHONSTARTUP neither.
      expect(existsSync(mark) ? readFileSync(mark, "utf8") : "").toBe("");
      // Storage holds nothing of the runner's.
      const modeldir = join(exp.experimentDir, "modeldir.tar");
      const stolen = JSON.parse(tarMember(modeldir, "stolen.json") || "{}");
      const all = JSON.stringify(stolen);
      expect(Object.keys(stolen)).toContain("procs");
      for (const secret of [
        keyText.trim().split("\n")[1]!,
        `ETC-ENV-${stamp}`,
        etcText.trim(),
        `RUNNER-CONFIG-${stamp}`,
        `RUNNER-ENV-SECRET-${stamp}`,
        "root:",
        "other tenant's temp file",
      ]) {
        expect([secret, all.includes(secret)]).toEqual([secret, false]);
      }
      // other tenants: their processes are not in the job's /proc, their /tmp is not its /tmp
      const cmdlines = Object.entries<string>(stolen.procs)
        .filter(([k]) => k.endsWith("/cmdline"))
        .map(([, v]) => v);
      expect(cmdlines.some((c) => c.includes("sleep 120"))).toBe(false);
      expect(cmdlines.some((c) => c.includes("--queue-root"))).toBe(false); // not the runner either
      // Its /tmp is its own: empty but for the mount points of its own directories where they lie
      // under /tmp (a checkout in /tmp/x shows "x"), never the other tenant's file.
      const ownMounts = [sb.workDir, sb.cacheDir].filter((d) => d.startsWith("/tmp/")).map((d) => d.split("/")[2]!);
      expect(stolen.tmp).toEqual([...new Set(ownMounts)]);
      expect(stolen.tmp).not.toContain(tenantMarker);
      expect(stolen.argv).toEqual(["--bind", "/", "/tmp/escape", "--chdir", "/", "--setenv", "X", "Y", marker]);
      expect(tarNames(modeldir).some((n) => n.includes("unshare-worked"))).toBe(false);
      // The experiment finished; nothing of it is left running.
      const log = tarMember(join(exp.experimentDir, "output.tar"));
      expect(log).toContain("in a bubblewrap sandbox as 65534:65534");
      expect(log).toContain("job done");
      expect(log).toContain("experiment exited with code 0");
      expect(runner.stderr).toContain("--sandbox auto");
      const left = processesWith(marker);
      for (const p of left) process.kill(p, "SIGKILL");
      expect(left).toEqual([]);
    },
    240_000,
  );

  test.skipIf(!runnable)(
    "--sandbox none (explicit): the canary loads in the job itself only, never in " +
      "the cgroup sh, setpriv or the env loader",
    async () => {
      const sb = await makeSandbox("iso-launchers-none", { cacheDir: SHARED_CACHE });
      const mark = join(sb.dir, "LOADED");
      const evil = canaryLibrary(sb.dir, mark);
      const exp = simpleExperiment(
        sb.storageRoot,
        { "main.py": "import os; print('home', os.environ['HOME'], flush=True)" },
        (m) => {
          m.experiment.pythonver = "3.11";
          m.experiment.resources_needed = { ...(m.experiment.resources_needed ?? {}), ram: "2Gb", cpus: 1 };
          m.config.env = { LD_PRELOAD: evil, LD_AUDIT: evil };
        },
      );
      enqueue(sb.queueRoot, "local_iso_launchers_none", exp.message);
      const runner = new RunnerProcess(sb, ["--sandbox", "none", "--limit-tasks", "1"]);
      expect(await runner.exited).toBe(0);
      expect(runner.stderr).toContain("--sandbox none: experiments are NOT isolated");
      const loaded = (existsSync(mark) ? readFileSync(mark, "utf8") : "").trim().split("\n").filter(Boolean);
      console.log("canary loaded in:", JSON.stringify(loaded));
      // the control: the canary does work (the job's python loaded it, outside any sandbox) …
      expect(loaded.length).toBeGreaterThan(0);
      // … and only there
      for (const line of loaded) expect(line).toMatch(/ \S*python[0-9.]*$/);
      expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("NOT sandboxed (--sandbox none)");
    },
    180_000,
  );

  test.skipIf(!runnable)(
    "without a working bwrap: auto warns loudly and runs unsandboxed, bwrap refuses to start",
    async () => {
      const sb = await makeSandbox("iso-launchers-nobwrap");
      const env = { PATH: "/nonexistent-bin" };
      const auto = new RunnerProcess(sb, ["--limit-idle-duration", "1s"], env);
      expect(await auto.exited).toBe(0);
      expect(auto.stderr).toContain("--sandbox auto: bubblewrap does not work here, experiments are NOT isolated");
      const strict = new RunnerProcess(sb, ["--sandbox", "bwrap", "--limit-idle-duration", "1s"], env);
      expect(await strict.exited).toBe(2);
      expect(strict.stderr).toContain("bwrap (bubblewrap) is not on the PATH");
    },
    60_000,
  );
});
