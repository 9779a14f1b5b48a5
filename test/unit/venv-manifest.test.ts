// Covers src/env/venv-manifest.ts (a venv changed after its build is noticed: files added, edited,
// replaced, chmodded; sealing strips setid bits and group/world write) and the pieces of
// src/env/build-sandbox.ts that do not need a real build: the build's environment and command line.

import { describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildArgv, buildEnv, pipSettingPaths } from "../../src/env/build-sandbox.ts";
import { LAUNCHER_PATH } from "../../src/exec/launcher-env.ts";
import { manifestDigest, sealVenv, takeManifest, verifyManifest } from "../../src/env/venv-manifest.ts";

async function fakeVenv() {
  const dir = await mkdtemp(join(tmpdir(), "venv-manifest-"));
  const site = join(dir, "lib", "python3.11", "site-packages");
  mkdirSync(join(site, "pkg"), { recursive: true });
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(site, "pkg", "__init__.py"), "x = 1\n");
  writeFileSync(join(dir, "bin", "tool"), "#!/bin/sh\n");
  symlinkSync("/usr/bin/python3", join(dir, "bin", "python"));
  writeFileSync(join(dir, "pyvenv.cfg"), "home = /usr/bin\n");
  writeFileSync(join(dir, ".studio-runner-venv.json"), "{}");
  return { dir, site };
}

const settle = () => Bun.sleep(15); // ctime granularity on some file systems

describe("venv manifest", () => {
  test("an untouched venv matches; the runner's marker may change", async () => {
    const { dir } = await fakeVenv();
    const m = await takeManifest(dir);
    expect(m.toString("utf8").split("\0").filter(Boolean).length).toBe(10); // the marker left out
    await settle();
    writeFileSync(join(dir, ".studio-runner-venv.json"), '{"used": true}');
    expect(await verifyManifest(dir, manifestDigest(m), m)).toBeUndefined();
  });

  test.each([
    [
      "a .pth added to site-packages",
      ({ site }: { site: string }) => writeFileSync(join(site, "zzz.pth"), "import os\n"),
      /zzz\.pth was added/,
    ],
    [
      "a module edited (same size)",
      ({ site }: { site: string }) => writeFileSync(join(site, "pkg", "__init__.py"), "x = 2\n"),
      /__init__\.py was changed/,
    ],
    [
      "a module edited and its times put back",
      ({ site }: { site: string }) => {
        const p = join(site, "pkg", "__init__.py");
        const before = lstatSync(p);
        writeFileSync(p, "x = 3\n");
        utimesSync(p, before.atime, before.mtime);
      },
      /__init__\.py was changed/,
    ],
    [
      "a script made world-writable",
      ({ dir }: { dir: string }) => chmodSync(join(dir, "bin", "tool"), 0o777),
      /tool was changed/,
    ],
    [
      "a file replaced by rename",
      ({ dir }: { dir: string }) => {
        writeFileSync(join(dir, "new.cfg"), "home = /usr/bin\n");
        renameSync(join(dir, "new.cfg"), join(dir, "pyvenv.cfg"));
      },
      /was (replaced|changed)/,
    ],
  ])("%s is noticed", async (_what, change, reason) => {
    const v = await fakeVenv();
    const m = await takeManifest(v.dir);
    await settle();
    change(v);
    expect(await verifyManifest(v.dir, manifestDigest(m), m)).toMatch(reason);
  });

  test("sealing strips setuid/setgid/sticky and group/world write, keeps links, gives read to all", async () => {
    const { dir, site } = await fakeVenv();
    chmodSync(join(dir, "bin", "tool"), 0o6777);
    chmodSync(join(site, "pkg"), 0o1777);
    chmodSync(join(site, "pkg", "__init__.py"), 0o600);
    sealVenv(dir);
    expect(lstatSync(join(dir, "bin", "tool")).mode & 0o7777).toBe(0o755);
    expect(lstatSync(join(site, "pkg")).mode & 0o7777).toBe(0o755);
    expect(lstatSync(join(site, "pkg", "__init__.py")).mode & 0o7777).toBe(0o644);
    expect(lstatSync(join(dir, "bin", "python")).isSymbolicLink()).toBe(true);
  });
});

