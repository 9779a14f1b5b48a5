// The compiled binary on its own: runs from an empty directory without node_modules, and
// reports every configuration problem at once with exit code 2.

import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runBinary } from "../helpers/e2e.ts";

describe("compiled binary", () => {
  test("--version, version and --help work from an empty directory with no node_modules", () => {
    const empty = mkdtempSync(join(tmpdir(), "empty-"));
    const copy = join(empty, "studio-runner");
    copyFileSync(ensureBinary(), copy);
    const run = (args: string[]) =>
      Bun.spawnSync([copy, ...args], { cwd: empty, env: { PATH: "/usr/bin:/bin", HOME: empty } });
    const v = run(["--version"]);
    expect(v.exitCode).toBe(0);
    expect(v.stdout.toString()).toMatch(/^\d+\.\d+\.\d+/);
    const version = run(["version"]);
    expect(version.stdout.toString()).toMatch(/^studio-runner \d+\.\d+\.\d+ \(commit /);
    const json = JSON.parse(run(["version", "--json"]).stdout.toString());
    expect(json.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.commit).toMatch(/^[0-9a-f]{7,}$/);
    expect(json.buildDate).toMatch(/^\d{4}-\d\d-\d\dT/); // the commit's date
    expect(json.target).toBe(`linux-${process.arch}`);
    expect(json.bun).toBe(Bun.version);
    const help = run(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("submit");
    // Help into a pipe (a file, journald): no escape codes, with no NO_COLOR needed.
    expect(help.stdout.toString()).not.toContain("\u001b[");
    expect(run(["run", "--help"]).stdout.toString()).not.toContain("\u001b[");
    const runHelp = run(["run", "--help"]);
    for (const flag of [
      "--queue-root",
      "--queue-match",
      "--queue-mismatch",
      "--working-dir",
      "--cache-dir",
      "--max-cores",
      "--max-mem",
      "--max-disk",
      "--limit-tasks",
      "--limit-idle-duration",
      "--debug",
      "--config",
    ]) {
      expect(runHelp.stdout.toString()).toContain(flag);
    }
  });

  test("invalid configuration: every problem listed at once, exit code 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    const yaml = join(dir, "runner.yaml");
    require("node:fs").writeFileSync(yaml, "max-cores: lots\nno-such-key: 1\n");
    const r = runBinary(["run", "--config", yaml, "--max-mem", "12 bananas", "--queue-match", "([", "--bogus-flag"], {
      env: { LIMIT_IDLE_DURATION: "forever" },
    });
    expect(r.code).toBe(2);
    for (const needle of [
      "max-cores",
      "lots",
      "no-such-key",
      "--max-mem",
      "12 bananas",
      "--queue-match",
      "LIMIT_IDLE_DURATION",
      "forever",
      "--bogus-flag",
    ]) {
      expect(r.stderr).toContain(needle);
    }
  });

  test("settings come from flags, environment variables and the YAML file", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    const yaml = join(dir, "runner.yaml");
    require("node:fs").writeFileSync(yaml, `queue-root: ${join(dir, "q-from-file")}\nlimit-idle-duration: 1s\n`);
    const r = runBinary(["run", "--config", yaml, "--working-dir", join(dir, "w"), "--cache-dir", join(dir, "c")], {
      env: { MAX_CORES: "1" },
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("1 cpus");
    expect(r.stderr).toContain(join(dir, "q-from-file"));
    expect(r.stderr).toMatch(/idle for 1s/);
  });
});
