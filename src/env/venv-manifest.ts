// What a cached venv looked like when it was built, and whether it still does. Written once the
// build is finished (after sealVenv), checked before every reuse: a venv a job changed (a `.pth`
// added to site-packages, a module edited, a script replaced) no longer matches and is rebuilt.
//
// Each entry records the type, mode (setid bits included), owner, inode, size and change time
// (ctime, in nanoseconds) of one path, as GNU find prints them. Any write, rename, chmod, chown or
// utime sets the ctime to "now", and a process cannot set it back, so content changes are caught
// without reading the content; an added or removed entry shows as a new or missing line, and in
// its directory's ctime. find walks a venv of torch's size (15k entries) in a fraction of the time
// one lstat per path takes from JavaScript.
//
// sealVenv, run by the runner once the build's processes are gone: hands everything back to the
// runner (as root) and removes setuid/setgid/sticky bits and group/world write permissions, so the
// venv is readable by jobs and writable by nobody but the runner. Entries a root runner finds
// owned by anyone else than the build user (hard links the build made to other files) are unlinked.

import { spawn } from "node:child_process";
import { chmodSync, lchownSync, lstatSync, readdirSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";

/** The files the runner itself rewrites in a venv (its marker, the manifest): left out at any depth. */
export const RUNNER_FILES = [".studio-runner-venv.json", ".studio-runner-manifest.json"];

/** Every path under `dir` (relative, "" for dir itself), parents before children, without following links. */
function walk(dir: string, visit: (rel: string, abs: string) => void): void {
  const stack: string[] = [""];
  while (stack.length) {
    const rel = stack.pop()!;
    const abs = rel ? join(dir, rel) : dir;
    visit(rel, abs);
    let isDir = false;
    try {
      isDir = lstatSync(abs).isDirectory();
    } catch {
      continue;
    }
    if (!isDir) continue;
    for (const name of readdirSync(abs)) stack.push(rel ? `${rel}/${name}` : name);
  }
}

/**
 * The manifest of `dir` as it is now: one NUL-terminated record per path (type, mode, owner,
 * inode, size, ctime, relative path) in directory order, the runner's own files left out (an entry
 * added under one of their names still changes its directory's record).
 */
export function takeManifest(dir: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const prune = RUNNER_FILES.flatMap((n, i) => (i ? ["-o", "-name", n] : ["-name", n]));
    const child = spawn("find", [dir, "(", ...prune, ")", "-prune", "-o", "-printf", "%y %m %U %G %i %s %C@ %P\\0"], {
      env: { PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const chunks: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stderr.on("data", (c: Buffer) => (err = (err + c.toString("utf8")).slice(-2000)));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`find ${dir} failed (${code}): ${err.trim()}`)),
    );
  });
}

export const manifestDigest = (manifest: Buffer | string) =>
  new Bun.CryptoHasher("sha256").update(manifest).digest("hex");

/**
 * The first difference between `dir` and the manifest whose digest is `digest` (a reason), or
 * undefined when it matches. `manifest`, the recorded text, only serves to say what changed.
 */
export async function verifyManifest(dir: string, digest: string, manifest?: Buffer): Promise<string | undefined> {
  const now = await takeManifest(dir);
  if (manifestDigest(now) === digest) return undefined;
  if (!manifest || manifestDigest(manifest) !== digest) return "it no longer matches its manifest";
  return describeDifference(manifest, now) ?? "its files were reordered";
}

/** What differs between two manifests of one venv: an added path first, then a removed one, then a changed one. */
export function describeDifference(before: Buffer, after: Buffer): string | undefined {
  const index = (m: Buffer) => {
    const out = new Map<string, string>();
    for (const record of m.toString("utf8").split("\0"))
      if (record) out.set(record.split(" ").slice(7).join(" ") || ".", record);
    return out;
  };
  const was = index(before);
  const is = index(after);
  for (const p of is.keys()) if (!was.has(p)) return `${p} was added`;
  for (const p of was.keys()) if (!is.has(p)) return `${p} was removed`;
  for (const [p, record] of is) {
    const old = was.get(p)!;
    if (old !== record) return old.split(" ")[4] !== record.split(" ")[4] ? `${p} was replaced` : `${p} was changed`;
  }
  return undefined;
}

/**
 * Make a finished build the runner's: with `owner` (a root runner), chown every entry to it,
 * unlinking entries not owned by `buildUid`; drop setuid/setgid/sticky bits and group/world
 * write; give group/world read (and search/execute where the owner has it).
 */
export function sealVenv(dir: string, owner?: { uid: number; gid: number; buildUid: number }): void {
  const foreign: string[] = [];
  walk(dir, (rel, abs) => {
    const s = lstatSync(abs);
    if (owner && rel && s.uid !== owner.buildUid) {
      foreign.push(abs);
      return;
    }
    if (owner) lchownSync(abs, owner.uid, owner.gid);
    if (s.isSymbolicLink()) return;
    let mode = s.mode & 0o7777 & ~0o7022;
    if (mode & 0o400) mode |= 0o044;
    if (mode & 0o100) mode |= 0o011;
    if (mode !== (s.mode & 0o7777) || owner) chmodSync(abs, mode);
  });
  for (const abs of foreign) {
    try {
      if (lstatSync(abs).isDirectory()) rmSync(abs, { recursive: true, force: true });
      else unlinkSync(abs);
    } catch {
      // already gone with its directory
    }
  }
}
