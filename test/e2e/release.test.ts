// The release (`npm run release`, build/release.ts), built twice from this commit: one archive per
// Linux target with the expected files, SHA256SUMS that check, signatures that verify offline with
// ssh-keygen, the same checksums both times, binaries of the right architecture and C library; the
// x64 ones run here, the arm64 one under qemu-user with Debian's aarch64 glibc, the baseline one
// under an emulated CPU without AVX2, and the musl one is checked against Debian's musl loader;
// install.sh from an unpacked archive checks its files and its signature before it installs.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

  test("the arm64 binary runs under qemu-user: --version, version --json, gpus --json", () => {
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
  });

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

  test("the musl binary is linked for musl; Debian's musl loader finds all but the musl C++ runtime", () => {
    if (!existsSync(MUSL_LOADER)) return missing(`Debian's musl (${MUSL_LOADER})`);
    const bin = join(unpack("linux-x64-musl"), "studio-runner");
    const needed = sh("readelf", ["-d", bin])
      .out.split("\n")
      .map((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)?.[1])
      .filter(Boolean);
    expect(needed).toContain("libc.musl-x86_64.so.1");
    expect(needed.every((n) => n === "libc.musl-x86_64.so.1" || /^lib(stdc\+\+|gcc_s|m)\.so/.test(n!))).toBe(true);
    // Debian ships musl's loader and C library but no libstdc++ built for musl (Alpine's
    // `apk add libstdc++` does): run here, the loader stops at exactly that and nothing else.
    const r = sh(MUSL_LOADER, [bin, "--version"]);
    const missingLibraries = [...`${r.out}${r.err}`.matchAll(/Error loading shared library ([^:]+):/g)].map(
      (m) => m[1],
    );
    expect(missingLibraries.length).toBeGreaterThan(0);
    expect(missingLibraries.every((l) => /^lib(stdc\+\+|gcc_s)\.so/.test(l!))).toBe(true);
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

    // A binary changed after the release: refused, nothing installed.
    appendFileSync(join(unpacked, "studio-runner"), "tampered");
    const tamperedStage = mkdtempSync(join(root, "stage-"));
    const tampered = install(tamperedStage);
    expect(tampered.code).not.toBe(0);
    expect(tampered.err).toContain("do not match SHA256SUMS");
    expect(existsSync(join(tamperedStage, "usr"))).toBe(false);
  });
});
