// Opening files of file: storage only inside the runner's storage roots, by real path, where they
// are opened. Reads: the path is resolved (symlinks followed) right before the open, the real path
// must lie strictly under a root's real path and outside /proc, /sys and /dev, the open refuses a
// symlink in the last component (O_NOFOLLOW), and the descriptor's own path (/proc/self/fd) is
// checked again after the open, so a directory swapped for a symlink in between is caught.
// Writes: every directory below the root is walked with lstat and created one level at a time; a
// symlink anywhere below the root is refused (the runner never writes through one); the new file is
// created O_EXCL|O_NOFOLLOW beside its final name, its descriptor checked like a read, and renamed
// over the final name (which replaces a symlink there rather than following it).

import { constants } from "node:fs";
import { lstat, mkdir, open, readlink, realpath, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { PermanentError, RequestError } from "../../errors.ts";
import { isStrictlyUnder, isSystemPath, normalRoot, SYSTEM_PATHS } from "../../request/location-policy.ts";

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
const CREATE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NOCTTY;

export class ConfinedPaths {
  readonly roots: string[];

  /** `field`: the request field refusals name (for the file store, the artifact's `qualified`). */
  constructor(
    roots: string[],
    private readonly field = "qualified",
  ) {
    this.roots = roots.map(normalRoot);
  }

  /** The (lexically) longest root containing `path`, or a refusal. */
  private rootOf(location: string, path: string): string {
    if (isSystemPath(path))
      throw new RequestError(
        this.field,
        location,
        `is under ${SYSTEM_PATHS.join(", ")}, which file: locations never reach`,
      );
    const root = this.roots.filter((r) => isStrictlyUnder(r, path)).sort((a, b) => b.length - a.length)[0];
    if (!root) {
      throw new RequestError(
        this.field,
        location,
        this.roots.length
          ? `is outside the directories this runner allows for file: storage (${this.roots.join(", ")})`
          : "is a file: location, and this runner allows no directory for file: storage (--file-storage-roots)",
      );
    }
    return root;
  }

  /** Real paths of the roots that exist now (a root may itself be a symlink, e.g. /tmp on some systems). */
  private async realRoots(): Promise<string[]> {
    const out: string[] = [];
    for (const r of this.roots) {
      const real = await realpath(r).catch(() => undefined);
      if (real) out.push(real);
    }
    return out;
  }

  private async checkReal(location: string, real: string): Promise<void> {
    if (isSystemPath(real))
      throw new RequestError(
        this.field,
        location,
        `resolves to ${real}, under ${SYSTEM_PATHS.join(", ")}, which file: locations never reach`,
      );
    const reals = await this.realRoots();
    if (!reals.some((r) => isStrictlyUnder(r, real))) {
      throw new RequestError(
        this.field,
        location,
        `resolves (symlinks followed) to ${real}, outside the directories this runner allows for file: storage ` +
          `(${this.roots.join(", ")})`,
      );
    }
  }

  /** After an open: the descriptor's own path must still be inside (catches a swap between check and open). */
  private async checkOpened(location: string, fh: FileHandle): Promise<void> {
    let actual: string | undefined;
    try {
      actual = await readlink(`/proc/self/fd/${fh.fd}`);
    } catch {
      actual = undefined; // no /proc: the check before the open stands alone
    }
    if (actual !== undefined) await this.checkReal(location, actual.replace(/ \(deleted\)$/, ""));
  }

  /** A regular file opened for reading, or undefined when there is none at `path`. */
  async openRead(location: string, path: string): Promise<FileHandle | undefined> {
    const root = this.rootOf(location, path);
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if (!isMissing(err)) throw err;
      // Not there (yet: a mutable artifact): where it would be must still be inside, so a
      // directory link out of the root is refused now rather than when the job's results are written.
      await this.checkMissingParent(location, root, path);
      return undefined;
    }
    await this.checkReal(location, real);
    const fh = await open(real, READ_FLAGS).catch((err) => {
      if (isMissing(err)) return undefined;
      if ((err as NodeJS.ErrnoException).code === "ELOOP")
        throw new RequestError(this.field, location, "was replaced by a symlink while it was opened");
      throw err;
    });
    if (!fh) return undefined;
    try {
      await this.checkOpened(location, fh);
      if (!(await fh.stat()).isFile()) {
        await fh.close();
        return undefined;
      }
      return fh;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** The nearest existing directory above a missing `path`, below the root, must resolve inside. */
  private async checkMissingParent(location: string, root: string, path: string): Promise<void> {
    for (let dir = dirname(path); isStrictlyUnder(root, dir); dir = dirname(dir)) {
      const real = await realpath(dir).catch((err) => {
        if (isMissing(err)) return undefined;
        throw err;
      });
      if (real !== undefined) return this.checkReal(location, join(real, basename(path)));
    }
  }

  /**
   * The real directory that will hold `path`, every level below the root created here without
   * following a symlink; a symlink below the root is refused.
   */
  async directoryFor(location: string, path: string): Promise<string> {
    const root = this.rootOf(location, path);
    await mkdir(root, { recursive: true }); // the operator's own directory
    let dir = await realpath(root);
    await this.checkReal(location, join(dir, "x"));
    for (const part of relative(root, dirname(path)).split("/").filter(Boolean)) {
      const next = join(dir, part);
      let info = await lstat(next).catch((err) => {
        if (isMissing(err)) return undefined;
        throw err;
      });
      if (!info) {
        await mkdir(next).catch((err) => {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        });
        info = await lstat(next);
      }
      if (info.isSymbolicLink())
        throw new RequestError(
          this.field,
          location,
          `goes through a symlink (${next}): the runner never writes through one`,
        );
      if (!info.isDirectory())
        throw new PermanentError(`${this.field}: ${location}: ${next} is not a directory`, { field: this.field });
      dir = next;
    }
    return dir;
  }

  /** A new file beside `finalName` in `dir` (from directoryFor), created O_EXCL|O_NOFOLLOW and checked. */
  async createIn(location: string, dir: string, tmpName: string): Promise<FileHandle> {
    const fh = await open(join(dir, tmpName), CREATE_FLAGS, 0o666);
    try {
      await this.checkOpened(location, fh);
      return fh;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** The real path `path` would be removed at (its directory resolved and checked; the name itself not followed). */
  async removalPath(location: string, path: string): Promise<string | undefined> {
    this.rootOf(location, path);
    const dir = await realpath(dirname(path)).catch((err) => {
      if (isMissing(err)) return undefined;
      throw err;
    });
    if (dir === undefined) return undefined;
    const target = join(dir, basename(path));
    await this.checkReal(location, target);
    return target;
  }
}

/** Nothing there (a path through a regular file, ENOTDIR, is a fault of the storage instead). */
function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === "ENOENT";
}
