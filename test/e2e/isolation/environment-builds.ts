// Environment builds (issue #14, holes 2 and 5's .pth), from the compiled binary, checked on the
// host: requirement lines that are URLs or pip options are refused naming the line; a package whose
// in-tree build backend attacks the host runs sandboxed (nothing written outside its venv, nothing
// of the runner's config or cache read); a venv a job changed in --sandbox none is rebuilt before
// the next experiment runs it; in the sandbox a job cannot change its venv at all.

import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { manifestDigest, verifyManifest } from "../../../src/env/venv-manifest.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../../helpers/e2e.ts";

const HAVE_BWRAP = existsSync("/usr/bin/bwrap");
const sandboxRunnable = HAVE_BWRAP || !!process.env.CI;

/** The venv directories of a cache (one per built environment). */
const venvsIn = (sb: Sandbox) => {
  const root = join(sb.cacheDir, "venvs");
  return existsSync(root)
    ? readdirSync(root)
        .filter((n) => !n.includes(".") && existsSync(join(root, n, "bin", "python")))
        .map((n) => join(root, n))
    : [];
};
const sitePackages = (venv: string) => {
  const lib = join(venv, "lib");
  const py = readdirSync(lib).find((n) => n.startsWith("python"))!;
  return join(lib, py, "site-packages");
};

