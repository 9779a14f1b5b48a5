// Experiments with a `_singularity` image, through the compiled binary, against the apptainer
// stand-in in test/helpers/apptainer-standin (no real Apptainer can be installed here): the image
// is fetched from storage and cached, the exact command line, binds and environment are checked,
// the job's output is uploaded, and a docker:// reference is passed to the tool untouched.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  makeSandbox,
  makeTar,
  REPO,
  RunnerProcess,
  sha256File,
  simpleExperiment,
  tarMember,
  tarNames,
} from "../helpers/e2e.ts";

const STANDIN = join(REPO, "test/helpers/apptainer-standin");
const runnable = existsSync("/usr/bin/bwrap") || !!process.env.CI;
if (!existsSync("/usr/bin/bwrap")) console.warn("\n*** bubblewrap is missing: the container stand-in cannot run ***\n");

const SCRIPT = `import json, os, sys
sys.path.insert(0, "/opt/image")
try:
    import tool
    print(tool.GREETING, flush=True)
except ImportError:
    print("no image tool", flush=True)
print("args", json.dumps(sys.argv[1:]), flush=True)
print("experiment", os.environ.get("STUDIOML_EXPERIMENT"), flush=True)
print("user var", os.environ.get("USER_VAR"), flush=True)
print("runner secret", os.environ.get("AWS_SECRET_ACCESS_KEY"), flush=True)
print("runner path var", os.environ.get("RUNNER_ONLY_SETTING"), flush=True)
m = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(m["modeldir"], "made-in-container.txt"), "w").write("ok\\n")
`;

