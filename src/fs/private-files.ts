// Private directories and files: a directory made with the given mode (0700, or 0711 where another
// uid must pass through), or refused when another uid owns it or other users may write it; files
// created exclusively (0600) without following links, replaced atomically, appended to.

import {
  closeSync,
  constants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  chmodSync,
} from "node:fs";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";

/** A directory of the runner cannot be trusted: the runner refuses to start. */
export class PrivateDirError extends Error {}

export type PrivateDirOptions = {
  /** 0o700, or 0o711 where another uid (the job user) must traverse it. */
  mode: number;
  /** How the setting is named in messages (e.g. "--cache-dir"). */
  label: string;
  /** An operator-named directory may be a symlink (to another disk); the runner's own subdirectories may not. */
  followSymlink?: boolean;
  euid?: number;
  log?: (message: string) => void;
};

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/**
 * Make the directory with `mode`, or check an existing one: a directory, owned by this uid, not
 * writable by group or other. A writable one is accepted only when it is empty (a fresh mount point:
 * nothing can have been planted); it is then tightened first. Read bits are tightened silently.
 */
export function ensurePrivateDir(path: string, options: PrivateDirOptions): void {
  const euid = options.euid ?? process.geteuid?.() ?? -1;
  const where = `${options.label} ${path}`;
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw new PrivateDirError(`${where}: ${(err as Error).message}`);
    mkdirSync(dirname(path), { recursive: true });
    try {
      mkdirSync(path, { mode: options.mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST")
        throw new PrivateDirError(`${where}: ${(e as Error).message}`);
      return ensurePrivateDir(path, options); // made by another runner meanwhile: check it
    }
    chmodSync(path, options.mode); // the umask took the traversal bits off
    return;
  }
  if (st.isSymbolicLink()) {
    if (!options.followSymlink)
      throw new PrivateDirError(
        `${where} is a symbolic link: refusing to start (the runner makes this directory itself; remove the link)`,
      );
    st = statSync(path);
  }
  if (!st.isDirectory()) throw new PrivateDirError(`${where} is not a directory: refusing to start`);
  if (euid >= 0 && st.uid !== euid) {
    throw new PrivateDirError(
      `${where} is owned by uid ${st.uid}, not by this runner's uid ${euid}: refusing to start ` +
        "(another user could read or replace what the runner keeps there; chown it or choose another directory)",
    );
  }
  const mode = st.mode & 0o7777;
  if (mode & 0o022) {
    chmodSync(path, options.mode);
    let entries: string[] = [];
    try {
      entries = readdirSync(path);
    } catch {
      entries = ["?"];
    }
    if (entries.length) {
      throw new PrivateDirError(
        `${where} is writable by other users (mode ${octal(mode)}) and not empty: refusing to start ` +
          "(what is in it may have been planted; empty it or choose another directory). " +
          `It is now ${octal(options.mode)}.`,
      );
    }
    options.log?.(
      `${where} was writable by other users (mode ${octal(mode)}) and empty: made it ${octal(options.mode)}`,
    );
    return;
  }
  if (mode !== options.mode) chmodSync(path, options.mode);
}

/**
 * A warning when others may replace the runner's directories inside `dir` (writable by group or
 * other without the sticky bit); undefined when it is fine (e.g. /tmp: 1777).
 */
export function sharedParentWarning(dir: string, label: string): string | undefined {
  try {
    const st = statSync(dir);
    if (st.mode & 0o022 && !(st.mode & 0o1000)) {
      return (
        `${label} ${dir} is writable by other users without the sticky bit (mode ${octal(st.mode)}): ` +
        "they could rename the runner's directories in it while it runs; make it 0755 or 1777"
      );
    }
  } catch {
    // made later
  }
  return undefined;
}

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Create a new 0600 file (never an existing one, never through a link) with this content. */
export function writeNewPrivateFile(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, CREATE_FLAGS, 0o600);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let at = 0;
    while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replace a file atomically: a new private file beside it (O_EXCL|O_NOFOLLOW), renamed over it. */
export function replacePrivateFile(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${randomUUID()}.tmp`);
  try {
    writeNewPrivateFile(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Append one line to a private file (created 0600 when missing, never through a link). */
export function appendPrivateLine(path: string, line: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${line}\n`);
  } finally {
    closeSync(fd);
  }
}