describe("environment builds (isolation)", () => {
  test("requirement lines that are URLs, paths or pip options are refused, naming the field and the line; nothing is built or run", async () => {
    const sb = await makeSandbox("iso-env-lines");
    const ran = join(sb.dir, "script-ran");
    const script = `open(${JSON.stringify(ran)}, "w").write("ran")\n`;
    const cases = [
      { field: "experiment.pythonenv", line: `evil @ file://${sb.dir}/evil-1.0.tar.gz` },
      { field: "config.pip", line: "-e git+https://example.invalid/evil.git#egg=evil" },
      { field: "config.pip", line: "--index-url http://127.0.0.1:9/simple" },
      { field: "experiment.pythonenv", line: "-r /etc/passwd" },
    ];
    const ids = cases.map((c) => {
      const exp = simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
        delete m.config.database;
        m.experiment.pythonver = "3.11";
        if (c.field === "config.pip") m.config.pip = ["six", c.line];
        else m.experiment.pythonenv = ["six==1.16.0", c.line];
      });
      return enqueue(sb.queueRoot, "local_lines", exp.message);
    });
    const runner = new RunnerProcess(sb, ["--limit-idle-duration", "3s", "--sandbox", "none"]);
    expect(await runner.exited).toBe(0);
    cases.forEach((c, i) => {
      const reasonFile = join(sb.queueRoot, ".failed", "local_lines", `${ids[i]}.reason.json`);
      expect(existsSync(join(sb.queueRoot, ".failed", "local_lines", ids[i]!))).toBe(true);
      const reason = readFileSync(reasonFile, "utf8");
      expect(reason).toContain(c.field);
      expect(reason).toContain(JSON.stringify(JSON.stringify(c.line)).slice(1, -1)); // the line, as the reason quotes it
      expect(reason).toMatch(/not accepted|refused/);
    });
    expect(filesIn(join(sb.queueRoot, "local_lines"))).toEqual([]);
    expect(existsSync(ran)).toBe(false);
    expect(venvsIn(sb)).toEqual([]); // refused before any build
  }, 180_000);

  test("an editable or VCS line in the client's freeze is skipped and said so: it never reaches pip, the rest is installed", async () => {
    const sb = await makeSandbox("iso-env-editable");
    const line = `-e git+file://${sb.dir}/evil.git#egg=evil`;
    const exp = simpleExperiment(sb.storageRoot, { "main.py": "import six\nprint('six', six.__version__)\n" }, (m) => {
      delete m.config.database;
      m.experiment.pythonver = "3.11";
      m.experiment.pythonenv = ["six==1.17.0", line, `evil @ git+file://${sb.dir}/evil.git`];
    });
    enqueue(sb.queueRoot, "local_editable", exp.message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    expect(await runner.exited).toBe(0);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain(`skipped ${line}: an editable or VCS line`);
    expect(log).toContain("six 1.17.0");
    // What pip was given: the environment's record lists only the pin.
    const [venv] = venvsIn(sb);
    const marker = JSON.parse(readFileSync(join(venv!, ".studio-runner-venv.json"), "utf8"));
    expect(marker.requirements).toEqual(["six==1.17.0"]);
    expect(existsSync(join(sb.dir, "evil.git"))).toBe(false);
  }, 180_000);

  test.skipIf(!sandboxRunnable)(
    "an sdist whose in-tree build backend attacks the host builds sandboxed: no host write, no config or cache read; the job cannot change its venv",
    async () => {
      const sb = await makeSandbox("iso-env-sdist");
      const hostMarker = join(sb.dir, "backend-wrote-this");
      const hostCopy = join(sb.dir, "backend-copy.txt");
      const canary = `CONFIG-CANARY-${crypto.randomUUID()}`;
      const configFile = join(sb.dir, "runner.yaml");
      writeFileSync(configFile, `# ${canary}\nmax-cores: 2\n`);
      // Another venv in the cache the backend must not see.
      const other = join(sb.cacheDir, "venvs", "0therv3nv0000000000000000");
      mkdirSync(other, { recursive: true });
      writeFileSync(join(other, "OTHER-VENV-CANARY"), "OTHER-VENV-CANARY");

      // The sdist: a backend in its own tree (backend-path) that attacks while building the wheel.
      const src = join(sb.dir, "evilpkg-1.0");
      mkdirSync(join(src, "_backend"), { recursive: true });
      writeFileSync(
        join(src, "pyproject.toml"),
        `[build-system]\nrequires = []\nbuild-backend = "evilbackend"\nbackend-path = ["_backend"]\n\n[project]\nname = "evilpkg"\nversion = "1.0"\n`,
      );
      writeFileSync(join(src, "PKG-INFO"), "Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n");
      writeFileSync(
        join(src, "_backend", "evilbackend.py"),
        `import os, sys, zipfile, base64, hashlib
def _attack():
    got = []
    try:
        open(${JSON.stringify(hostMarker)}, "w").write("written by the build backend")
        got.append("host-write: ok")
    except Exception as e:
        got.append("host-write: denied " + type(e).__name__)
    try:
        got.append("config: " + open(${JSON.stringify(configFile)}).read())
    except Exception as e:
        got.append("config: denied " + type(e).__name__)
    for d in (${JSON.stringify(join(sb.cacheDir, "venvs"))}, ${JSON.stringify(other)}, ${JSON.stringify(sb.cacheDir)}):
        try:
            got.append(d + ": " + " ".join(os.listdir(d)))
        except Exception as e:
            got.append(d + ": denied " + type(e).__name__)
    try:
        got.append("other venv: " + open(${JSON.stringify(join(other, "OTHER-VENV-CANARY"))}).read())
    except Exception as e:
        got.append("other venv: denied " + type(e).__name__)
    got.append("uid: %d" % os.getuid())
    text = "\\n".join(got) + "\\n"
    venv = os.path.dirname(os.path.dirname(sys.executable))
    for path in (${JSON.stringify(hostCopy)}, os.path.join(venv, "backend-copy.txt")):
        try:
            open(path, "w").write(text)
        except Exception:
            pass
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _attack()
    name = "evilpkg-1.0-py3-none-any.whl"
    files = {"evilpkg/__init__.py": b"VALUE = 'evil'\\n",
             "evilpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: evilpkg\\nVersion: 1.0\\n",
             "evilpkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, data in files.items():
            z.writestr(p, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (p, digest, len(data)))
        record.append("evilpkg-1.0.dist-info/RECORD,,")
        z.writestr("evilpkg-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
`,
      );
      const links = join(sb.dir, "links");
      mkdirSync(links, { recursive: true });
      const tar = spawnSync("tar", ["czf", join(links, "evilpkg-1.0.tar.gz"), "-C", sb.dir, "evilpkg-1.0"]);
      expect(tar.status).toBe(0);

      // The job tries to plant a .pth in its venv (read-only in the sandbox).
      const jobScript = `import evilpkg, site, os
p = os.path.join(site.getsitepackages()[0], "zzz.pth")
try:
    open(p, "w").write("import os\\n")
    print("venv write: ok", flush=True)
except Exception as e:
    print("venv write: denied", type(e).__name__, flush=True)
print("evilpkg", evilpkg.VALUE, flush=True)
`;
      const exp = simpleExperiment(sb.storageRoot, { "main.py": jobScript }, (m) => {
        delete m.config.database;
        m.experiment.pythonver = "3.11";
        m.experiment.pythonenv = ["evilpkg==1.0"];
      });
      enqueue(sb.queueRoot, "local_sdist", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--sandbox", "bwrap", "--config", configFile], {
        PIP_FIND_LINKS: links,
      });
      expect(await runner.exited).toBe(0);
      const log = tarMember(join(exp.experimentDir, "output.tar"));
      expect(log).toContain("building in a bubblewrap sandbox");

      const [venv] = venvsIn(sb);
      expect(venv).toBeDefined();
      // The backend ran (its copy inside the venv proves it) ...
      const copy = readFileSync(join(venv!, "backend-copy.txt"), "utf8");
      expect(copy).toContain("host-write: denied");
      // ... but wrote nothing on the host outside the venv, and read neither the config nor the cache.
      expect(existsSync(hostMarker)).toBe(false);
      expect(existsSync(hostCopy)).toBe(false);
      expect(copy).not.toContain(canary);
      expect(copy).not.toContain("OTHER-VENV-CANARY");
      for (const line of copy.split("\n").filter((l) => l.startsWith(sb.cacheDir)))
        expect(line).toMatch(/: denied \w+$/); // no listing
      if (process.getuid?.() === 0) expect(copy).not.toContain("uid: 0\n");
      // The venv is the runner's now: no group/world write anywhere, no setuid/setgid bits.
      const bad = spawnSync("find", [venv!, "-not", "-type", "l", "(", "-perm", "/6022", ")"], {
        encoding: "utf8",
      }).stdout.trim();
      expect(bad).toBe("");

      // The job ran with the package, and could not change its venv.
      expect(log).toContain("evilpkg evil");
      expect(existsSync(join(sitePackages(venv!), "zzz.pth"))).toBe(false);
      const manifest = readFileSync(join(venv!, ".studio-runner-manifest.json"));
      expect(await verifyManifest(venv!, manifestDigest(manifest), manifest)).toBeUndefined();
    },
    600_000,
  );

  test("--sandbox none: a .pth a job plants in its venv is never run; the venv is rebuilt and the log says so", async () => {
    const sb = await makeSandbox("iso-env-pth");
    const pthMarker = join(sb.dir, "pth-ran");
    const pth = `import os; open(${JSON.stringify(pthMarker)}, "w").write("the planted .pth ran")\n`;
    const plant = `import site, os
p = os.path.join(site.getsitepackages()[0], "zzz.pth")
try:
    open(p, "w").write(${JSON.stringify(pth)})
    print("planted", p, flush=True)
except Exception as e:
    print("could not plant:", type(e).__name__, flush=True)
`;
    const first = simpleExperiment(sb.storageRoot, { "main.py": plant }, (m) => {
      delete m.config.database;
      m.experiment.pythonver = "3.11";
      m.experiment.pythonenv = [];
    });
    enqueue(sb.queueRoot, "local_pth", first.message);
    let runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--sandbox", "none"]);
    expect(await runner.exited).toBe(0);
    const [venv] = venvsIn(sb);
    expect(venv).toBeDefined();
    const planted = join(sitePackages(venv!), "zzz.pth");
    // A job running as the runner's uid can write there; one running as --job-user cannot, and a
    // same-uid job is simulated by planting the same file from the host.
    if (!existsSync(planted)) writeFileSync(planted, pth);
    expect(existsSync(pthMarker)).toBe(false);

    const second = simpleExperiment(
      sb.storageRoot,
      { "main.py": "print('second experiment ran', flush=True)\n" },
      (m) => {
        delete m.config.database;
        m.experiment.pythonver = "3.11";
        m.experiment.pythonenv = [];
      },
    );
    enqueue(sb.queueRoot, "local_pth", second.message);
    runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--sandbox", "none"]);
    expect(await runner.exited).toBe(0);
    const log = tarMember(join(second.experimentDir, "output.tar"));
    expect(log).toContain("second experiment ran");
    expect(existsSync(pthMarker)).toBe(false);
    expect(existsSync(planted)).toBe(false);
    expect(runner.stderr).toMatch(/python environment \S+ was changed after it was built \(.*\); rebuilding it/);
    expect(log).toContain("rebuilding it");
  }, 600_000);
});
