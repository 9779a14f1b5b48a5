// Safe, streaming extraction of an artifact into its directory: compression by magic bytes,
// members that escape the directory, links out, device files and over-budget archives refused.
//
// The rules (test/unit/archive.test.ts, test/unit/hostile-archives.test.ts):
// - member names: relative, no '..' component, no control characters (NUL, newline …), at most
//   MAX_NAME_BYTES in all and MAX_COMPONENT_BYTES per component;
// - symlinks: relative targets whose '..' components all come first and that stay inside the
//   directory, seen from the link's real parent; so no chain of links can lead outside;
// - hard links: only to regular files extracted inside the directory;
// - nothing is written through a link: whatever non-directory already exists at a member's path
//   is removed first (as GNU tar does), and every parent directory is proven, on the real
//   filesystem, to lie inside the directory;
// - devices and FIFOs are refused; setuid, setgid and sticky bits are dropped;
// - at most MAX_ARCHIVE_ENTRIES members (or options.maxEntries), and with budgetBytes the member
//   sizes and the decompressed stream itself (a compression bomb of zeros) are bounded.

import { createWriteStream } from "node:fs";
import { link, lstat, mkdir, realpath, symlink, unlink, utimes } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, posix, relative, resolve } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { formatBytes } from "../config/units.ts";
import { ArchiveError } from "../errors.ts";
import { decompress, looksLikeTar, peekBytes } from "./compression.ts";

/**
 * The most members one archive may have (files, directories and links together): a tar of
 * millions of empty files costs inodes and time without counting against budgetBytes.
 * Studioml workspaces hold hundreds to tens of thousands of files.
 */
export const MAX_ARCHIVE_ENTRIES = 1_000_000;

/** Longest member name (Linux PATH_MAX, in UTF-8 bytes) and longest name component (NAME_MAX). */
export const MAX_NAME_BYTES = 4095;
export const MAX_COMPONENT_BYTES = 255;

/**
 * With a budget, the decompressed stream may exceed the content budget only by tar's own
 * overhead: headers and padding of each member, end blocks and record padding.
 */
const TAR_OVERHEAD_PER_ENTRY = 4096;
const TAR_OVERHEAD_FIXED = 1024 * 1024;

export type UnpackOptions = {
  /** Refuse archives whose content is larger than this. */
  budgetBytes?: number;
  /** Refuse archives with more members than this (default MAX_ARCHIVE_ENTRIES). */
  maxEntries?: number;
  /** When the bytes are not a tar, save them as a file of this name instead. */
  singleFileName?: string;
};

export type UnpackResult = { files: number; bytes: number; kind: "tar" | "file" };

/** Normalise a member name ("./a/b", "a//b/") to a relative path, or refuse it. */
export function safeMemberPath(name: string): string {
  if (name.includes("\0")) throw new ArchiveError(`archive member ${JSON.stringify(name)} contains a NUL byte`);
  // eslint-disable-next-line no-control-regex
  if (/[\x01-\x1f\x7f]/.test(name))
    throw new ArchiveError(`archive member ${JSON.stringify(name)} contains a control character (newline, tab …)`);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new ArchiveError(
      `archive member ${JSON.stringify(name.slice(0, 80) + "…")} has a name longer than ${MAX_NAME_BYTES} bytes`,
    );
  }
  if (isAbsolute(name) || /^[A-Za-z]:[\\/]/.test(name)) {
    throw new ArchiveError(`archive member ${JSON.stringify(name)} is an absolute path`);
  }
  const parts = name.split(/[\\/]+/).filter((p) => p !== "" && p !== ".");
  if (parts.includes(".."))
    throw new ArchiveError(`archive member ${JSON.stringify(name)} escapes the artifact directory ('..')`);
  if (parts.some((p) => Buffer.byteLength(p) > MAX_COMPONENT_BYTES)) {
    throw new ArchiveError(
      `archive member ${JSON.stringify(name.slice(0, 80) + "…")} ` +
        `has a name component longer than ${MAX_COMPONENT_BYTES} bytes`,
    );
  }
  return parts.join("/");
}

/**
 * Refuse a symlink target that could lead outside: absolute, or with a '..' after a named
 * component ("x/.." goes up from wherever the link x points, not from x's parent), or that
 * climbs above `root` from the link's real parent directory.
 */
