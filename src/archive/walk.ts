// Walks a job-written directory tree relative to directory descriptors, never leaving it: every
// entry is listed, lstat'ed and then opened with O_NOFOLLOW through its parent's descriptor, and
// the opened file's device/inode must be the one the listing saw. A link is reported as a link
// (its target text only), FIFOs, sockets and devices are left out without being opened for
// reading, and an entry swapped between listing and open is looked at again, then left out.

import type { BigIntStats } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { at, DIRECTORY_NOFOLLOW, errnoOf, isLinkRefusal, kindOf, READ_NOFOLLOW, sameFile, self } from "../fs/safe-open.ts";

/** Looks at an entry that changed between listing and open this many times before leaving it out. */
const SWAP_TRIES = 3;
/** Directories nested deeper than this are left out (each level holds a descriptor open). */
export const MAX_WALK_DEPTH = 256;
/** Member names longer than PATH_MAX are left out (unpacking refuses them anyway). */
const MAX_REL_BYTES = 4095;

type Common = { rel: string; mode: number; mtime: Date };
export type WalkEntry =
  | (Common & { kind: "dir" })
  | (Common & { kind: "symlink"; target: string })
  /** `file` is open for reading (openFiles) and the consumer closes it; sizeBytes is the open file's. */
  | (Common & { kind: "file"; sizeBytes: number; file?: FileHandle });

export type SkippedEntry = { rel: string; why: string };

export type WalkOptions = {
  /** Open each regular file (O_NOFOLLOW, device/inode checked) for the consumer to read. */
  openFiles: boolean;
  onSkipped?: (entry: SkippedEntry) => void;
};

const common = (rel: string, s: BigIntStats): Common => ({ rel, mode: Number(s.mode & 0o777n), mtime: new Date(Number(s.mtimeMs)) });

type Looked =
  | { entry: WalkEntry; dir?: FileHandle }
  | { gone: true }
  | { skip: string }
  | { retry: true };

/** One look at `name` in `dir`: what it is, opened where it must be, or why not. */
async function look(dir: FileHandle, name: string, rel: string, options: WalkOptions): Promise<Looked> {
  let listed: BigIntStats;
  try {
    listed = await lstat(at(dir, name), { bigint: true });
  } catch (err) {
    if (errnoOf(err) === "ENOENT") return { gone: true };
    throw err;
  }
  if (listed.isSymbolicLink()) {
    try {
      return { entry: { ...common(rel, listed), kind: "symlink", mode: 0o777, target: await readlink(at(dir, name)) } };
    } catch (err) {
      if (errnoOf(err) === "ENOENT") return { gone: true };
      if (errnoOf(err) === "EINVAL") return { retry: true }; // no longer a link
      throw err;
    }
  }
  if (!listed.isDirectory() && !listed.isFile()) return { skip: `${kindOf(listed)} (left out, not read)` };
  if (listed.isFile() && !options.openFiles) return { entry: { ...common(rel, listed), kind: "file", sizeBytes: Number(listed.size) } };
  let handle: FileHandle;
  try {
    handle = await open(at(dir, name), listed.isDirectory() ? DIRECTORY_NOFOLLOW : READ_NOFOLLOW);
  } catch (err) {
    if (errnoOf(err) === "ENOENT") return { gone: true };
    if (isLinkRefusal(err) || errnoOf(err) === "ENXIO") return { retry: true }; // swapped for a link or socket
    throw err;
  }
  let opened: BigIntStats;
  try {
    opened = await handle.stat({ bigint: true });
  } catch (err) {
    await handle.close();
    throw err;
  }
  const sameKind = listed.isDirectory() ? opened.isDirectory() : opened.isFile();
  if (!sameKind || !sameFile(listed, opened)) {
    await handle.close();
    return { retry: true };
  }
  if (opened.isDirectory()) return { entry: { ...common(rel, opened), kind: "dir" }, dir: handle };
  return { entry: { ...common(rel, opened), kind: "file", sizeBytes: Number(opened.size), file: handle } };
}

/**
 * Entries under the open directory `dir`, depth first in name order, a directory before its
 * contents. `dir` stays the caller's to close.
 */
export async function* walkDirectory(dir: FileHandle, options: WalkOptions, prefix = "", depth = 0): AsyncGenerator<WalkEntry> {
  const names = (await readdir(self(dir))).sort();
  for (const name of names) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (Buffer.byteLength(rel) > MAX_REL_BYTES) {
      options.onSkipped?.({ rel: `${rel.slice(0, 80)}…`, why: "name longer than PATH_MAX (left out)" });
      continue;
    }
    let looked: Looked = { retry: true };
    for (let attempt = 1; attempt <= SWAP_TRIES && "retry" in looked; attempt++) looked = await look(dir, name, rel, options);
    if ("gone" in looked) continue; // removed while the walk ran: not part of this pass
    if ("retry" in looked) {
      options.onSkipped?.({ rel, why: `changed between listing and open ${SWAP_TRIES} times (left out)` });
      continue;
    }
    if ("skip" in looked) {
      options.onSkipped?.({ rel, why: looked.skip });
      continue;
    }
    if (looked.entry.kind !== "dir") {
      yield looked.entry;
      continue;
    }
    const sub = looked.dir!;
    try {
      if (depth + 1 >= MAX_WALK_DEPTH) {
        options.onSkipped?.({ rel, why: `nested deeper than ${MAX_WALK_DEPTH} directories (contents left out)` });
        yield looked.entry;
        continue;
      }
      yield looked.entry;
      yield* walkDirectory(sub, options, rel, depth + 1);
    } finally {
      await sub.close();
    }
  }
}
