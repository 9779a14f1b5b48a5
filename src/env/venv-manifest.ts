// What a cached venv looked like when it was built, and whether it still does. Written once the
// build is finished (after sealVenv), checked before every reuse: a venv a job changed (a `.pth`
// added to site-packages, a module edited, a script replaced) no longer matches and is rebuilt.
//
// Each entry records the inode, size, mode, owner and the change time (ctime, in nanoseconds) of
// one path. Any write, rename, chmod, chown or utime sets the ctime to "now", and a process cannot
// set it back, so content changes are caught without reading the content. Adding or removing an
// entry changes its directory's mtime and ctime, so new files are caught without listing
// directories: verification is one lstat per recorded path.
//
// sealVenv, run by the runner once the build's processes are gone: hands everything back to the
// runner (as root) and removes setuid/setgid/sticky bits and group/world write permissions, so the
// venv is readable by jobs and writable by nobody but the runner. Entries a root runner finds
// owned by anyone else than the build user (hard links the build made to other files) are unlinked.

import { lchownSync, lstatSync, readdirSync, chmodSync, unlinkSync, rmSync } from "node:fs";
import { join } from "node:path";

type Entry = [path: string, mode: number, size: number, ino: string, uid: number, ctimeNs: string];

export type Manifest = { version: 1; entries: Entry[] };

/** Every path under `dir` (relative, "" for dir itself), depth first, without following links. */
function walk(dir: string, skip: Set<string>, visit: (rel: string, abs: string) => void): void {
  const stack: string[] = [""];
  while (stack.length) {
    const rel = stack.pop()!;
    const abs = rel ? join(dir, rel) : dir;
    visit(rel, abs);
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      continue;
    }
    if (!st.isDirectory()) continue;
    for (const name of readdirSync(abs)) {
      const child = rel ? `${rel}/${name}` : name;
      if (!skip.has(child)) stack.push(child);
    }
  }
}

/** The manifest of `dir` as it is now; `skip` names top-level files the runner rewrites (marker). */
export function takeManifest(dir: string, skip: string[]): Manifest {
  const entries: Entry[] = [];
  walk(dir, new Set(skip), (rel, abs) => {
    const s = lstatSync(abs, { bigint: true });
    entries.push([rel, Number(s.mode), Number(s.size), String(s.ino), Number(s.uid), String(s.ctimeNs)]);
  });
  return { version: 1, entries };
}

/** The first difference between `dir` and its manifest (a reason), or undefined when it matches. */
export function verifyManifest(dir: string, manifest: Manifest): string | undefined {
  if (manifest.version !== 1 || !Array.isArray(manifest.entries)) return "its manifest is unreadable";
  for (const [rel, mode, size, ino, uid, ctimeNs] of manifest.entries) {
    const abs = rel ? join(dir, rel) : dir;
    let s;
    try {
      s = lstatSync(abs, { bigint: true });
    } catch {
      return `${rel || "."} was removed`;
    }
    if (String(s.ino) !== ino) return `${rel || "."} was replaced`;
    if (String(s.ctimeNs) !== ctimeNs || Number(s.size) !== size || Number(s.mode) !== mode || Number(s.uid) !== uid) {
      return (s.mode & 0o170000n) === 0o040000n ? `${rel || "."} was changed (entries added, removed or renamed)` : `${rel || "."} was changed`;
    }
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
  walk(dir, new Set(), (rel, abs) => {
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
