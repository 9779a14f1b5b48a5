// Opening, listing and creating names relative to an open directory without following symbolic
// links, for places a job (or another local user) can write. Linux has openat(2); Node and Bun
// only take paths, but `/proc/self/fd/<dirfd>/<name>` resolves `<name>` inside the directory the
// descriptor holds, whatever has since been renamed or swapped around it, and O_NOFOLLOW then
// applies to `<name>` itself: openat semantics through plain open(), on the async thread pool.

import { constants, type Stats } from "node:fs";
import { lstat, mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { PermanentError } from "../errors.ts";

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK, O_NOCTTY } = constants;

/** A directory, never through a link at its last component. */
export const DIRECTORY_NOFOLLOW = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
/** A file to read: not through a link, and a FIFO or device swapped in cannot block the open. */
export const READ_NOFOLLOW = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
/** A file the runner creates: fails on anything already there, a link included. */
const CREATE_EXCLUSIVE = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY;

/** Tries to make room for a runner-written file before giving up (a job may keep re-planting). */
const CREATE_TRIES = 5;

/** The path that names `name` inside the directory `dir` holds open (openat through /proc). */
export function at(dir: FileHandle, name: string): string {
  if (!name || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new Error(`not a single file name: ${JSON.stringify(name)}`);
  }
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** The directory itself, by its descriptor (for readdir). */
export function self(dir: FileHandle): string {
  return `/proc/self/fd/${dir.fd}`;
}

/** True when an open refused because the name is a link, or not a directory where one was asked. */
export function isLinkRefusal(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === "ELOOP" || code === "ENOTDIR";
}

export const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException)?.code;

/** What stands at a path where a directory was expected, in words (never a link's target). */
export type NotADirectory = "a symbolic link" | "missing" | "not a directory";

/** Opens a directory without following a link at its last component; says what is there instead. */
export async function tryOpenDirectory(path: string): Promise<{ dir: FileHandle } | { not: NotADirectory }> {
  try {
    return { dir: await open(path, DIRECTORY_NOFOLLOW) };
  } catch (err) {
    if (errnoOf(err) === "ENOENT") return { not: "missing" };
    if (!isLinkRefusal(err)) throw err;
    const s = await lstat(path).catch(() => undefined);
    return { not: s?.isSymbolicLink() ? "a symbolic link" : s ? "not a directory" : "missing" };
  }
}

/** Same device and inode: the entry opened is the one the listing saw. */
export function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** Moves whatever stands at `name` out of the way: unlinked (never followed), a directory renamed aside. */
async function clearName(dir: FileHandle, name: string): Promise<void> {
  try {
    await unlink(at(dir, name));
  } catch (err) {
    const code = errnoOf(err);
    if (code === "ENOENT") return;
    if (code !== "EISDIR" && code !== "EPERM") throw err;
    await rename(at(dir, name), at(dir, `${name}.planted-${crypto.randomUUID().slice(0, 8)}`));
  }
}

/**
 * Creates `name` in the open directory with O_CREAT|O_EXCL|O_NOFOLLOW and writes `data`: whatever a
 * job planted at that name (a link to a host file, a file, a directory) is removed first, never
 * written through. `mode` is narrowed by the umask, as with any create, unless `exactMode` (a file
 * the job must read even under the runner's umask 077, such as the artifact mapping).
 */
export async function writeFileExclusiveAt(
  dir: FileHandle,
  name: string,
  data: string | Uint8Array,
  mode = 0o644,
  options: { exactMode?: boolean } = {},
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let file: FileHandle;
    try {
      file = await open(at(dir, name), CREATE_EXCLUSIVE, mode);
    } catch (err) {
      if (errnoOf(err) !== "EEXIST" || attempt >= CREATE_TRIES) throw err;
      await clearName(dir, name);
      continue;
    }
    try {
      await file.writeFile(data);
      if (options.exactMode) await file.chmod(mode);
    } finally {
      await file.close();
    }
    return;
  }
}

/**
 * Opens (creating when missing) the sub-directory `name` of an open directory, never through a
 * link: a link or file planted there is moved aside and a real directory made.
 */
