// pip-probe.py run by a real interpreter with pip's own finder, against a find-links directory of
// wheel names made here (the finder reads names only): each status, the nearest version (same
// major first), yanked-free and platform-filtered candidates; and the TypeScript side's reading
// of its answer (only the sentinel line, only expected shapes).

import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseIndexProbe, PROBE_SCRIPT, readProbeOutput } from "../../src/env/pin-probe.ts";

const python = spawnSync("python3", ["-c", "import pip, sys; print(sys.executable)"], { encoding: "utf8" });
const havePython = python.status === 0;

function probe(lines: string[], wheels: string[], mode = "index") {
  const dir = mkdtempSync(join(tmpdir(), "pip-probe-"));
  const links = join(dir, "links");
  mkdirSync(links);
  for (const w of wheels) writeFileSync(join(links, w), "");
  const script = join(dir, "pip-probe.py");
  writeFileSync(script, PROBE_SCRIPT);
  writeFileSync(join(dir, "in.json"), JSON.stringify({ requirements: lines }));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: dir,
    PIP_CONFIG_FILE: "/dev/null",
    PIP_NO_INDEX: "1",
    PIP_FIND_LINKS: links,
    PIP_DISABLE_PIP_VERSION_CHECK: "1",
  };
  const r = spawnSync(python.stdout.trim(), ["-I", script, mode, join(dir, "in.json")], { encoding: "utf8", env });
  const read = readProbeOutput(r.stdout);
  if ("error" in read) throw new Error(`${read.error}\n${r.stderr}`);
  return read.value;
}

describe.skipIf(!havePython)("pip-probe.py (real pip finder)", () => {
  test("each line classified in one process", () => {
    const lines = [
      "alpha==1.0.0",
      "beta==1.2.3",
      "gamma==2.0",
      "delta==0.5",
      'winonly==1.0; sys_platform == "win32"',
      "platformonly==1.0",
      "not a requirement ==",
      "Alpha_Ext[extra]==1.0.0",
    ];
    const wheels = [
      "alpha-1.0.0-py3-none-any.whl",
      "beta-1.2.2-py3-none-any.whl",
      "beta-1.2.10-py3-none-any.whl",
      "beta-2.0.0-py3-none-any.whl",
      "beta-1.3.0rc1-py3-none-any.whl",
      "gamma-1.9.0-py3-none-any.whl",
      "gamma-3.1.0-py3-none-any.whl",
      "platformonly-1.0-cp311-cp311-win_amd64.whl",
      "alpha_ext-1.0.0-py3-none-any.whl",
    ];
    const value = probe(lines, wheels);
    const parsed = parseIndexProbe(value, lines)!;
    expect(parsed).toBeDefined();
    const by = Object.fromEntries(parsed.pins.map((p) => [p.line, p]));
    expect(by["alpha==1.0.0"]).toMatchObject({ status: "exact", versions: ["1.0.0"] });
    // Same major first, then the smallest difference; prereleases only for prerelease pins.
    expect(by["beta==1.2.3"]).toMatchObject({ status: "other", nearest: "1.2.2" });
    expect(by["beta==1.2.3"]!.versions).toContain("2.0.0");
    expect(by["gamma==2.0"]).toMatchObject({ status: "other" });
    expect(["1.9.0", "3.1.0"]).toContain(by["gamma==2.0"]!.nearest!);
    expect(by["delta==0.5"]).toMatchObject({ status: "absent", versions: [] });
    expect(by['winonly==1.0; sys_platform == "win32"']).toMatchObject({ status: "skip" });
    // A wheel for another platform is no candidate here.
    expect(by["platformonly==1.0"]).toMatchObject({ status: "absent" });
    expect(by["not a requirement =="]).toMatchObject({ status: "invalid" });
    expect(by["Alpha_Ext[extra]==1.0.0"]).toMatchObject({ status: "exact", name: "alpha-ext" });
  });

  test("what the interpreter already has is 'present' (pip itself)", () => {
    const pip = spawnSync(python.stdout.trim(), ["-c", "import pip; print(pip.__version__)"], {
      encoding: "utf8",
    }).stdout.trim();
    const lines = [`pip==${pip}`];
    const parsed = parseIndexProbe(probe(lines, []), lines)!;
    expect(parsed.pins[0]).toMatchObject({ status: "present", installed: pip });
    expect(parsed.pip).toBe(pip);
  });

  test("installed mode: the installed version per line and every distribution", () => {
    const pip = spawnSync(python.stdout.trim(), ["-c", "import pip; print(pip.__version__)"], {
      encoding: "utf8",
    }).stdout.trim();
    const value = probe([`pip==${pip}`, "pip==0.1", "surely-not-installed==1"], [], "installed");
    const pins = value.pins as Array<Record<string, unknown>>;
    expect(pins[0]).toMatchObject({ installed: pip, satisfied: true });
    expect(pins[1]).toMatchObject({ installed: pip, satisfied: false });
    expect(pins[2]!.installed).toBeUndefined();
    expect((value.distributions as Record<string, string>).pip).toBe(pip);
  });
});

describe("reading the probe's answer", () => {
  test("only the sentinel line counts; other output is ignored", () => {
    const out = `noise\nSTUDIO_RUNNER_PIP_PROBE {"pins": [], "pip": "1"}\n`;
    expect(readProbeOutput(out)).toEqual({ value: { pins: [], pip: "1" } });
  });

  test("no sentinel, bad JSON, an error field, a mismatched answer: no answer", () => {
    expect("error" in readProbeOutput("Traceback: boom")).toBe(true);
    expect("error" in readProbeOutput("STUDIO_RUNNER_PIP_PROBE {not json")).toBe(true);
    expect(readProbeOutput('STUDIO_RUNNER_PIP_PROBE {"error": "ImportError: pip"}')).toEqual({
      error: "ImportError: pip",
    });
    expect(parseIndexProbe({ pins: [{ line: "other==1", status: "exact" }] }, ["six==1"])).toBeUndefined();
    expect(parseIndexProbe({ pins: [{ line: "six==1", status: "weird" }] }, ["six==1"])).toBeUndefined();
    expect(parseIndexProbe({ pins: [] }, ["six==1"])).toBeUndefined();
  });
});
