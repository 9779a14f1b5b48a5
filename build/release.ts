// `npm run release`: dist/release/ with one archive per Linux target a GPU fleet may need, each
// holding the binary, LICENSE, README, the systemd unit, install.sh, an example config, the demo
// (demo.sh and hello/) and the checksums of those files; SHA256SUMS of the archives; and, when RELEASE_SIGNING_KEY names an
// SSH private key, detached signatures of both checksum lists (`ssh-keygen -Y sign`, checked
// offline with `ssh-keygen -Y verify`). Archives are reproducible: names sorted, owner 0, every
// mtime the commit's, gzip without a name or time, so the same commit gives the same SHA256SUMS.

import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { buildIdentity, compileBinary } from "./compile.ts";

/** Bun's Linux runtimes: x64 (AVX2), x64-baseline (no AVX2), arm64 (Grace, Graviton), and musl. */
export const RELEASE_TARGETS = [
  "linux-x64",
  "linux-x64-baseline",
  "linux-arm64",
  "linux-x64-musl",
  "linux-arm64-musl",
] as const;

/** The namespace every release signature is made and verified in. */
export const SIGNATURE_NAMESPACE = "studio-runner-release";

const ROOT = join(import.meta.dir, "..");
/** What goes next to the binary, under the names it has in the archive. */
const PAYLOAD: Array<[from: string, as: string, mode: number]> = [
  ["LICENSE", "LICENSE", 0o644],
  ["README.md", "README.md", 0o644],
  ["deploy/systemd/studio-runner.service", "studio-runner.service", 0o644],
  ["deploy/install.sh", "install.sh", 0o755],
  ["deploy/config.example.yaml", "config.example.yaml", 0o644],
  ["examples/demo-run.sh", "demo.sh", 0o755],
  ["examples/hello/train.py", "hello/train.py", 0o644],
];

function run(command: string, args: string[], cwd = ROOT): string {
  const r = spawnSync(command, args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")}: ${r.stderr || r.error?.message || r.status}`);
  return r.stdout;
}

/** `sha256sum`'s own format ("<hex>  <name>"), names relative to `dir`, sorted. */
function checksums(dir: string, names: string[]): string {
  return run("sha256sum", ["--", ...[...names].sort()], dir);
}

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
}

function sign(file: string, key: string): void {
  rmSync(`${file}.sig`, { force: true });
  run("ssh-keygen", ["-q", "-Y", "sign", "-f", key, "-n", SIGNATURE_NAMESPACE, file]);
}

export async function buildRelease(outDir = join(ROOT, "dist/release")): Promise<string[]> {
  const id = buildIdentity();
  const key = process.env.RELEASE_SIGNING_KEY;
  rmSync(outDir, { recursive: true, force: true });
  const stage = join(outDir, ".stage");
  mkdirSync(stage, { recursive: true });
  const archives: string[] = [];
  for (const target of RELEASE_TARGETS) {
    const started = performance.now();
    const name = `studio-runner-${id.version}-${target}`;
    const dir = join(stage, name);
    mkdirSync(dir, { recursive: true });
    await compileBinary(join(dir, "studio-runner"), id, target);
    chmodSync(join(dir, "studio-runner"), 0o755);
    for (const [from, as, mode] of PAYLOAD) {
      mkdirSync(dirname(join(dir, as)), { recursive: true });
      copyFileSync(join(ROOT, from), join(dir, as));
      chmodSync(join(dir, as), mode);
    }
    writeFileSync(join(dir, "SHA256SUMS"), checksums(dir, filesUnder(dir)));
    if (key) sign(join(dir, "SHA256SUMS"), key);
    for (const f of readdirSync(dir)) if (f.startsWith("SHA256SUMS")) chmodSync(join(dir, f), 0o644);
    const archive = `${name}.tar.gz`;
    const tar = [
      "tar",
      "--sort=name",
      `--mtime=@${id.commitEpochS}`,
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--format=gnu",
      "-C",
      stage,
      "-cf",
      "-",
      name,
    ].join(" ");
    run("bash", ["-c", `set -o pipefail; ${tar} | gzip -n -9 > ${JSON.stringify(join(outDir, archive))}`]);
    archives.push(archive);
    console.log(`built ${archive} in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  }
  rmSync(stage, { recursive: true, force: true });
  writeFileSync(join(outDir, "SHA256SUMS"), checksums(outDir, archives));
  if (key) sign(join(outDir, "SHA256SUMS"), key);
  console.log(
    `${basename(outDir)}: ${archives.length} archives, SHA256SUMS${key ? " and SHA256SUMS.sig" : " (unsigned: no RELEASE_SIGNING_KEY)"}` +
      ` (studio-runner ${id.version}, commit ${id.commit})`,
  );
  return archives;
}
