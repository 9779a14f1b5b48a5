// Boundary: everything the runner reads or writes where a job (or another local user) can write —
// uploads of mutable artifacts, `_results/_results.json`, and local queue message files (issue #14
// hole 3 and 12's symlinked message; attack class 11). Each attack runs from the compiled binary
// and is checked on the host: the tar in storage, the host file, the failed place, the logs.

import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../../helpers/e2e.ts";

const AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYUPLOADSSECRET";
const AMQP_PASSWORD = "amqp-pa55w0rd-never-logged";

/** A hostile experiment: the script, its env, and the artifacts it gets (a `_results` one added). */
function hostile(sb: Sandbox, script: string, env: Record<string, string>, edit?: (m: Record<string, any>) => void) {
  return simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
    delete m.config.database;
    m.experiment.pythonver = "3.11";
    m.config.env = env;
    const modeldir = m.experiment.artifacts.modeldir;
    m.experiment.artifacts._results = {
      ...modeldir,
      key: modeldir.key.replace(/modeldir\.tar$/, "_results.tar"),
      qualified: modeldir.qualified.replace(/modeldir\.tar$/, "_results.tar"),
      mutable: true,
      unpack: true,
    };
    edit?.(m);
  });
}

/** Every byte stored for the experiment: the tars as they are now. */
function storedBytes(experimentDir: string): Buffer {
  const parts = filesIn(experimentDir).map((n) => readFileSync(join(experimentDir, n)));
  return Buffer.concat(parts);
}

const tarVerbose = (file: string) => spawnSync("tar", ["-tvf", file], { encoding: "utf8" }).stdout;

const MAPPING = `
import json, os, sys, time
m = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
`;

