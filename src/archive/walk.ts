// Walks a job-written directory tree relative to directory descriptors, never leaving it: every
// entry is listed, lstat'ed and then opened with O_NOFOLLOW through its parent's descriptor, and
// the opened file's device/inode must be the one the listing saw. A link is reported as a link
// (its target text only), FIFOs, sockets and devices are left out without being opened for
// reading, and an entry swapped between listing and open is looked at again, then left out.

import { close, fstatSync, open as openFd, type Stats } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { promisify } from "node:util";
import {
  at,
  DIRECTORY_NOFOLLOW,
  errnoOf,
  isLinkRefusal,
  kindOf,
  READ_NOFOLLOW,
  sameFile,
  self,
} from "../fs/safe-open.ts";

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
  /** `fd` is open for reading (openFiles) and the consumer closes it (closeFile); sizeBytes is the open file's. */
  | (Common & { kind: "file"; sizeBytes: number; fd?: number });

export type SkippedEntry = { rel: string; why: string };

export type WalkOptions = {
  /** Open each regular file (O_NOFOLLOW, device/inode checked) for the consumer to read. */
  openFiles: boolean;
  onSkipped?: (entry: SkippedEntry) => void;
};

// Files are opened as plain descriptors: a FileHandle per file costs measurably on many small files.
const openFile = promisify(openFd) as (path: string, flags: number) => Promise<number>;
// fstat of a descriptor just opened answers from the inode in memory (no path walk, no wait on
// NFS, whose open already revalidated it): done synchronously, it saves a thread-pool hop per file.
const fstatOf = async (fd: number): Promise<Stats> => fstatSync(fd);
/** Closes a file descriptor the walk handed out. */
export const closeFile = promisify(close);

const common = (rel: string, s: Stats): Common => ({ rel, mode: s.mode & 0o777, mtime: s.mtime });

type Looked = { entry: WalkEntry; dir?: FileHandle } | { gone: true } | { skip: string } | { retry: true };

/** One look at `name` in `dir`: what it is, opened where it must be, or why not. */
async function look(dir: FileHandle, name: string, rel: string, options: WalkOptions): Promise<Looked> {
  let listed: Stats;
  try {
    listed = await lstat(at(dir, name));
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
  if (listed.isFile() && !options.openFiles)
    return { entry: { ...common(rel, listed), kind: "file", sizeBytes: listed.size } };
  const isDir = listed.isDirectory();
  let handle: FileHandle | undefined;
  let fd: number;
  try {
    if (isDir) {
      handle = await open(at(dir, name), DIRECTORY_NOFOLLOW);
      fd = handle.fd;
    } else {
      fd = await openFile(at(dir, name), READ_NOFOLLOW);
    }
  } catch (err) {
    if (errnoOf(err) === "ENOENT") return { gone: true };
    if (isLinkRefusal(err) || errnoOf(err) === "ENXIO") return { retry: true }; // swapped for a link or socket
    throw err;
  }
  const release = () => (handle ? handle.close() : closeFile(fd));
  let opened: Stats;
  try {
    opened = await fstatOf(fd);
  } catch (err) {
    await release();
    throw err;
  }
  const sameKind = isDir ? opened.isDirectory() : opened.isFile();
  if (!sameKind || !sameFile(listed, opened)) {
    await release();
    return { retry: true };
  }
  if (handle) return { entry: { ...common(rel, opened), kind: "dir" }, dir: handle };
  return { entry: { ...common(rel, opened), kind: "file", sizeBytes: opened.size, fd } };
}

/**
 * Entries under the open directory `dir`, depth first in name order, a directory before its
 * contents. `dir` stays the caller's to close.
 */
export async function* walkDirectory(
  dir: FileHandle,
  options: WalkOptions,
  prefix = "",
  depth = 0,
): AsyncGenerator<WalkEntry> {
  const names = (await readdir(self(dir))).sort();
  for (const name of names) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (Buffer.byteLength(rel) > MAX_REL_BYTES) {
      options.onSkipped?.({ rel: `${rel.slice(0, 80)}…`, why: "name longer than PATH_MAX (left out)" });
      continue;
    }
    let looked: Looked = { retry: true };
    for (let attempt = 1; attempt <= SWAP_TRIES && "retry" in looked; attempt++)
      looked = await look(dir, name, rel, options);
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
