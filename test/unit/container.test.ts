// The Apptainer command line and env file the runner produces, for the cases the stand-in e2e
// test does not reach (GPUs, runscript images, awkward values).

import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { containerArgv, containerEnv, containerScript, isRegistryReference, writeEnvFile } from "../../src/container/apptainer.ts";

describe("apptainer executor", () => {
  test("GPUs add --nv; no script runs the image's runscript; -m runs a module", () => {
    const base = { tool: "/usr/bin/apptainer", image: "/c/img.sif", binds: ["/w/a"], pwd: "/w/a/workspace", envFile: "/w/a/.container-env" };
    expect(containerArgv({ ...base, gpus: true, command: ["python3", "t.py"] })).toEqual([
      "/usr/bin/apptainer", "exec", "--cleanenv", "--contain", "--env-file", "/w/a/.container-env", "--pwd", "/w/a/workspace", "--bind", "/w/a:/w/a", "--nv", "/c/img.sif", "python3", "t.py",
    ]);
    expect(containerArgv({ ...base, gpus: false, command: containerScript(null, []) })).toEqual([
      "/usr/bin/apptainer", "run", "--cleanenv", "--contain", "--env-file", "/w/a/.container-env", "--pwd", "/w/a/workspace", "--bind", "/w/a:/w/a", "/c/img.sif",
    ]);
    expect(containerScript("-m", ["pkg.train", "--x"])).toEqual(["python3", "-m", "pkg.train", "--x"]);
  });

  test("registry references are recognised; storage locations are not", () => {
    for (const r of ["docker://python:3.11", "library://lolcow", "shub://a/b", "oras://ghcr.io/x:1", "docker-archive://x.tar"]) expect(isRegistryReference(r)).toBe(true);
    for (const l of ["s3://h/b/k.sif", "gs://b/k.sif", "file:///x.sif", "https://h/x.sif"]) expect(isRegistryReference(l)).toBe(false);
  });

  test("the env file is private and survives quotes, spaces, newlines and $ when a shell sources it", () => {
    const dir = mkdtempSync(join(tmpdir(), "envfile-"));
    try {
      const file = join(dir, ".container-env");
      const env = { A: "it's $HOME and `x`", B: "two\nlines", C: "", "BAD-NAME": "dropped" };
      writeEnvFile(file, env);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const r = spawnSync("bash", ["-c", 'set -a; . "$1"; printf "%s|" "$A" "$B" "$C"', "_", file], { encoding: "utf8", env: {} });
      expect(r.stdout).toBe("it's $HOME and `x`|two\nlines||");
      expect(readFileSync(file, "utf8")).not.toContain("BAD-NAME");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the container gets the job's variables, not what merely passed through from the runner", () => {
    const runner = { PATH: "/usr/bin", HOME: "/root", LANG: "C.UTF-8", CUDA_VISIBLE_DEVICES: "-1" };
    const job = { PATH: "/usr/bin", HOME: "/root", LANG: "C.UTF-8", CUDA_VISIBLE_DEVICES: "-1", STUDIOML_EXPERIMENT: "k", USER_VAR: "x", VIRTUAL_ENV: "/v" };
    expect(containerEnv(job, runner)).toEqual({ CUDA_VISIBLE_DEVICES: "-1", STUDIOML_EXPERIMENT: "k", USER_VAR: "x" });
  });
});