describe("uploads never leave the artifact's directory (hole 3)", () => {
  test("(a) modeldir replaced by a symlink to the queue root: another queue's pending request, with its AWS keys, is not uploaded; nothing lost", async () => {
    const sb = await makeSandbox("iso-uploads-a", { cacheDir: SHARED_CACHE });
    // Someone else's pending request, in a queue this runner does not serve.
    const other = enqueue(sb.queueRoot, "local_other", {
      experiment: { key: "someone-else" },
      config: { env: { AWS_SECRET_ACCESS_KEY: AWS_SECRET } },
    });
    const exp = hostile(
      sb,
      `${MAPPING}
import shutil
d = m["modeldir"]
open(os.path.join(d, "model.json"), "w").write("{}")
shutil.rmtree(d)
os.symlink(os.environ["QUEUE_ROOT"], d)
print("modeldir now points at the queue root", flush=True)
`,
      { QUEUE_ROOT: sb.queueRoot },
    );
    enqueue(sb.queueRoot, "local_a", exp.message);
    const r = new RunnerProcess(sb, ["--queue-mismatch", "^local_other$", "--limit-idle-duration", "3s"]);
    expect(await r.exited).toBe(0);
    // The experiment finished (the job's own act only hurts its own modeldir) …
    expect(filesIn(join(sb.queueRoot, "local_a"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".failed", "local_a"))).toEqual([]);
    // … and storage holds nothing of the queue root: not the secret, not the other request's name.
    const stored = storedBytes(exp.experimentDir);
    expect(stored.includes(Buffer.from(AWS_SECRET))).toBe(false);
    expect(stored.includes(Buffer.from(other))).toBe(false);
    if (existsSync(join(exp.experimentDir, "modeldir.tar")))
      expect(tarVerbose(join(exp.experimentDir, "modeldir.tar"))).not.toContain(other);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("modeldir now points at the queue root");
    expect(r.stderr).toMatch(/artifact modeldir: its directory is a symbolic link; not uploaded/);
    // Nothing lost: the other request is still pending where it was.
    expect(filesIn(join(sb.queueRoot, "local_other"))).toEqual([other]);
    expect(readFileSync(join(sb.queueRoot, "local_other", other), "utf8")).toContain(AWS_SECRET);
    expect(r.stderr).not.toContain(AWS_SECRET);
  }, 180_000);

  test("(b) _results/_results.json a symlink to a host file, and _results itself a symlink to a host dir: neither written; _results.tar still stored", async () => {
    const sb = await makeSandbox("iso-uploads-b", { cacheDir: SHARED_CACHE });
    const hostFile = join(sb.dir, "host-file.conf");
    writeFileSync(hostFile, "precious host content\n");
    const hostDir = join(sb.dir, "host-dir");
    mkdirSync(hostDir);
    const fileLink = hostile(
      sb,
      `${MAPPING}
d = m["_results"]
os.makedirs(d, exist_ok=True)
os.symlink(os.environ["HOST_FILE"], os.path.join(d, "_results.json"))
print("planted _results.json", flush=True)
`,
      { HOST_FILE: hostFile },
    );
    const dirLink = hostile(
      sb,
      `${MAPPING}
import shutil
d = m["_results"]
shutil.rmtree(d, ignore_errors=True)
os.symlink(os.environ["HOST_DIR"], d)
print("planted _results", flush=True)
`,
      { HOST_DIR: hostDir },
    );
    enqueue(sb.queueRoot, "local_b", fileLink.message);
    enqueue(sb.queueRoot, "local_b", dirLink.message);
    const r = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);
    expect(await r.exited).toBe(0);
    expect(readFileSync(hostFile, "utf8")).toBe("precious host content\n");
    expect(lstatSync(hostFile).isFile()).toBe(true);
    expect(readdirSync(hostDir)).toEqual([]);
    for (const exp of [fileLink, dirLink]) {
      expect(filesIn(join(sb.queueRoot, ".failed", "local_b"))).toEqual([]);
      const results = JSON.parse(tarMember(join(exp.experimentDir, "_results.tar"), "_results.json"));
      expect(results.experiment_id).toBe(exp.key);
      expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("planted");
    }
    expect(filesIn(join(sb.queueRoot, "local_b"))).toEqual([]);
  }, 180_000);

  test("(c) a symlink to /etc/passwd in output is stored as a symlink member; the file's content is not", async () => {
    const sb = await makeSandbox("iso-uploads-c", { cacheDir: SHARED_CACHE });
    const exp = hostile(
      sb,
      `${MAPPING}
os.symlink("/etc/passwd", os.path.join(m["output"], "passwd-link"))
os.symlink("/etc", os.path.join(m["modeldir"], "etc-link"))
print("links made", flush=True)
`,
      {},
    );
    enqueue(sb.queueRoot, "local_c", exp.message);
    const r = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);
    expect(await r.exited).toBe(0);
    expect(tarVerbose(join(exp.experimentDir, "output.tar"))).toMatch(/^l.* passwd-link -> \/etc\/passwd$/m);
    expect(tarVerbose(join(exp.experimentDir, "modeldir.tar"))).toMatch(/^l.* etc-link -> \/etc$/m);
    const passwd = readFileSync("/etc/passwd", "utf8").split("\n")[0]!;
    expect(storedBytes(exp.experimentDir).includes(Buffer.from(passwd))).toBe(false);
    expect(tarMember(join(exp.experimentDir, "output.tar"), "output")).toContain("links made");
  }, 180_000);

  test("(d) a job swapping a file and a symlink to a host secret while checkpoints run every second: no stored tar ever holds the secret", async () => {
    const sb = await makeSandbox("iso-uploads-d", { cacheDir: SHARED_CACHE });
    const secretDir = join(sb.dir, "host-secrets");
    mkdirSync(secretDir);
    const secretFile = join(secretDir, "credentials");
    writeFileSync(secretFile, `[default]\naws_secret_access_key = ${AWS_SECRET}\n`);
    const exp = hostile(
      sb,
      `${MAPPING}
md, tb = m["modeldir"], m["tb"]
end = time.time() + float(os.environ["SWAP_S"])
n = 0
while time.time() < end:
    # a regular file and a link to the secret, swapped in place (rename is atomic)
    os.symlink(os.environ["SECRET_FILE"], os.path.join(md, "l.tmp"))
    os.replace(os.path.join(md, "l.tmp"), os.path.join(md, "model.bin"))
    # the tb directory itself swapped with a link to the secret's directory
    os.symlink(os.environ["SECRET_DIR"], tb + ".l")
    os.rename(tb, tb + ".d")
    os.rename(tb + ".l", tb)
    time.sleep(0.03)
    open(os.path.join(md, "f.tmp"), "w").write("weights %d\\n" % n)
    os.replace(os.path.join(md, "f.tmp"), os.path.join(md, "model.bin"))
    os.rename(tb, tb + ".l")
    os.rename(tb + ".d", tb)
    os.unlink(tb + ".l")
    open(os.path.join(tb, "events"), "w").write("event %d\\n" % n)
    time.sleep(0.03)
    n += 1
print("swapped", n, "times", flush=True)
`,
      { SECRET_FILE: secretFile, SECRET_DIR: secretDir, SWAP_S: "6" },
      (m) => {
        m.config.saveWorkspaceFrequency = "1s";
      },
    );
    enqueue(sb.queueRoot, "local_d", exp.message);
    const r = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);
    // Every version that lands in storage while the job runs is looked at, not only the last.
    let looks = 0;
    let leaked = false;
    const versions = new Set<string>();
    while (r.child.exitCode === null) {
      if (storedBytes(exp.experimentDir).includes(Buffer.from(AWS_SECRET))) leaked = true;
      const modeldir = join(exp.experimentDir, "modeldir.tar");
      if (existsSync(modeldir))
        versions.add(new Bun.CryptoHasher("sha256").update(readFileSync(modeldir)).digest("hex"));
      looks++;
      await Bun.sleep(50);
    }
    expect(await r.exited).toBe(0);
    expect(leaked).toBe(false);
    expect(storedBytes(exp.experimentDir).includes(Buffer.from(AWS_SECRET))).toBe(false);
    expect(looks).toBeGreaterThan(10);
    expect(versions.size).toBeGreaterThanOrEqual(2); // checkpoints really ran while the job swapped
    expect(tarMember(join(exp.experimentDir, "output.tar"), "output")).toMatch(/swapped \d+ times/);
    expect(readFileSync(secretFile, "utf8")).toContain(AWS_SECRET);
    expect(filesIn(join(sb.queueRoot, "local_d"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".failed", "local_d"))).toEqual([]);
  }, 240_000);
});

