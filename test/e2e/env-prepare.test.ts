// `studio-runner env prepare | list | prune` and the run flags that go with them, each checked from
// the host (the venv cache's directories and files, the experiment's log in output.tar, the
// runner's stderr), not from the runner's word alone:
//  1. an environment prepared from a requirements file is listed as prepared, and an experiment
//     with the same pins (other order) runs in it without pip: same hash, same directory, bin/python
//     and the manifest untouched;
//  2. prune removes what it is told (a hash, --unused, --prepared, --all) and refuses bad requests;
//  3. --venv-reuse-superset: a prepared environment serves an experiment whose pins it satisfies only
//     with the flag, and never one with a pin it does not satisfy;
//  4. a prepared environment is not evicted for age (--venv-max-age) while an unprepared one is;
//  5. --max-env-builds 1 builds two new environments one after the other, --max-env-builds 2 at once;
//  6. --pip-no-index with --pip-find-links: a build takes its distributions from a wheelhouse only.

import { describe, expect, test } from "bun:test";
import { appendFileSync, copyFileSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  runBinary,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";

const QUEUE = "local_envprep";
const HASH = /^[0-9a-f]{24}$/;

/** Prints the environment it runs in and the version of each distribution named in its args. */
const SCRIPT = [
  "import sys, importlib.metadata as md",
  "print('prefix', sys.prefix)",
  "for name in sys.argv[1:]:",
  "    print('have', name, md.version(name))",
  "",
].join("\n");

const venvRoot = (sb: Sandbox) => join(sb.cacheDir, "venvs");
const venvDir = (sb: Sandbox, hash: string) => join(venvRoot(sb), hash);
/** Hash-named environment directories in the cache, as the host sees them. */
const venvDirs = (sb: Sandbox) =>
  filesIn(venvRoot(sb), true)
    .filter((n) => HASH.test(n))
    .sort();
const marker = (sb: Sandbox, hash: string) =>
  JSON.parse(readFileSync(join(venvDir(sb, hash), ".studio-runner-venv.json"), "utf8"));
/** How long ago the environment was last used (its marker's mtime, what `env list` reads). */
const unusedMs = (sb: Sandbox, hash: string) =>
  Date.now() - statSync(join(venvDir(sb, hash), ".studio-runner-venv.json")).mtimeMs;

/** `studio-runner env ...` against the sandbox's cache, working dir and queue root. */
function env(sb: Sandbox, ...args: string[]) {
  return runBinary(
    ["env", ...args, "--cache-dir", sb.cacheDir, "--working-dir", sb.workDir, "--queue-root", sb.queueRoot],
    { timeoutMs: 180_000 },
  );
}

function prepare(sb: Sandbox, pins: string[], ...flags: string[]): { hash: string; out: string } {
  const file = join(sb.dir, `reqs-${crypto.randomUUID()}.txt`);
  writeFileSync(file, `${pins.join("\n")}\n`);
  const r = env(sb, "prepare", "-r", file, "--python", "3.11", ...flags);
  if (r.code !== 0) throw new Error(`env prepare exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  const hash = /prepared python environment ([0-9a-f]{24}) /.exec(r.stdout)?.[1];
  if (!hash) throw new Error(`env prepare named no environment:\n${r.stdout}`);
  return { hash, out: r.stdout + r.stderr };
}

function listJson(sb: Sandbox): Array<Record<string, any>> {
  const r = env(sb, "list", "--json");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

type Exp = ReturnType<typeof simpleExperiment> & { pins: string[] };

function experiment(sb: Sandbox, pins: string[]): Exp {
  const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
    m.experiment.pythonver = "3.11";
    m.experiment.pythonenv = pins;
    m.experiment.args = pins.map((p) => p.split("==")[0]!);
    m.experiment.resources_needed = { ...m.experiment.resources_needed, cpus: 1 };
  });
  return { ...exp, pins };
}

/** Enqueue the experiments, run a runner until it has done them all, return its stderr and their logs. */
async function runAll(sb: Sandbox, exps: Exp[], flags: string[] = []): Promise<{ stderr: string; logs: string[] }> {
  for (const e of exps) enqueue(sb.queueRoot, QUEUE, e.message);
  const runner = new RunnerProcess(sb, ["--limit-tasks", String(exps.length), ...flags]);
  const code = await runner.exited;
  if (code !== 0) throw new Error(`runner exited ${code}:\n${runner.stderr}`);
  const logs = exps.map((e) => tarMember(join(e.experimentDir, "output.tar")));
  for (const [i, log] of logs.entries()) {
    expect(log).toContain("exited with code 0");
    for (const pin of exps[i]!.pins) expect(log).toContain(`have ${pin.replace("==", " ")}`);
  }
  return { stderr: runner.stderr, logs };
}

const built = (log: string) => /building python environment ([0-9a-f]{24})/.exec(log)?.[1];
const reused = (log: string) => /reusing cached python environment ([0-9a-f]{24})/.exec(log)?.[1];

/** Host-side identity of an environment: a rebuild (rm + venv + pip) changes every one of these. */
function identity(sb: Sandbox, hash: string) {
  const dir = venvDir(sb, hash);
  const d = statSync(dir);
  const py = lstatSync(join(dir, "bin", "python"));
  const manifest = statSync(join(dir, ".studio-runner-manifest.json"));
  return {
    dirIno: d.ino,
    dirMtime: d.mtimeMs,
    pythonIno: py.ino,
    pythonMtime: py.mtimeMs,
    manifestIno: manifest.ino,
    manifestMtime: manifest.mtimeMs,
  };
}

describe("env prepare, list, prune", () => {
  test("a prepared environment is listed as prepared, serves an experiment with the " +
    "same pins without pip, and prune removes what it is told", async () => {
    const sb = await makeSandbox("envprep-list");
    const pins = ["six==1.17.0", "sortedcontainers==2.4.0", "py-cpuinfo==9.0.0"];
    const p = prepare(sb, pins);
    expect(p.out).toContain(`building python environment ${p.hash}`);
    expect(p.out).toContain("asked the indexes about 3 requirement(s)");
    expect(p.out).toContain("requirements: 3 installed as pinned");
    expect(venvDirs(sb)).toEqual([p.hash]);
    const m = marker(sb, p.hash);
    expect(m.prepared).toBe(true);
    expect(m.pins.map((x: any) => [x.requirement, x.outcome])).toEqual(pins.map((x) => [x, "pinned"]));
    expect(m.distributions).toMatchObject({ six: "1.17.0", sortedcontainers: "2.4.0", "py-cpuinfo": "9.0.0" });

    const text = env(sb, "list");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${p.hash}\\s+3\\.11\\.\\d+\\s+3\\s+0\\s.*prepared$`, "m"));
    const json = listJson(sb);
    expect(json.length).toBe(1);
    expect(json[0]).toMatchObject({
      hash: p.hash,
      dir: venvDir(sb, p.hash),
      requirements: 3,
      prepared: true,
      missing: [],
      building: false,
    });

    // The same pins in another order: the same environment, no pip, nothing rebuilt.
    const before = identity(sb, p.hash);
    const exp = experiment(sb, [pins[2]!, pins[0]!, pins[1]!]);
    const { stderr, logs } = await runAll(sb, [exp]);
    const log = logs[0]!;
    expect(reused(log)).toBe(p.hash);
    expect(log).toContain(`python environment ${p.hash} reused in`);
    expect(log).toContain("prepared ahead");
    expect(log).not.toContain("building python environment");
    expect(log).not.toContain("asked the indexes");
    expect(log).toContain(`prefix ${venvDir(sb, p.hash)}`);
    expect(stderr).toContain(`reusing cached python environment ${p.hash}`);
    expect(stderr).not.toContain("building python environment");
    expect(venvDirs(sb)).toEqual([p.hash]);
    expect(identity(sb, p.hash)).toEqual(before);

    // prune: refusals first, and the environment is still there after each.
    let r = env(sb, "prune");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("say which");
    r = env(sb, "prune", "--unused", "soon");
    expect(r.code).toBe(2);
    for (const bad of ["../../../tmp", "not-a-hash", p.hash.toUpperCase()]) {
      r = env(sb, "prune", bad);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("is not an environment hash");
    }
    r = env(sb, "prune", "0".repeat(24));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no environment");
    expect(venvDirs(sb)).toEqual([p.hash]);

    // prune HASH
    r = env(sb, "prune", p.hash);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`removed python environment ${p.hash}`);
    expect(venvDirs(sb)).toEqual([]);
    expect(env(sb, "list").stdout).toContain("no python environments in");
    expect(listJson(sb)).toEqual([]);

    // Three more, used in this order: unprepared u1, prepared p2, unprepared u2.
    const e1 = experiment(sb, ["termcolor==3.3.0"]);
    const u1 = built((await runAll(sb, [e1])).logs[0]!)!;
    const p2 = prepare(sb, ["appdirs==1.4.4"]).hash;
    const e2 = experiment(sb, ["toml==0.10.2"]);
    const u2 = built((await runAll(sb, [e2])).logs[0]!)!;
    expect(new Set([u1, p2, u2]).size).toBe(3);
    expect(venvDirs(sb)).toEqual([u1, p2, u2].sort());
    expect(marker(sb, u1).prepared).toBeUndefined();
    expect(marker(sb, u2).prepared).toBeUndefined();
    expect(marker(sb, p2).prepared).toBe(true);
    expect(Object.fromEntries(listJson(sb).map((e) => [e.hash, e.prepared]))).toEqual({
      [u1]: false,
      [p2]: true,
      [u2]: false,
    });

    // --unused: a threshold between u1's and p2's idle times (read from the files) takes u1 only.
    const [ageU1, ageP2] = [unusedMs(sb, u1), unusedMs(sb, p2)];
    expect(ageU1 - ageP2).toBeGreaterThan(2000);
    r = env(sb, "prune", "--unused", `${Math.round((ageU1 + ageP2) / 2)}ms`);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`removed python environment ${u1}`);
    expect(venvDirs(sb)).toEqual([p2, u2].sort());
    r = env(sb, "prune", "--unused", "1h");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("nothing to remove");
    expect(venvDirs(sb)).toEqual([p2, u2].sort());

    // --prepared takes the prepared one only.
    r = env(sb, "prune", "--prepared");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`removed python environment ${p2}`);
    expect(venvDirs(sb)).toEqual([u2]);

    // --all takes the rest.
    r = env(sb, "prune", "--all");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`removed python environment ${u2}`);
    expect(venvDirs(sb)).toEqual([]);
    expect(listJson(sb)).toEqual([]);
  }, 300_000);

  test("--venv-reuse-superset: a prepared environment serves a subset of its pins " +
    "only with the flag, never a pin it does not satisfy", async () => {
    const sb = await makeSandbox("envprep-superset");
    const p = prepare(sb, ["six==1.17.0", "sortedcontainers==2.4.0", "mpmath==1.3.0"]).hash;
    expect(venvDirs(sb)).toEqual([p]);
    const before = identity(sb, p);

    // Without the flag: a subset builds an environment of its own.
    const own = experiment(sb, ["sortedcontainers==2.4.0", "six==1.17.0"]);
    const a = await runAll(sb, [own]);
    const ownHash = built(a.logs[0]!)!;
    expect(ownHash).toMatch(HASH);
    expect(ownHash).not.toBe(p);
    expect(a.logs[0]).toContain("asked the indexes");
    expect(a.logs[0]).not.toContain("--venv-reuse-superset");
    expect(a.logs[0]).toContain(`prefix ${venvDir(sb, ownHash)}`);
    expect(venvDirs(sb)).toEqual([p, ownHash].sort());

    // With the flag: another subset runs in the prepared environment; a pin it does not
    // satisfy (another mpmath) gets an environment of its own.
    const subset = experiment(sb, ["mpmath==1.3.0", "six==1.17.0"]);
    const other = experiment(sb, ["six==1.17.0", "mpmath==1.4.1"]);
    const b = await runAll(sb, [subset, other], ["--venv-reuse-superset", "--max-cores", "2"]);
    const [subsetLog, otherLog] = b.logs as [string, string];
    expect(subsetLog).toContain(
      `python environment ${p}, prepared ahead with 3 requirements, satisfies all 2 ` +
        `of this experiment's pins: reusing it (--venv-reuse-superset)`,
    );
    expect(reused(subsetLog)).toBe(p);
    expect(subsetLog).not.toContain("building python environment");
    expect(subsetLog).not.toContain("asked the indexes");
    expect(subsetLog).toContain(`prefix ${venvDir(sb, p)}`);
    expect(b.stderr).toContain(`reusing prepared python environment ${p}`);

    const otherHash = built(otherLog)!;
    expect(otherHash).toMatch(HASH);
    expect([p, ownHash]).not.toContain(otherHash);
    expect(otherLog).not.toContain("--venv-reuse-superset");
    expect(otherLog).toContain("have mpmath 1.4.1");
    expect(otherLog).toContain(`prefix ${venvDir(sb, otherHash)}`);
    // The only new directory is the one the unsatisfied pin asked for; the prepared one is untouched.
    expect(venvDirs(sb)).toEqual([p, ownHash, otherHash].sort());
    expect(identity(sb, p)).toEqual(before);
    expect(marker(sb, p).requirements.length).toBe(3);
  }, 300_000);

  test("--venv-reuse-superset: a prepared environment changed after its build is not " +
    "used, and not rebuilt with the experiment's pins", async () => {
    const sb = await makeSandbox("envprep-superset-changed");
    const p = prepare(sb, ["six==1.17.0", "sortedcontainers==2.4.0", "mpmath==1.3.0"]).hash;
    // Someone changes it on the host (an unsandboxed job could have).
    appendFileSync(
      join(venvDir(sb, p), "lib", "python3.11", "site-packages", "six.py"),
      "\n# changed after the build\n",
    );
    const exp = experiment(sb, ["six==1.17.0", "sortedcontainers==2.4.0"]);
    const run = await runAll(sb, [exp], ["--venv-reuse-superset"]);
    const log = run.logs[0]!;
    expect(log).not.toContain("reusing it (--venv-reuse-superset)");
    const own = built(log)!;
    expect(own).toMatch(HASH);
    expect(own).not.toBe(p);
    expect(log).toContain(`prefix ${venvDir(sb, own)}`);
    // The prepared environment keeps its own record: all three pins, still prepared.
    const m = marker(sb, p);
    expect(m.requirements.length).toBe(3);
    expect(m.prepared).toBe(true);
    expect(m.distributions.mpmath).toBe("1.3.0");
  }, 300_000);

  test("a prepared environment is not evicted for age (--venv-max-age) while an unprepared one as old is", async () => {
    const sb = await makeSandbox("envprep-age");
    const old = built((await runAll(sb, [experiment(sb, ["decorator==5.3.1"])])).logs[0]!)!;
    const p = prepare(sb, ["iniconfig==2.3.0"]).hash;
    expect(marker(sb, old).prepared).toBeUndefined();
    expect(marker(sb, p).prepared).toBe(true);
    // Both must age past the 1 s --venv-max-age below: wait for that age itself, not a fixed time.
    await waitFor(
      "both environments unused for over 1 s",
      () => unusedMs(sb, old) > 1000 && unusedMs(sb, p) > 1000,
      10_000,
    );
    expect(unusedMs(sb, old)).toBeGreaterThan(1000);
    expect(unusedMs(sb, p)).toBeGreaterThan(1000);

    // Eviction runs after a build: one experiment with other pins builds one.
    const { stderr, logs } = await runAll(sb, [experiment(sb, ["toml==0.10.2"])], ["--venv-max-age", "1s"]);
    const fresh = built(logs[0]!)!;
    expect([old, p]).not.toContain(fresh);
    expect(stderr).toContain(`evicted python environment ${old} (unused too long)`);
    expect(stderr).not.toContain(`evicted python environment ${p}`);
    expect(venvDirs(sb)).toEqual([p, fresh].sort());
    expect(marker(sb, p).prepared).toBe(true);
  }, 300_000);

  test("--max-env-builds 1 builds two new environments one after the other; " +
    "--max-env-builds 2 builds them at once", async () => {
    const sb = await makeSandbox("envprep-slots");
    /** When the build ran, from the host: `python -m venv` writes pyvenv.cfg first, the manifest is written last. */
    const window = (hash: string) => ({
      start: statSync(join(venvDir(sb, hash), "pyvenv.cfg")).mtimeMs,
      end: statSync(join(venvDir(sb, hash), ".studio-runner-manifest.json")).mtimeMs,
    });
    const flags = ["--max-cores", "2"];

    const one = await runAll(
      sb,
      [experiment(sb, ["termcolor==3.3.0"]), experiment(sb, ["toml==0.10.2"])],
      [...flags, "--max-env-builds", "1"],
    );
    const waited = one.logs.filter((l) => l.includes("waiting for a build slot (--max-env-builds 1)"));
    expect(waited.length).toBe(1);
    const hashes1 = one.logs.map((l) => built(l)!);
    expect(new Set(hashes1).size).toBe(2);
    expect(waited[0]).toContain(`to build python environment ${built(waited[0]!)}`);
    const [first, second] = hashes1.map(window).sort((x, y) => x.start - y.start) as [
      { start: number; end: number },
      { start: number; end: number },
    ];
    expect(second.start).toBeGreaterThanOrEqual(first.end);

    const two = await runAll(
      sb,
      [experiment(sb, ["appdirs==1.4.4"]), experiment(sb, ["decorator==5.3.1"])],
      [...flags, "--max-env-builds", "2"],
    );
    for (const l of two.logs) expect(l).not.toContain("waiting for a build slot");
    const hashes2 = two.logs.map((l) => built(l)!);
    expect(new Set([...hashes1, ...hashes2]).size).toBe(4);
    const [a, b] = hashes2.map(window).sort((x, y) => x.start - y.start) as [
      { start: number; end: number },
      { start: number; end: number },
    ];
    expect(b.start).toBeLessThan(a.end);
    console.log(
      `--max-env-builds 1: builds ${Math.round(first.end - first.start)}ms then ` +
        `${Math.round(second.end - second.start)}ms, gap ` +
        `${Math.round(second.start - first.end)}ms; ` +
        `--max-env-builds 2: overlap ${Math.round(a.end - b.start)}ms`,
    );
  }, 300_000);

  test("--pip-no-index with --pip-find-links: the build takes distributions from the wheelhouse only", async () => {
    const sb = await makeSandbox("envprep-wheelhouse");
    const wheelhouse = join(sb.dir, "wheelhouse");
    mkdirSync(wheelhouse);
    copyFileSync(
      "/opt/pypi/files/six-1.17.0-py2.py3-none-any.whl",
      join(wheelhouse, "six-1.17.0-py2.py3-none-any.whl"),
    );
    const offline = ["--pip-no-index", "--pip-find-links", wheelhouse, "--pip-strict"];
    const { hash } = prepare(sb, ["six==1.17.0"], ...offline);
    const sitePackages = join(venvDir(sb, hash), "lib", "python3.11", "site-packages");
    expect(filesIn(sitePackages).some((n) => n.startsWith("six-1.17.0"))).toBe(true);
    // The same flags, a pin the wheelhouse lacks: no index is asked, so --pip-strict fails naming it.
    const file = join(sb.dir, "reqs-missing.txt");
    writeFileSync(file, "appdirs==1.4.4\n");
    const r = env(sb, "prepare", "-r", file, "--python", "3.11", ...offline);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain("appdirs==1.4.4");
  }, 300_000);
});