export async function ensureDirectoryAt(parent: FileHandle, name: string, mode = 0o755): Promise<FileHandle> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(at(parent, name), { mode }).catch((err) => {
      if (errnoOf(err) !== "EEXIST") throw err;
    });
    try {
      return await open(at(parent, name), DIRECTORY_NOFOLLOW);
    } catch (err) {
      if (!isLinkRefusal(err) || attempt >= CREATE_TRIES) throw err;
      await clearName(parent, name);
    }
  }
}

/**
 * Writes a runner-owned file `name` into the directory at `dirPath` (created when missing), where
 * a job can write: the directory is not followed when it is a link, nor is the file.
 */
export async function writeRunnerFile(
  dirPath: string,
  name: string,
  data: string | Uint8Array,
  mode = 0o644,
  options: { exactMode?: boolean } = {},
): Promise<void> {
  const cut = dirPath.replace(/\/+$/, "").lastIndexOf("/");
  const parentPath = cut <= 0 ? "/" : dirPath.slice(0, cut);
  const base = dirPath.slice(cut + 1);
  const parent = await open(parentPath, DIRECTORY_NOFOLLOW);
  try {
    const dir = await ensureDirectoryAt(parent, base);
    try {
      await writeFileExclusiveAt(dir, name, data, mode, options);
    } finally {
      await dir.close();
    }
  } finally {
    await parent.close();
  }
}

/** Why a file that should be a plain file is refused; words only, never a link's target or content. */
export class NotARegularFileError extends PermanentError {
  constructor(
    readonly what: string,
    readonly kind: string,
  ) {
    super(`${what} is ${kind}, not a regular file: it was not read`);
  }
}

/** Describes a file type from a stat, for refusals. */
export function kindOf(s: {
  isSymbolicLink(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isBlockDevice(): boolean;
  isCharacterDevice(): boolean;
  isFile(): boolean;
}): string {
  if (s.isSymbolicLink()) return "a symbolic link";
  if (s.isDirectory()) return "a directory";
  if (s.isFIFO()) return "a FIFO";
  if (s.isSocket()) return "a socket";
  if (s.isBlockDevice() || s.isCharacterDevice()) return "a device";
  if (s.isFile()) return "a regular file";
  return "an unknown kind of file";
}

/**
 * Reads a whole regular file without following a link at its last component and without
 * blocking on a FIFO: anything else throws NotARegularFileError (naming `what`, never the target).
 */
export async function readRegularFileNoFollow(path: string, what: string): Promise<Buffer> {
  let file: FileHandle;
  try {
    file = await open(path, READ_NOFOLLOW);
  } catch (err) {
    if (errnoOf(err) === "ELOOP") throw new NotARegularFileError(what, "a symbolic link");
    if (errnoOf(err) === "ENXIO") throw new NotARegularFileError(what, "a socket");
    throw err;
  }
  try {
    const s = await file.stat();
    if (!s.isFile()) throw new NotARegularFileError(what, kindOf(s));
    return await file.readFile();
  } finally {
    await file.close();
  }
}

/**
 * Opens the directory `parts` below `root` (the operator's path, followed as given), creating
 * each missing level; a link or file planted at any level is moved aside, never followed.
 */
export async function openDirectoryBelow(root: string, parts: string[], mode = 0o755): Promise<FileHandle> {
  let dir = await open(root, O_RDONLY | O_DIRECTORY);
  for (const part of parts) {
    try {
      const next = await ensureDirectoryAt(dir, part, mode);
      await dir.close();
      dir = next;
    } catch (err) {
      await dir.close();
      throw err;
    }
  }
  return dir;
}

/** Runs `use` with the directory `parts` below `root` open (see openDirectoryBelow), then closes it. */
export async function withDirectoryBelow<T>(
  root: string,
  parts: string[],
  use: (dir: FileHandle) => Promise<T>,
): Promise<T> {
  const dir = await openDirectoryBelow(root, parts);
  try {
    return await use(dir);
  } finally {
    await dir.close();
  }
}

/** Replaces `name` atomically: a fresh exclusive temporary file renamed over whatever is there (rename never
 * follows). */
export async function replaceFileAt(
  dir: FileHandle,
  name: string,
  data: string | Uint8Array,
  mode = 0o644,
): Promise<void> {
  const tmp = `.${name}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await writeFileExclusiveAt(dir, tmp, data, mode);
  try {
    await rename(at(dir, tmp), at(dir, name));
  } catch (err) {
    await unlink(at(dir, tmp)).catch(() => undefined);
    throw err;
  }
}