function checkSymlinkTarget(realRoot: string, realParent: string, member: string, linkname: string): void {
  const refuse = (why: string) => {
    throw new ArchiveError(
      `archive member ${JSON.stringify(member)} is a symlink pointing outside the artifact ` +
        `(${JSON.stringify(linkname)}: ${why})`,
    );
  };
  if (linkname === "") refuse("empty target");
  if (linkname.includes("\0") || isAbsolute(linkname) || /^[A-Za-z]:[\\/]/.test(linkname)) refuse("absolute");
  const parts = linkname.split(/[\\/]+/).filter((p) => p !== "" && p !== ".");
  const firstNamed = parts.findIndex((p) => p !== "..");
  if (firstNamed >= 0 && parts.slice(firstNamed).includes("..")) refuse("'..' after a name");
  if (!insideDir(realRoot, resolve(realParent, parts.join("/")))) refuse("climbs above the artifact directory");
}

/** Filesystem errors that a hostile member causes (not infrastructure trouble): they refuse the archive. */
const MEMBER_FAULTS = new Set([
  "ENAMETOOLONG",
  "EEXIST",
  "EISDIR",
  "ENOTDIR",
  "ENOTEMPTY",
  "EPERM",
  "ENOENT",
  "ELOOP",
  "EINVAL",
  "EMLINK",
  "EXDEV",
]);

