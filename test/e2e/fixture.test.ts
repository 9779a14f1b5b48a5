// The captured studioml client message (rewritten to file: storage) runs through the compiled
// binary: quoted args arrive whole, modeldir and the log land in storage, the whole `pip freeze`
// (104 pins, many not in this machine's wheelhouse at that version) is installed in one pass as far
// as this machine can, with one summary line and one line per missing pin; --pip-relax-pins
// installs the nearest versions and lists each; --pip-strict fails naming every unmet pin.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  fixtureOnFileStorage,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  tarMember,
  tarNames,
} from "../helpers/e2e.ts";

const TRAIN = `
import json, os, sys
print("argv:", json.dumps(sys.argv[1:]))
print("data:", open("data/input.txt").read().strip())
print("env ACC_FROM_CONFIG_ENV =", os.environ.get("ACC_FROM_CONFIG_ENV"))
print("runner secret visible:", "RUNNER_SECRET_TOKEN" in os.environ)
print("cuda:", os.environ.get("CUDA_VISIBLE_DEVICES"), "threads:", os.environ.get("OMP_NUM_THREADS"))
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "weights.txt"), "w").write("w=42\\n")
import numpy
print("numpy", numpy.__version__, "ok")
`;

/** Pins the default build did not install as pinned: the missing ones and those at another version. */
function unmetPins(log: string): string[] {
  const missing = [...log.matchAll(/^\[studio-runner\] {3}missing (\S+): /gm)].map((m) => m[1]!);
  const dragged = /^\[studio-runner\] {3}at another version as a dependency: (.*)$/m.exec(log);
  const other = dragged ? dragged[1]!.split(", ").map((p) => p.split(" -> ")[0]!) : [];
  return [...missing, ...other];
}
let unmetInDefault: string[] = [];

const VERSIONS = `
from importlib import metadata
for name in ("boto3", "botocore", "annotated-types", "ipython", "six"):
    try:
        print("version", name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print("version", name, "absent")
`;