describe("local queue message files (hole 12)", () => {
  test("(e) a message that is a symlink to a file with an amqp URL and password: not run, kept in the failed place, the password nowhere", async () => {
    const sb = await makeSandbox("iso-uploads-e", { cacheDir: SHARED_CACHE });
    const target = join(sb.dir, "runner.env");
    const url = `amqp://runner:${AMQP_PASSWORD}@rabbit.internal:5672/%2f`;
    writeFileSync(target, `${url}\n`);
    mkdirSync(join(sb.queueRoot, "local_e"), { recursive: true });
    const linkName = crypto.randomUUID();
    symlinkSync(target, join(sb.queueRoot, "local_e", linkName));
    // A good request behind it still runs.
    const good = hostile(sb, `print("the good one ran", flush=True)\n`, {});
    enqueue(sb.queueRoot, "local_e", good.message);
    const r = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);
    expect(await r.exited).toBe(0);
    const failed = join(sb.queueRoot, ".failed", "local_e");
    expect(lstatSync(join(failed, linkName)).isSymbolicLink()).toBe(true);
    const reason = readFileSync(join(failed, `${linkName}.reason.json`), "utf8");
    expect(reason).toContain("symbolic link");
    for (const text of [reason, r.stderr, r.stdout]) {
      expect(text).not.toContain(AMQP_PASSWORD);
      expect(text).not.toContain("rabbit.internal");
    }
    expect(readFileSync(target, "utf8")).toBe(`${url}\n`);
    expect(tarMember(join(good.experimentDir, "output.tar"), "output")).toContain("the good one ran");
    expect(filesIn(join(sb.queueRoot, "local_e"))).toEqual([]);
  }, 180_000);
});