describe("_singularity images (apptainer stand-in)", () => {
  test.skipIf(!runnable)(
    "an image from storage runs the experiment, is cached for the next one, and gets exactly the job's binds and environment",
    async () => {
      const sb = await makeSandbox("container");
      const log = join(sb.dir, "standin.log");
      // The image: a directory image whose /opt carries a module the experiment imports.
      const imageTar = join(sb.dir, "image.tar");
      makeTar(imageTar, { "opt/image/tool.py": "GREETING = 'hello from inside the image'\n" });
      const imageKey = `blobstore/${sha256File(imageTar)}.tar`;
      mkdirSync(join(sb.storageRoot, "studioml-artifacts", "blobstore"), { recursive: true });
      writeFileSync(join(sb.storageRoot, "studioml-artifacts", imageKey), readFileSync(imageTar));
      const make = () =>
        simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
          m.experiment.args = ["--lr", "0.1", "'arg with space'"];
          m.experiment.pythonenv = ["numpy==2.0.0"];
          m.config.env = { USER_VAR: "from config.env" };
          m.experiment.artifacts._singularity = {
            key: imageKey,
            qualified: `file:/${sb.storageRoot}/studioml-artifacts/${imageKey}`,
            mutable: false,
            unpack: false,
          };
        });
      const first = make();
      const second = make();
      enqueue(sb.queueRoot, "local_container", first.message);
      enqueue(sb.queueRoot, "local_container", second.message);
      // One at a time (--max-cores 1), so the second finds the image the first put in the cache.
      const runner = new RunnerProcess(sb, ["--limit-tasks", "2", "--debug", "--max-cores", "1"], {
        PATH: `${STANDIN}:${process.env.PATH}`,
        APPTAINER_STANDIN_LOG: log,
        APPTAINER_STANDIN_CACHE: join(sb.dir, "standin-cache"),
        AWS_SECRET_ACCESS_KEY: "runner-secret-value",
        RUNNER_ONLY_SETTING: "host-only",
      });
      expect(await runner.exited).toBe(0);

      const out1 = tarMember(join(first.experimentDir, "output.tar"));
      expect(out1).toContain("hello from inside the image");
      expect(out1).toContain('args ["--lr", "0.1", "arg with space"]');
      expect(out1).toContain(`experiment ${first.key}`);
      expect(out1).toContain("user var from config.env");
      expect(out1).toContain("runner secret None");
      expect(out1).toContain("runner path var None");
      expect(out1).toContain("experiment.pythonenv is not installed");
      expect(out1).toContain("experiment exited with code 0");
      expect(tarNames(join(first.experimentDir, "modeldir.tar"))).toContain("made-in-container.txt");
      const out2 = tarMember(join(second.experimentDir, "output.tar"));
      expect(out2).toContain("hello from inside the image");
      // Whichever ran second found the image in the cache; the other downloaded it.
      const fromCache = [out1, out2].filter((o) => /container image file:.* \(from cache\)/.test(o));
      expect(fromCache.length).toBe(1);
      expect([out1, out2].filter((o) => /container image file:.*: [\d.]+KiB\n/.test(o)).length).toBe(1);

      // The exact command line the runner gave the tool.
      const calls = readFileSync(log, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as string[]);
      expect(calls.length).toBe(2);
      const argv = calls.find((c) => c.some((a) => a.includes(first.key)))!;
      const attempt = argv[argv.indexOf("--env-file") + 1]!.replace(/\/\.container-env$/, "");
      expect(argv).toEqual([
        "exec",
        "--containall",
        "--no-privs",
        "--env-file",
        `${attempt}/.container-env`,
        "--pwd",
        `${attempt}/workspace`,
        "--bind",
        `${attempt}:${attempt}`,
        "--",
        argv[10]!,
        "python3",
        "main.py",
        "--lr",
        "0.1",
        "arg with space",
      ]);
      // The image is the cached file, the same for both experiments.
      expect(argv[10]).toContain(sb.cacheDir);
      expect(calls[0]![10]).toBe(calls[1]![10]!);
      // The environment file (kept with --debug): the job's variables, none of the runner's own.
      const envFile = readFileSync(`${attempt}/.container-env`, "utf8");
      expect(envFile).toContain(`STUDIOML_EXPERIMENT='${first.key}'`);
      expect(envFile).toContain("CUDA_VISIBLE_DEVICES='-1'");
      expect(envFile).toContain("USER_VAR='from config.env'");
      expect(envFile).not.toContain("runner-secret-value");
      expect(envFile).not.toContain("RUNNER_ONLY_SETTING");
      expect(envFile).not.toMatch(/^PATH=/m);
    },
    300_000,
  );

  test.skipIf(!runnable)(
    "a docker:// reference goes to the tool as it is; without a tool the request is kept with the reason",
    async () => {
      const sb = await makeSandbox("container-ref");
      const log = join(sb.dir, "standin.log");
      const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
        m.experiment.artifacts._singularity = { qualified: "docker://python:3.11-slim", mutable: false, unpack: false };
      });
      enqueue(sb.queueRoot, "local_ref", exp.message);
      const runner = new RunnerProcess(sb, ["--limit-tasks", "1"], {
        PATH: `${STANDIN}:${process.env.PATH}`,
        APPTAINER_STANDIN_LOG: log,
      });
      expect(await runner.exited).toBe(0);
      const argv = JSON.parse(readFileSync(log, "utf8").trim()) as string[];
      expect(argv[10]).toBe("docker://python:3.11-slim");
      const out = tarMember(join(exp.experimentDir, "output.tar"));
      expect(out).toContain("container image docker://python:3.11-slim (pulled by the container tool)");
      expect(out).toContain("no image tool");
      expect(out).toContain("experiment exited with code 0");

      // No apptainer or singularity on PATH: kept in the failed place, saying so.
      const sb2 = await makeSandbox("container-none");
      const exp2 = simpleExperiment(sb2.storageRoot, { "main.py": SCRIPT }, (m) => {
        m.experiment.artifacts._singularity = { qualified: "docker://python:3.11-slim", mutable: false, unpack: false };
      });
      const id = enqueue(sb2.queueRoot, "local_ref", exp2.message);
      const r2 = new RunnerProcess(sb2, ["--limit-tasks", "1"], { PATH: "/usr/bin:/bin" });
      expect(await r2.exited).toBe(0);
      const reason = readFileSync(join(sb2.queueRoot, ".failed", "local_ref", `${id}.reason.json`), "utf8");
      expect(reason).toContain("neither apptainer nor singularity is installed");
      expect(readdirSync(join(sb2.queueRoot, "local_ref"))).toEqual([]);
    },
    300_000,
  );
});