describe("build environment and command line", () => {
  test("the build's environment: fixed PATH/LANG/HOME, the operator's pip and proxy settings, nothing else", () => {
    const env = buildEnv(
      {
        PATH: "/evil/bin",
        LD_PRELOAD: "/tmp/evil.so",
        PYTHONPATH: "/tmp/evil",
        AWS_SECRET_ACCESS_KEY: "secret",
        PIP_INDEX_URL: "file:///opt/pypi/simple",
        PIP_CACHE_DIR: "/shared/cache",
        HTTPS_PROXY: "http://proxy:3128",
      },
      "/tmp",
    );
    expect(env).toEqual({
      PATH: LAUNCHER_PATH,
      LANG: "C.UTF-8",
      HOME: "/tmp",
      PIP_INDEX_URL: "file:///opt/pypi/simple",
      HTTPS_PROXY: "http://proxy:3128",
      PIP_NO_CACHE_DIR: "1",
      PIP_DISABLE_PIP_VERSION_CHECK: "1",
      PIP_NO_INPUT: "1",
    });
  });

  test("paths named in pip's settings are found (file: URLs included)", () => {
    expect(
      pipSettingPaths({ PIP_FIND_LINKS: "/tmp /nonexistent-dir", PIP_INDEX_URL: "file:///tmp", OTHER: "/usr" }),
    ).toEqual(["/tmp"]);
  });

  test("unsandboxed: a umask wrapper, and setpriv for a job user", () => {
    const cmd = ["/py", "-m", "venv", "/v"];
    expect(buildArgv({}, { buildDir: "/tmp", readOnlyPaths: [], runAsJobUser: false }, cmd)).toEqual([
      "/bin/sh",
      "-c",
      'umask 022 && exec "$@"',
      "sh",
      ...cmd,
    ]);
    const argv = buildArgv(
      { jobUser: { uid: 65534, gid: 65534, label: "nobody" } },
      { buildDir: "/tmp", readOnlyPaths: [], runAsJobUser: true },
      cmd,
    );
    expect(argv.slice(0, 4)).toEqual(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
  });

  test("sandboxed as a non-root runner: only the build dir writable, own user namespace, none nested", async () => {
    const build = await mkdtemp(join(tmpdir(), "build-"));
    const argv = buildArgv(
      { sandbox: { bwrapPath: "/usr/bin/bwrap", hiddenPaths: [] } },
      { buildDir: build, readOnlyPaths: ["/usr"], runAsJobUser: false },
      ["/py"],
    );
    expect(argv[0]).toBe("/usr/bin/bwrap");
    expect(argv.join(" ")).toContain(`--bind ${build} ${build}`);
    expect(argv).toContain("--unshare-user");
    expect(argv).toContain("--disable-userns");
    expect(argv).not.toContain("--unshare-net");
    expect(argv).not.toContain("--cap-add");
  });

  test("sandboxed as root: the outer bwrap keeps only CAP_SETUID/SETGID for setpriv; an inner bwrap maps the job user", async () => {
    const build = await mkdtemp(join(tmpdir(), "build-"));
    const argv = buildArgv(
      {
        sandbox: { bwrapPath: "/usr/bin/bwrap", hiddenPaths: [] },
        jobUser: { uid: 65534, gid: 65534, label: "nobody" },
      },
      { buildDir: build, readOnlyPaths: [], runAsJobUser: true },
      ["/py"],
    );
    const text = argv.join(" ");
    expect(text).toContain("--cap-drop ALL --cap-add CAP_SETUID --cap-add CAP_SETGID");
    expect(text).toMatch(
      /-- \/usr\/bin\/setpriv --reuid=65534 --regid=65534 --clear-groups .*-- \/usr\/bin\/bwrap --unshare-user --uid 65534 --gid 65534 --disable-userns/,
    );
    expect(text).toContain("--perms 1777 --tmpfs /tmp");
  });
});

test("a rewritten manifest does not vouch for a changed venv when the digest is known", async () => {
  const { dir, site } = await fakeVenv();
  const digest = manifestDigest(await takeManifest(dir));
  await settle();
  writeFileSync(join(site, "zzz.pth"), "import os\n");
  const forged = await takeManifest(dir);
  expect(await verifyManifest(dir, manifestDigest(forged), forged)).toBeUndefined();
  expect(await verifyManifest(dir, digest, forged)).toBe("it no longer matches its manifest");
});
