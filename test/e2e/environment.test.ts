// What an experiment sees: secrets masked in its log and kept out of its environment, the
// runner's own log free of them, venvs that can see the interpreter's packages on request,
// expired requests kept with the reason, and the JSON runner log.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  makeSandbox,
  runBinary,
  runnerDefaults,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";

describe("experiment environment", () => {
  test("secrets: masked in the log, runner credentials absent from the experiment and the runner log", async () => {
    const sb = await makeSandbox("secrets", { cacheDir: SHARED_CACHE });
    const script = `
import os
print("token from request:", os.environ.get("MY_API_TOKEN"))
print("runner aws secret present:", "AWS_SECRET_ACCESS_KEY" in os.environ, "runner aws key id present:", "AWS_ACCESS_KEY_ID" in os.environ)
print("cloning https://alice:s3cr3tpass@git.example.com/repo.git")
print("PASSWORD=hunter22 and plain=visible")
print("expanded home:", os.environ.get("FROM_RUNNER"), "blocked:", repr(os.environ.get("STOLEN")))
`;
    const exp = simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
      m.experiment.pythonver = "3.11";
      m.config.env = {
        MY_API_TOKEN: "tok-abcdef123456",
        FROM_RUNNER: "%RUNNER_PLAIN%",
        STOLEN: "%AWS_SECRET_ACCESS_KEY%",
      };
    });
    enqueue(sb.queueRoot, "local_secrets", exp.message);
    const r = new RunnerProcess(sb, ["--limit-tasks", "1"], {
      AWS_SECRET_ACCESS_KEY: "runner-secret-xyz987",
      AWS_ACCESS_KEY_ID: "AKIARUNNERKEY",
      RUNNER_PLAIN: "plain-value",
    });
    expect(await r.exited).toBe(0);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("token from request: ***");
    expect(log).not.toContain("tok-abcdef123456");
    expect(log).toContain("runner aws secret present: False runner aws key id present: False");
    expect(log).toContain("https://***@git.example.com/repo.git");
    expect(log).not.toContain("s3cr3tpass");
    expect(log).toContain("PASSWORD=*** and plain=visible");
    expect(log).toContain("expanded home: plain-value blocked: ''");
    expect(log).toContain("%AWS_SECRET_ACCESS_KEY% is a runner secret and was not expanded");
    for (const secret of ["runner-secret-xyz987", "tok-abcdef123456", "s3cr3tpass", "hunter22"]) {
      expect(r.stderr).not.toContain(secret);
      expect(log).not.toContain(secret);
    }
  }, 180_000);

  test("--venv-system-site-packages lets the venv import the interpreter's own packages", async () => {
    const sb = await makeSandbox("sitepkgs", { cacheDir: SHARED_CACHE });
    // A package the pyenv interpreter has installed but the experiment does not ask for.
    const probe = Bun.spawnSync(["python3.11", "-c", "import yaml; print(yaml.__file__)"]);
    expect(probe.exitCode).toBe(0);
    const script = "import yaml\nprint('yaml from', yaml.__file__)\n";
    const withFlag = simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => (m.experiment.pythonver = "3.11"));
    const without = simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => (m.experiment.pythonver = "3.11"));
    enqueue(sb.queueRoot, "local_site", withFlag.message);
    let r = new RunnerProcess(sb, ["--limit-tasks", "1", "--venv-system-site-packages"]);
    expect(await r.exited).toBe(0);
    expect(tarMember(join(withFlag.experimentDir, "output.tar"))).toContain("yaml from");
    enqueue(sb.queueRoot, "local_site", without.message);
    r = new RunnerProcess(sb, ["--limit-tasks", "1"]);
    expect(await r.exited).toBe(0);
    expect(tarMember(join(without.experimentDir, "output.tar"))).toContain("No module named 'yaml'");
  }, 180_000);

  test("an expired request is kept in the failed place with the reason", async () => {
    const sb = await makeSandbox("expired", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": "print('too late')\n" }, (m) => {
      m.experiment.time_added = Date.now() / 1000 - 3600;
      m.config.experimentLifetime = "30m";
    });
    const id = enqueue(sb.queueRoot, "local_expired", exp.message);
    const r = new RunnerProcess(sb, ["--limit-tasks", "1", "--log-format", "json"]);
    expect(await r.exited).toBe(0);
    const reason = JSON.parse(
      readFileSync(join(sb.queueRoot, ".failed", "local_expired", `${id}.reason.json`), "utf8"),
    );
    expect(reason.summary).toContain("expired before it could start (config.experimentLifetime)");
    expect(filesIn(join(sb.queueRoot, "local_expired"))).toEqual([]);
    // --log-format json: every line of the runner's log is one JSON object.
    const lines = r.stderr.trim().split("\n");
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) {
      const obj = JSON.parse(line);
      expect(typeof obj.time).toBe("string");
      expect(typeof obj.message).toBe("string");
    }
  }, 120_000);

  test("a request needing more than this runner has is left in the queue for a bigger one", async () => {
    const sb = await makeSandbox("toobig", { cacheDir: SHARED_CACHE });
    const exp = simpleExperiment(sb.storageRoot, { "main.py": "print('x')\n" }, (m) => {
      m.experiment.resources_needed = { cpus: 64, ram: "1g", hdd: "1g", gpus: 0 };
    });
    const id = enqueue(sb.queueRoot, "local_big", exp.message);
    const r = runBinary([
      "run",
      "--queue-root",
      sb.queueRoot,
      "--working-dir",
      sb.workDir,
      "--cache-dir",
      sb.cacheDir,
      ...runnerDefaults(sb, []),
      "--max-cores",
      "2",
      "--limit-idle-duration",
      "2s",
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("for a bigger runner: needs 64 cpus, runner has 2");
    expect(filesIn(join(sb.queueRoot, "local_big"))).toEqual([id]);
  }, 120_000);
});