function memberFault(err: unknown, member: string): unknown {
  if (err instanceof ArchiveError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code && MEMBER_FAULTS.has(code)) {
    return new ArchiveError(
      `archive member ${JSON.stringify(member.slice(0, 200))} cannot be extracted: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
  return err;
}

/** Remove whatever non-directory is at `target` so nothing is written through an earlier link. */
async function clearPath(target: string, member: string): Promise<void> {
  let st;
  try {
    st = await lstat(target);
  } catch {
    return;
  }
  if (st.isDirectory())
    throw new ArchiveError(`archive member ${JSON.stringify(member)} would replace a directory of the same name`);
  await unlink(target);
}

function insideDir(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/**
 * Make the parent directory of `target` and prove, on the real filesystem, that it lies inside
 * `realRoot`: symlinks extracted earlier (each harmless on its own) must not lead writes outside.
 */
async function safeParent(realRoot: string, target: string, member: string): Promise<void> {
  const parent = dirname(target);
  let existing = parent;
  while (!(await exists(existing))) existing = dirname(existing);
  const check = async (dir: string) => {
    if (!insideDir(realRoot, await realpath(dir))) {
      throw new ArchiveError(
        `archive member ${JSON.stringify(member)} would be written outside the artifact directory through a symlink`,
      );
    }
  };
  await check(existing);
  await mkdir(parent, { recursive: true });
  await check(parent);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Extract a (possibly compressed) tar, or save non-tar bytes as one file, into destDir. */
export async function unpackArchive(
  source: Readable,
  destDir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  await mkdir(resolve(destDir), { recursive: true });
  const root = await realpath(resolve(destDir));
  const maxEntries = options.maxEntries ?? MAX_ARCHIVE_ENTRIES;
  let entries = 0;
  // Bound the decompressed stream too: a bomb of zeros is no member at all, yet costs the CPU.
  let streamed = 0;
  const streamLimit = () =>
    options.budgetBytes === undefined
      ? Infinity
      : options.budgetBytes + TAR_OVERHEAD_FIXED + TAR_OVERHEAD_PER_ENTRY * (entries + 1);
  const decompressed = (await decompress(source)).stream;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      streamed += chunk.length;
      if (streamed > streamLimit()) {
        done(
          new ArchiveError(
            `archive decompresses to more than the disk budget of ${formatBytes(options.budgetBytes!)} allows ` +
              "(compression bomb?)",
          ),
        );
      } else done(null, chunk);
    },
  });
  decompressed.on("error", (err) => counter.destroy(err));
  counter.on("close", () => decompressed.destroy());
  decompressed.pipe(counter);
  const { head, stream } = await peekBytes(counter, 512);
  // Nothing at all, or only end-of-archive zero blocks: an empty artifact.
  if (head.length === 0 || (head.length >= 512 && head.every((b) => b === 0))) {
    // Let the rest drain (bounded by the counter with a budget, else by EMPTY_TAIL_BYTES).
    let tail = 0;
    stream.on("error", () => undefined);
    stream.on("data", (chunk: Buffer) => {
      tail += chunk.length;
      if (tail > EMPTY_TAIL_BYTES) stream.destroy();
    });
    return { files: 0, bytes: 0, kind: "tar" };
  }
  if (!looksLikeTar(head)) {
    if (!options.singleFileName) throw new ArchiveError("artifact is not a tar archive (no ustar header)");
    const name = safeMemberPath(basename(options.singleFileName));
    await clearPath(join(root, name), name);
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (options.budgetBytes !== undefined && bytes > options.budgetBytes) {
        stream.destroy(
          new ArchiveError(`artifact is larger than the disk budget of ${formatBytes(options.budgetBytes)}`),
        );
      }
    });
    await pipeline(stream, createWriteStream(join(root, name)));
    return { files: 1, bytes, kind: "file" };
  }

  const extract = tar.extract();
  type Member = typeof extract extends AsyncIterable<infer T> ? T : never;
  stream.on("error", (err) => extract.destroy(err));
  stream.pipe(extract);
  let files = 0;
  let bytes = 0;
  const deferredDirTimes: Array<[string, Date]> = [];
  try {
    for await (const entry of extract) {
      const h = entry.header;
      if (++entries > maxEntries) {
        throw new ArchiveError(
          `archive has more than ${maxEntries} members (at member ${JSON.stringify(h.name)}): refused as a tar bomb`,
        );
      }
      try {
        await extractMember(entry, h);
      } catch (err) {
        throw memberFault(err, h.name);
      }
    }
  } catch (err) {
    extract.destroy();
    stream.destroy();
    throw err;
  }
  for (const [dir, mtime] of deferredDirTimes.reverse()) await utimes(dir, mtime, mtime).catch(() => undefined);
  return { files, bytes, kind: "tar" };

  async function extractMember(entry: Member, h: Member["header"]): Promise<void> {
    const rel = safeMemberPath(h.name);
    const target = join(root, rel);
    if (rel === "") {
      entry.resume();
      return;
    }
    switch (h.type) {
      case "directory":
        await safeParent(root, join(target, "x"), h.name);
        if (h.mtime) deferredDirTimes.push([target, h.mtime]);
        entry.resume();
        break;
      case "file":
      case "contiguous-file":
      case undefined:
      case null: {
        bytes += h.size ?? 0;
        if (options.budgetBytes !== undefined && bytes > options.budgetBytes) {
          throw new ArchiveError(
            `archive content exceeds the disk budget of ${formatBytes(options.budgetBytes)} ` +
              `at member ${JSON.stringify(h.name)}`,
          );
        }
        await safeParent(root, target, h.name);
        await clearPath(target, h.name);
        // Only permission bits: setuid, setgid and sticky are dropped.
        await pipeline(entry, createWriteStream(target, { mode: (h.mode ?? 0o644) & 0o777, flags: "wx" }));
        if (h.mtime) await utimes(target, h.mtime, h.mtime).catch(() => undefined);
        files++;
        break;
      }
      case "symlink": {
        const linkname = h.linkname ?? "";
        checkSymlinkTarget(root, dirname(target), h.name, linkname);
        await safeParent(root, target, h.name);
        checkSymlinkTarget(root, await realpath(dirname(target)), h.name, linkname);
        await clearPath(target, h.name);
        await symlink(linkname, target);
        entry.resume();
        break;
      }
      case "link": {
        const linkname = h.linkname ?? "";
        let sourceRel: string;
        try {
          sourceRel = safeMemberPath(posix.normalize(linkname));
        } catch (err) {
          throw new ArchiveError(
            `archive member ${JSON.stringify(h.name)} is a hard link to ${JSON.stringify(linkname)}, ` +
              `outside the artifact: ${(err as Error).message}`,
          );
        }
        const source = join(root, sourceRel);
        await safeParent(root, source, h.name);
        const st = await lstat(source).catch(() => undefined);
        if (!st?.isFile()) {
          throw new ArchiveError(
            `archive member ${JSON.stringify(h.name)} is a hard link to ${JSON.stringify(linkname)}, ` +
              "which is not a file extracted earlier",
          );
        }
        await safeParent(root, target, h.name);
        await clearPath(target, h.name);
        await link(source, target);
        entry.resume();
        break;
      }
      case "character-device":
      case "block-device":
      case "fifo":
        throw new ArchiveError(
          `archive member ${JSON.stringify(h.name)} is a ${h.type}, which artifacts may not contain`,
        );
      default:
        entry.resume();
    }
  }
}

/** Zeros after an empty archive's end blocks that are drained before the stream is dropped. */
const EMPTY_TAIL_BYTES = 1024 * 1024;
