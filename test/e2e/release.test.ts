// The release (`npm run release`, build/release.ts), built twice from this commit: one archive per
// Linux target with the expected files, SHA256SUMS that check, signatures that verify offline with
// ssh-keygen, the same checksums both times, binaries of the right architecture and C library; the
// x64 ones run here, the arm64 one under qemu-user with Debian's aarch64 glibc, the baseline one
// under an emulated CPU without AVX2, and the musl one under Debian's musl loader;
// the demo runs from an unpacked archive in a network namespace with no network, pip given only a
// wheelhouse; install.sh from an unpacked archive checks its files and its signature before it installs.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { buildRelease, RELEASE_TARGETS, SIGNATURE_NAMESPACE } from "../../build/release.ts";
import pkg from "../../package.json" with { type: "json" };

const BUILD_TIMEOUT_MS = 900_000;
let root: string;
let first: string;
let key: string;
let allowedSigners: string;
const SIGNER = "release@studio-runner";

function sh(command: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(command, args, { cwd: options.cwd, encoding: "utf8", env: { ...process.env, ...options.env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "release-"));
  key = join(root, "release-key");
  expect(sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", SIGNER, "-f", key]).code).toBe(0);
  allowedSigners = join(root, "allowed_signers");
  writeFileSync(allowedSigners, `${SIGNER} ${readFileSync(`${key}.pub`, "utf8").trim()}\n`);
  process.env.RELEASE_SIGNING_KEY = key;
  first = join(root, "first");
  await buildRelease(first);
}, BUILD_TIMEOUT_MS);

afterAll(() => {
  delete process.env.RELEASE_SIGNING_KEY;
  rmSync(root, { recursive: true, force: true });
});

const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";
const MUSL_LOADER = "/lib/ld-musl-x86_64.so.1";
/** The wheels of this machine's offline PyPI mirror (test-infra.md). */
const PYPI_FILES = "/opt/pypi/files";
/** Where Debian keeps the (glibc) C++ runtime. */
const GLIBC_LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"];

function tool(name: string): string | undefined {
  const r = spawnSync("bash", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** A tool this test needs is not on the machine: a failure under CI (.ci/run installs it), a note elsewhere. */
function missing(what: string): void {
  if (process.env.CI) throw new Error(`${what} is missing (.ci/run installs it)`);
  console.warn(`release test: ${what} not installed here; this check did not run`);
}

const archiveOf = (target: string) => `studio-runner-${pkg.version}-${target}.tar.gz`;

function unpack(target: string): string {
  const dest = mkdtempSync(join(root, `unpacked-${target}-`));
  expect(sh("tar", ["-xzf", join(first, archiveOf(target)), "-C", dest]).code).toBe(0);
  return join(dest, `studio-runner-${pkg.version}-${target}`);
}

describe("release archives", () => {
  test("one archive per target, SHA256SUMS that check and a signature that verifies offline", () => {
    expect(readdirSync(first).sort()).toEqual(
      [...RELEASE_TARGETS.map(archiveOf), "SHA256SUMS", "SHA256SUMS.sig"].sort(),
    );
    expect(sh("sha256sum", ["--strict", "-c", "SHA256SUMS"], { cwd: first }).code).toBe(0);
    const verify = (sums: string) =>
      spawnSync(
        "ssh-keygen",
        ["-Y", "verify", "-f", allowedSigners, "-I", SIGNER, "-n", SIGNATURE_NAMESPACE, "-s", `${sums}.sig`],
        { input: readFileSync(sums) },
      ).status;
    expect(verify(join(first, "SHA256SUMS"))).toBe(0);
    // One changed byte in the list and the signature no longer holds.
    const forged = join(root, "SHA256SUMS");
    writeFileSync(
      forged,
      readFileSync(join(first, "SHA256SUMS"), "utf8").replace(/^./, (c) => (c === "0" ? "1" : "0")),
    );
    writeFileSync(`${forged}.sig`, readFileSync(join(first, "SHA256SUMS.sig")));
    expect(verify(forged)).not.toBe(0);
  });

  test("each archive: the binary, LICENSE, README, unit, install.sh, example config and their checksums", () => {
    const architecture: Record<string, RegExp> = {
      "linux-x64": /x86-64.*interpreter \/lib64\/ld-linux-x86-64/,
      "linux-x64-baseline": /x86-64.*interpreter \/lib64\/ld-linux-x86-64/,
      "linux-arm64": /ARM aarch64.*interpreter \/lib\/ld-linux-aarch64/,
      "linux-x64-musl": /x86-64.*interpreter \/lib\/ld-musl-x86_64/,
      "linux-arm64-musl": /ARM aarch64.*interpreter \/lib\/ld-musl-aarch64/,
    };
    for (const target of RELEASE_TARGETS) {
      const listing = sh("tar", ["-tvzf", join(first, archiveOf(target))])
        .out.trim()
        .split("\n");
      const dir = `studio-runner-${pkg.version}-${target}`;
      expect(listing.map((l) => l.split(/\s+/).at(-1)).sort()).toEqual(
        [
          `${dir}/`,
          `${dir}/LICENSE`,
          `${dir}/README.md`,
          `${dir}/SHA256SUMS`,
          `${dir}/SHA256SUMS.sig`,
          `${dir}/config.example.yaml`,
          `${dir}/demo.sh`,
          `${dir}/hello/`,
          `${dir}/hello/train.py`,
          `${dir}/install.sh`,
          `${dir}/studio-runner`,
          `${dir}/studio-runner.service`,
        ].sort(),
      );
      // Owner 0, no build machine's user names in the archive.
      for (const line of listing) expect(line.split(/\s+/)[1]).toBe("0/0");
      const unpacked = unpack(target);
      expect(sh("sha256sum", ["--strict", "-c", "SHA256SUMS"], { cwd: unpacked }).code).toBe(0);
      expect(sh("file", ["-L", join(unpacked, "studio-runner")]).out).toMatch(architecture[target]!);
    }
  });

  test("the x64 binaries run here and say which target they are", () => {
    for (const target of ["linux-x64", "linux-x64-baseline"]) {
      const r = sh(join(unpack(target), "studio-runner"), ["version", "--json"]);
      expect(r.code).toBe(0);
      const v = JSON.parse(r.out);
      expect(v).toMatchObject({ version: pkg.version, target });
      expect(v.buildDate).toMatch(/^\d{4}-\d\d-\d\dT/);
    }
  });

  test("the arm64 binary runs under qemu-user: --version, version --json, gpus --json, doctor", () => {
    const qemu = tool("qemu-aarch64-static") ?? tool("qemu-aarch64");
    if (!qemu || !existsSync(ARM64_SYSROOT)) return missing("qemu-aarch64 and Debian's libc6-arm64-cross");
    const bin = join(unpack("linux-arm64"), "studio-runner");
    const run = (args: string[]) => sh(qemu, ["-L", ARM64_SYSROOT, bin, ...args]);
    const version = run(["--version"]);
    expect(version.code).toBe(0);
    expect(version.out.trim()).toBe(pkg.version);
    const json = run(["version", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({ version: pkg.version, target: "linux-arm64" });
    const gpus = run(["gpus", "--json"]);
    expect(gpus.code).toBe(0);
    expect(Array.isArray(JSON.parse(gpus.out).devices)).toBe(true); // none here: no NVML under emulation
    // doctor: the emulated binary probes this machine's python, bwrap, cgroups and directories.
    const dirs = mkdtempSync(join(root, "doctor-arm64-"));
    const doctor = run([
      "doctor",
      "--json",
      "--queue-root",
      join(dirs, "queue"),
      "--working-dir",
      dirs,
      "--cache-dir",
      join(dirs, "cache"),
      "--storage",
      `file://${join(dirs, "storage")}`,
    ]);
    console.log(`release test: doctor of the arm64 binary under qemu-user exited ${doctor.code}\n${doctor.out}`);
    const report = JSON.parse(doctor.out);
    expect(report.checks.filter((c: { status: string }) => c.status === "fail")).toEqual([]);
    expect(doctor.code).toBe(0);
  }, 300_000);

  test("under an emulated CPU without AVX2 the baseline binary runs (and so, measured, does the default one)", () => {
    const qemu = tool("qemu-x86_64-static") ?? tool("qemu-x86_64");
    if (!qemu) return missing("qemu-x86_64");
    // Nehalem: SSE4.2, no AVX at all (as the older Xeons of many GPU nodes). The emulated CPU
    // really refuses AVX2: one vpaddd on a ymm register dies with SIGILL there.
    const probeDir = mkdtempSync(join(root, "avx2-"));
    writeFileSync(
      join(probeDir, "avx2.c"),
      'int main(void) { __asm__ volatile("vpaddd %%ymm0, %%ymm0, %%ymm0" ::: "xmm0"); return 0; }\n',
    );
    expect(sh("cc", ["-O1", "-o", join(probeDir, "avx2"), join(probeDir, "avx2.c")]).code).toBe(0);
    expect(sh(join(probeDir, "avx2"), []).code).toBe(0);
    expect(sh(qemu, ["-cpu", "Nehalem", join(probeDir, "avx2")]).code).not.toBe(0);
    const onOldCpu = (target: string, args: string[]) =>
      sh(qemu, ["-cpu", "Nehalem", join(unpack(target), "studio-runner"), ...args]);
    for (const args of [["--version"], ["version", "--json"], ["gpus", "--json"]]) {
      const baseline = onOldCpu("linux-x64-baseline", args);
      expect(baseline.code).toBe(0);
    }
    expect(onOldCpu("linux-x64-baseline", ["--version"]).out.trim()).toBe(pkg.version);
    // Why the default build is not shown failing: Bun 1.4.5's linux-x64 build chooses its AVX2
    // code at run time, and none of these commands (nor a whole `run` to idle exit, tried by hand)
    // executed an AVX2 instruction on this emulated CPU. Bun supports that build on AVX2 CPUs only,
    // so releases carry the baseline build for the others. What happened is printed, not asserted.
    const modern = onOldCpu("linux-x64", ["--version"]);
    console.log(`release test: the default linux-x64 binary under -cpu Nehalem exited ${modern.code}`);
  });

  test("the musl binary runs under Debian's musl loader (with glibc's C++ runtime and a 7-symbol shim)", () => {
    if (!existsSync(MUSL_LOADER)) return missing(`Debian's musl (${MUSL_LOADER})`);
    const bin = join(unpack("linux-x64-musl"), "studio-runner");
    const needed = sh("readelf", ["-d", bin])
      .out.split("\n")
      .map((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)?.[1])
      .filter(Boolean);
    expect(needed).toContain("libc.musl-x86_64.so.1");
    expect(needed.every((n) => n === "libc.musl-x86_64.so.1" || /^lib(stdc\+\+|gcc_s|m)\.so/.test(n!))).toBe(true);
    // Debian ships musl's loader and C library but no libstdc++ built for musl (Alpine's
    // `apk add libstdc++ libgcc` does): alone, the loader stops at exactly that and nothing else.
    const bare = sh(MUSL_LOADER, [bin, "--version"]);
    const missingLibraries = [...`${bare.out}${bare.err}`.matchAll(/Error loading shared library ([^:]+):/g)].map(
      (m) => m[1],
    );
    expect(missingLibraries.length).toBeGreaterThan(0);
    expect(missingLibraries.every((l) => /^lib(stdc\+\+|gcc_s)\.so/.test(l!))).toBe(true);
    // Given Debian's libstdc++ and libgcc_s (glibc builds) and a shim for the glibc-only symbols
    // they use, the musl binary itself runs on musl: its C library calls all go to musl.
    const libs = mkdtempSync(join(root, "musl-libs-"));
    for (const name of ["libstdc++.so.6", "libgcc_s.so.1"]) {
      const from = GLIBC_LIB_DIRS.map((d) => join(d, name)).find((p) => existsSync(p));
      if (!from) return missing(`Debian's ${name}`);
      copyFileSync(from, join(libs, name));
    }
    const shim = sh("cc", [
      "-shared",
      "-fPIC",
      "-nostdlib",
      "-Wl,-soname,ld-linux-x86-64.so.2",
      "-o",
      join(libs, "ld-linux-x86-64.so.2"),
      join(import.meta.dir, "../helpers/musl-shim/glibc-symbols.c"),
    ]);
    expect(shim.code).toBe(0);
    const onMusl = (args: string[]) => sh(MUSL_LOADER, ["--library-path", libs, bin, ...args]);
    const version = onMusl(["--version"]);
    expect(version.code).toBe(0);
    expect(version.out.trim()).toBe(pkg.version);
    const json = onMusl(["version", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({ version: pkg.version, target: "linux-x64-musl" });
    const gpus = onMusl(["gpus", "--json"]);
    expect(gpus.code).toBe(0);
    expect(Array.isArray(JSON.parse(gpus.out).devices)).toBe(true);
  });

  test(
    "the same commit built twice gives the same SHA256SUMS",
    async () => {
      const second = join(root, "second");
      await buildRelease(second);
      expect(readFileSync(join(second, "SHA256SUMS"), "utf8")).toBe(readFileSync(join(first, "SHA256SUMS"), "utf8"));
    },
    BUILD_TIMEOUT_MS,
  );

  test("the demo runs from an unpacked archive with no network at all, pip given only a wheelhouse", async () => {
    const wheel = readdirSync(PYPI_FILES).find((f) => /^six-[\d.]+-py2\.py3-none-any\.whl$/.test(f));
    if (!wheel) return missing(`a six wheel in ${PYPI_FILES} (the machine's offline mirror)`);
    // A path with no node_modules anywhere above it, readable by the job user the runner (root) drops to.
    const place = mkdtempSync(join(tmpdir(), "release-demo-"));
    try {
      chmodSync(place, 0o755);
      for (let d = place; d !== "/"; d = dirname(d)) expect(existsSync(join(d, "node_modules"))).toBe(false);
      expect(sh("tar", ["-xzf", join(first, archiveOf("linux-x64")), "-C", place]).code).toBe(0);
      const unpacked = join(place, `studio-runner-${pkg.version}-linux-x64`);
      const wheelhouse = join(place, "wheelhouse");
      mkdirSync(wheelhouse, { mode: 0o755 });
      copyFileSync(join(PYPI_FILES, wheel), join(wheelhouse, wheel));
      chmodSync(join(wheelhouse, wheel), 0o644);
      const requirements = join(place, "requirements.txt");
      writeFileSync(requirements, `six==${wheel.split("-")[1]}\n`);
      // The namespace really has no network: this machine's loopback server cannot be reached from it.
      const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const probe = `import socket; socket.create_connection(("127.0.0.1", ${server.port}), timeout=3)`;
      expect(sh("python3", ["-c", probe]).code).toBe(0);
      expect(sh("unshare", ["-n", "python3", "-c", probe]).code).not.toBe(0);
      server.stop(true);
      // Nothing of this machine's pip setup: no index in the environment, a HOME without pip.conf.
      const env: Record<string, string> = {
        PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        HOME: join(place, "home"),
        LANG: "C.UTF-8",
        DEMO_DIR: join(place, "demo"),
        DEMO_REQUIREMENTS: requirements,
      };
      const r = spawnSync(
        "unshare",
        ["-n", join(unpacked, "demo.sh"), "--pip-find-links", wheelhouse, "--pip-no-index"],
        { cwd: place, env, encoding: "utf8", timeout: 600_000 },
      );
      console.log(`release test: demo from the archive under unshare -n exited ${r.status}\n${r.stdout}\n${r.stderr}`);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain("step 6: loss=");
      expect(r.stdout).toContain("saved model to modeldir/model.json");
      expect(r.stdout).toMatch(/\{"w": 2\.98/);
      // The environment build installed the pin, and it can only have come from the wheelhouse.
      expect(r.stdout).toContain("requirements: 1 installed as pinned, 0 at another version, 0 missing");
    } finally {
      rmSync(place, { recursive: true, force: true });
    }
  }, 600_000);

  test("install.sh from an unpacked archive checks the files and the signature before it installs", () => {
    const unpacked = unpack("linux-x64");
    const install = (stage: string, extra: string[] = []) =>
      sh("bash", [join(unpacked, "install.sh"), "--prefix", "/usr/local", ...extra], { env: { DESTDIR: stage } });
    const good = mkdtempSync(join(root, "stage-"));
    const r = install(good, ["--allowed-signers", allowedSigners]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("signature of SHA256SUMS verified");
    expect(r.out).toContain("files match SHA256SUMS");
    expect(existsSync(join(good, "usr/local/bin/studio-runner"))).toBe(true);
    expect(readFileSync(join(good, "etc/systemd/system/studio-runner.service"), "utf8")).toContain(
      "ExecStart=/usr/local/bin/studio-runner run",
    );
    // The allowed-signers file is kept: the next run (an upgrade) checks the signature unasked.
    expect(readFileSync(join(good, "etc/studio-runner/allowed_signers"), "utf8")).toBe(
      readFileSync(allowedSigners, "utf8"),
    );
    const again = install(good, ["--upgrade"]);
    expect(again.code).toBe(0);
    expect(again.out).toContain("kept from an earlier install");
    expect(again.out).toContain("signature of SHA256SUMS verified");

    // A key the operator does not trust: refused, nothing installed.
    const other = join(root, "other-key");
    sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", SIGNER, "-f", other]);
    const untrusted = join(root, "untrusted_signers");
    writeFileSync(untrusted, `${SIGNER} ${readFileSync(`${other}.pub`, "utf8").trim()}\n`);
    const refusedStage = mkdtempSync(join(root, "stage-"));
    const refused = install(refusedStage, ["--allowed-signers", untrusted]);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain("signature does not verify");
    expect(existsSync(join(refusedStage, "usr"))).toBe(false);
    // A kept file that does not trust this release's key: refused without being asked.
    const pinned = mkdtempSync(join(root, "stage-"));
    mkdirSync(join(pinned, "etc/studio-runner"), { recursive: true });
    writeFileSync(join(pinned, "etc/studio-runner/allowed_signers"), readFileSync(untrusted));
    const refusedByKept = install(pinned);
    expect(refusedByKept.code).not.toBe(0);
    expect(refusedByKept.err).toContain("signature does not verify");
    expect(existsSync(join(pinned, "usr"))).toBe(false);

    // A binary changed after the release: refused, nothing installed.
    appendFileSync(join(unpacked, "studio-runner"), "tampered");
    const tamperedStage = mkdtempSync(join(root, "stage-"));
    const tampered = install(tamperedStage);
    expect(tampered.code).not.toBe(0);
    expect(tampered.err).toContain("do not match SHA256SUMS");
    expect(existsSync(join(tamperedStage, "usr"))).toBe(false);
  });
});
