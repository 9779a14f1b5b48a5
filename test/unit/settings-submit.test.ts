// submit's settings: an option table read by run's loader. Flags, the environment variables it
// always read (QUEUE_ROOT, AMQP_URL, STUDIO_STORAGE) and a --config file; the experiment's plain
// names (ENV, RAM, QUEUE …) and run's CONFIG are never taken from the environment.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadSettings } from "../../src/config/load.ts";
import { SUBMIT_OPTIONS } from "../../src/submit/submit-options.ts";
import { runBinary } from "../helpers/e2e.ts";

const dir = mkdtempSync(join(tmpdir(), "settings-submit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("submit settings", () => {
  test("defaults: typed, the request's sizes kept as written", () => {
    const s = loadSettings(SUBMIT_OPTIONS, {}, {});
    const cpus: number = s.cpus;
    const wait: boolean = s.wait;
    const ram: string = s.ram;
    expect({ cpus, wait, ram, gpus: s.gpus, pythonver: s.pythonver, bucket: s.bucket, workspace: s.workspace }).toEqual(
      { cpus: 1, wait: false, ram: "1g", gpus: 0, pythonver: "3", bucket: "studioml-artifacts", workspace: "." },
    );
    expect([s.queue, s["queue-root"], s.storage, s["amqp-url"]]).toEqual([undefined, undefined, undefined, undefined]);
  });

  test("the environment variables submit always read still work; flags beat them", () => {
    const env = { QUEUE_ROOT: "/q", AMQP_URL: "amqp://h:5672/%2f", STUDIO_STORAGE: "s3://h:9000/b" };
    const s = loadSettings(SUBMIT_OPTIONS, {}, env);
    expect([s["queue-root"], s["amqp-url"], s.storage]).toEqual(["/q", "amqp://h:5672/%2f", "s3://h:9000/b"]);
    expect(loadSettings(SUBMIT_OPTIONS, { "queue-root": "/flag" }, env)["queue-root"]).toBe("/flag");
  });

  test("plain experiment names and run's CONFIG are not read from the environment", () => {
    const config = join(dir, "run.yaml");
    writeFileSync(config, "max-mem: 1g\n");
    const s = loadSettings(SUBMIT_OPTIONS, {}, { ENV: "/etc/shrc", RAM: "9g", QUEUE: "x", CONFIG: config });
    expect([s.env, s.ram, s.queue]).toEqual([undefined, "1g", undefined]);
  });

  test("a --config file gives submit's settings; wrong values are all reported", () => {
    const file = join(dir, "submit.yaml");
    writeFileSync(file, "queue: local_team\npythonver: '3.11'\nwait: true\ncpus: 2\n");
    const s = loadSettings(SUBMIT_OPTIONS, { config: file, cpus: "4" }, {});
    expect([s.queue, s.pythonver, s.wait, s.cpus]).toEqual(["local_team", "3.11", true, 4]);
    let problems: string[] = [];
    try {
      loadSettings(SUBMIT_OPTIONS, { cpus: "two", wait: "maybe", "amqp-queue-type": "fancy" }, {});
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems = err.problems;
    }
    expect(problems).toEqual([
      '--cpus: "two" is not a whole number ≥ 0',
      '--wait: "maybe" is not a boolean (true/false)',
      '--amqp-queue-type: "fancy" is not one of classic, quorum',
    ]);
  });

  test("the binary: --help from the table; unknown flags and bad values listed together, exit 2", () => {
    const help = runBinary(["submit", "--help"]);
    expect(help.code).toBe(0);
    for (const text of ["--storage", "(env STUDIO_STORAGE)", "--wait-timeout", "--google-certs", "--config"])
      expect(help.stdout).toContain(text);
    const bad = runBinary(["submit", "--frobnicate", "--cpus", "two", "train.py", "--steps", "2"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--frobnicate: unknown flag");
    expect(bad.stderr).toContain('--cpus: "two" is not a whole number ≥ 0');
    expect(bad.stderr).not.toContain("--steps");
  });
});