describe("captured studioml client message", () => {
  test("runs end to end through the compiled binary", async () => {
    const sb = await makeSandbox("fixture", { cacheDir: SHARED_CACHE });
    const { message, key, experimentDir } = fixtureOnFileStorage(sb.storageRoot, {
      "train.py": TRAIN,
      "data/input.txt": "hello data\n",
    });
    const id = enqueue(sb.queueRoot, "local_fixture", message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1"], { RUNNER_SECRET_TOKEN: "tok-9f8e7d6c5b4a" });
    expect(await runner.exited).toBe(0);

    const log = tarMember(join(experimentDir, "output.tar"));
    expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
    expect(log).toContain("data: hello data");
    expect(log).toContain("env ACC_FROM_CONFIG_ENV = yes");
    expect(log).toContain("runner secret visible: False");
    expect(log).toContain("cuda: -1 threads: 1");
    expect(log).toContain("numpy");
    expect(log).not.toContain("tok-9f8e7d6c5b4a");
    // The client's full pip freeze: one summary line, then one line per pin that is not installed
    // (either while building, or from the cached environment's record when it is reused).
    const summary =
      /requirements: (\d+) installed as pinned, (\d+) at another version, (\d+) missing, (\d+) skipped \((\d+) lines\)/.exec(
        log,
      );
    expect(summary).not.toBeNull();
    const [asPinned, other, missing, , total] = summary!.slice(1).map(Number);
    expect(total).toBe(104);
    expect(asPinned! + other! + missing!).toBe(104);
    expect(asPinned).toBeGreaterThanOrEqual(40);
    expect(log).toContain(
      "missing annotated-types==0.7.0: the index has only 0.8.0; --pip-relax-pins installs the nearest",
    );
    expect(log).toContain("missing libcst==1.0.1: not in the index");
    expect((log.match(/^\[studio-runner\] {3}missing \S+: /gm) ?? []).length).toBe(missing);
    unmetInDefault = unmetPins(log);
    expect(unmetInDefault.length).toBe(other! + missing!);
    expect(log).toContain("exited with code 0");

    expect(tarNames(join(experimentDir, "modeldir.tar"))).toContain("weights.txt");
    expect(tarMember(join(experimentDir, "modeldir.tar"), "weights.txt")).toBe("w=42\n");
    expect(existsSync(join(experimentDir, "output.tar"))).toBe(true);
    // Acked: gone from the queue, nothing in flight or failed.
    expect(filesIn(join(sb.queueRoot, "local_fixture"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".inflight", "local_fixture"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".failed", "local_fixture"))).toEqual([]);
    expect(runner.stderr).toContain(`experiment ${key} finished`);
    void id;
    void readFileSync;
  }, 900_000);

  test("--pip-relax-pins installs the nearest version of every pin the index lacks, each listed; the environment's key is still the request's", async () => {
    const sb = await makeSandbox("fixture-relax");
    const { message, experimentDir } = fixtureOnFileStorage(sb.storageRoot, { "train.py": VERSIONS });
    enqueue(sb.queueRoot, "local_fixture", message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--pip-relax-pins"]);
    expect(await runner.exited).toBe(0);
    const log = tarMember(join(experimentDir, "output.tar"));
    expect(log).toContain("exited with code 0");
    // Listed: each substitution, with what the index has.
    expect(log).toContain("substituted boto3==1.43.11 -> 1.43.107");
    expect(log).toContain("substituted annotated-types==0.7.0 -> 0.8.0");
    expect(log).toMatch(/substituted ipython==8\.12\.3 -> 9\./); // another major only when nothing else exists
    // Installed: what the job itself sees.
    expect(log).toContain("version boto3 1.43.107");
    expect(log).toContain("version annotated-types 0.8.0");
    expect(log).toMatch(/version botocore 1\.43\.10[67]/);
    expect(log).toContain("version six 1.17.0");
    const summary = /requirements: (\d+) installed as pinned, (\d+) at another version, (\d+) missing/.exec(log);
    expect(summary).not.toBeNull();
    expect(Number(summary![2])).toBeGreaterThanOrEqual(45);
    // The marker records every substitution; the directory name is the hash of the request's own lines.
    const venvs = join(sb.cacheDir, "venvs");
    const hash = readdirSync(venvs).find((n) => !n.includes("."))!;
    const marker = JSON.parse(readFileSync(join(venvs, hash, ".studio-runner-venv.json"), "utf8"));
    expect(marker.mode).toBe("relax");
    expect(marker.requirements).toContain("boto3==1.43.11");
    const boto = marker.pins.find((p: { requirement: string }) => p.requirement === "boto3==1.43.11");
    expect(boto).toMatchObject({ outcome: "substituted", installed: "1.43.107" });
    expect(log).toContain(`python environment ${hash}`);
  }, 600_000);

  test("--pip-strict fails the experiment before installing anything, naming every pin it cannot meet", async () => {
    const sb = await makeSandbox("fixture-strict");
    const { message, experimentDir } = fixtureOnFileStorage(sb.storageRoot, { "train.py": "print('must not run')\n" });
    const id = enqueue(sb.queueRoot, "local_fixture", message);
    const runner = new RunnerProcess(sb, ["--limit-tasks", "1", "--pip-strict"]);
    expect(await runner.exited).toBe(0);
    const reason = readFileSync(join(sb.queueRoot, ".failed", "local_fixture", `${id}.reason.json`), "utf8");
    const parsed = JSON.parse(reason);
    const text = String(parsed.summary ?? parsed.reason);
    expect(text).toContain("--pip-strict");
    const named = [...text.matchAll(/^ {2}(\S+==\S+): /gm)].map((m) => m[1]!);
    expect(named).toContain("libcst==1.0.1");
    expect(named).toContain("boto3==1.43.11");
    if (unmetInDefault.length) expect([...named].sort()).toEqual([...unmetInDefault].sort());
    else expect(named.length).toBeGreaterThanOrEqual(50);
    const log = tarMember(join(experimentDir, "output.tar"));
    expect(log).not.toContain("must not run");
    expect(log).not.toMatch(/Successfully installed/);
  }, 300_000);
});
