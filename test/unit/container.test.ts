// The Apptainer command line and env file the runner produces, for the cases the stand-in e2e
// test does not reach (GPUs, runscript images, awkward values).

import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import {
  checkContainerRequest,
  containerArgv,
  containerEnv,
  containerScript,
  isRegistryReference,
  LAUNCHER_PATH,
  launcherEnv,
  writeEnvFile,
} from "../../src/container/apptainer.ts";
import { PermanentError } from "../../src/errors.ts";

describe("apptainer executor", () => {
  test("GPUs add --nv; no script runs the image's runscript; -m runs a module", () => {
    const base = {
      tool: "/usr/bin/apptainer",
      image: "/c/img.sif",
      binds: ["/w/a"],
      pwd: "/w/a/workspace",
      envFile: "/w/a/.container-env",
    };
    expect(containerArgv({ ...base, gpus: true, command: ["python3", "t.py"] })).toEqual([
      "/usr/bin/apptainer",
      "exec",
      "--containall",
      "--no-privs",
      "--env-file",
      "/w/a/.container-env",
      "--pwd",
      "/w/a/workspace",
      "--bind",
      "/w/a:/w/a",
      "--nv",
      "--",
      "/c/img.sif",
      "python3",
      "t.py",
    ]);
    expect(containerArgv({ ...base, gpus: false, command: containerScript(null, []) })).toEqual([
      "/usr/bin/apptainer",
      "run",
      "--containall",
      "--no-privs",
      "--env-file",
      "/w/a/.container-env",
      "--pwd",
      "/w/a/workspace",
      "--bind",
      "/w/a:/w/a",
      "--",
      "/c/img.sif",
    ]);
    expect(containerScript("-m", ["pkg.train", "--x"])).toEqual(["python3", "-m", "pkg.train", "--x"]);
  });

  test("registry references are recognised; storage locations are not", () => {
    for (const r of [
      "docker://python:3.11",
      "library://lolcow",
      "shub://a/b",
      "oras://ghcr.io/x:1",
      "docker-archive://x.tar",
    ])
      expect(isRegistryReference(r)).toBe(true);
    for (const l of ["s3://h/b/k.sif", "gs://b/k.sif", "file:///x.sif", "https://h/x.sif"])
      expect(isRegistryReference(l)).toBe(false);
  });

  test("the env file is private and survives quotes, spaces, newlines and $ when a shell sources it", () => {
    const dir = mkdtempSync(join(tmpdir(), "envfile-"));
    try {
      const file = join(dir, ".container-env");
      const env = { A: "it's $HOME and `x`", B: "two\nlines", C: "", "BAD-NAME": "dropped" };
      writeEnvFile(file, env);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const r = spawnSync("bash", ["-c", 'set -a; . "$1"; printf "%s|" "$A" "$B" "$C"', "_", file], {
        encoding: "utf8",
        env: {},
      });
      expect(r.stdout).toBe("it's $HOME and `x`|two\nlines||");
      expect(readFileSync(file, "utf8")).not.toContain("BAD-NAME");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the container gets the job's variables, not what merely passed through from the runner", () => {
    const runner = { PATH: "/usr/bin", HOME: "/root", LANG: "C.UTF-8", CUDA_VISIBLE_DEVICES: "-1" };
    const job = {
      PATH: "/usr/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      CUDA_VISIBLE_DEVICES: "-1",
      STUDIOML_EXPERIMENT: "k",
      USER_VAR: "x",
      VIRTUAL_ENV: "/v",
    };
    expect(containerEnv(job, runner)).toEqual({ CUDA_VISIBLE_DEVICES: "-1", STUDIOML_EXPERIMENT: "k", USER_VAR: "x" });
  });

  test("the tool itself gets PATH, the locale and the operator's APPTAINER_/SINGULARITY_ settings, nothing else", () => {
    const runner = {
      PATH: "/root/.pyenv/shims:/usr/bin",
      HOME: "/root",
      LD_PRELOAD: "/x.so",
      APPTAINER_CACHEDIR: "/var/cache/a",
      SINGULARITY_TMPDIR: "/t",
      AWS_SECRET_ACCESS_KEY: "s",
      APPTAINERENV_X: "y",
    };
    expect(launcherEnv(runner)).toEqual({
      PATH: LAUNCHER_PATH,
      LANG: "C.UTF-8",
      APPTAINER_CACHEDIR: "/var/cache/a",
      SINGULARITY_TMPDIR: "/t",
    });
  });

  describe("request strings never become the tool's options (attack class 3)", () => {
    const ok = {
      image: "/cache/img.sif",
      imageField: "experiment.artifacts._singularity.qualified",
      filename: "main.py",
      bindDirs: ["/w/studio-runner/k1/123-1"],
      key: "k1",
    };
    const refused = (c: Partial<typeof ok> & { filename?: string | null }, field: string, text: string) => {
      let err: unknown;
      try {
        checkContainerRequest({ ...ok, ...c });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as PermanentError).context.field).toBe(field);
      expect((err as Error).message).toContain(text);
    };
    test("ordinary requests pass, -m included", () => {
      checkContainerRequest(ok);
      checkContainerRequest({ ...ok, filename: "-m" });
      checkContainerRequest({ ...ok, filename: null, image: "docker://python:3.11" });
    });
    test("an image reference starting with - is refused, naming the field", () =>
      refused({ image: "--bind=/:/host" }, "experiment.artifacts._singularity.qualified", '"--bind=/:/host"'));
    test("a script name starting with - is refused", () => {
      refused({ filename: "--bind=/etc:/x" }, "experiment.filename", '"--bind=/etc:/x"');
      refused({ filename: "-c" }, "experiment.filename", '"-c"');
    });
    test("a key with , or : (bind-spec separators) is refused", () => {
      refused({ key: "a,b", bindDirs: ["/w/studio-runner/a,b/1"] }, "experiment.key", '"a,b"');
      refused({ key: "x:/etc", bindDirs: ["/w/studio-runner/x:/etc/1"] }, "experiment.key", '"x:/etc"');
    });
    test("after the options, -- ends them before the image", () => {
      const argv = containerArgv({
        tool: "/t",
        image: "/c/i.sif",
        binds: [],
        pwd: "/",
        envFile: "/e",
        gpus: false,
        command: ["python3", "--help"],
      });
      expect(argv.indexOf("--")).toBe(argv.indexOf("/c/i.sif") - 1);
    });
  });
});
