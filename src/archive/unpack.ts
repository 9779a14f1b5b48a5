// Safe, streaming extraction of an artifact into its directory: compression by magic bytes,
// members that escape the directory, links out, device files and over-budget archives refused.

import { createWriteStream } from "node:fs";
import { link, lstat, mkdir, realpath, symlink, utimes } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, posix, relative, resolve } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { formatBytes } from "../config/units.ts";
import { ArchiveError } from "../errors.ts";
import { decompress, looksLikeTar, peekBytes } from "./compression.ts";

export type UnpackOptions = {
  /** Refuse archives whose content is larger than this. */
  budgetBytes?: number;
  /** When the bytes are not a tar, save them as a file of this name instead. */
  singleFileName?: string;
};

export type UnpackResult = { files: number; bytes: number; kind: "tar" | "file" };

/** Normalise a member name ("./a/b", "a//b/") to a relative path, or refuse it. */
export function safeMemberPath(name: string): string {
  if (name.includes("\0")) throw new ArchiveError(`archive member ${JSON.stringify(name)} contains a NUL byte`);
  if (isAbsolute(name) || /^[A-Za-z]:[\\/]/.test(name)) {
    throw new ArchiveError(`archive member ${JSON.stringify(name)} is an absolute path`);
  }
  const parts = name.split(/[\\/]+/).filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new ArchiveError(`archive member ${JSON.stringify(name)} escapes the artifact directory ('..')`);
  return parts.join("/");
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
      throw new ArchiveError(`archive member ${JSON.stringify(member)} would be written outside the artifact directory through a symlink`);
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
export async function unpackArchive(source: Readable, destDir: string, options: UnpackOptions = {}): Promise<UnpackResult> {
  await mkdir(resolve(destDir), { recursive: true });
  const root = await realpath(resolve(destDir));
  const decompressed = (await decompress(source)).stream;
  const { head, stream } = await peekBytes(decompressed, 512);
  // Nothing at all, or only end-of-archive zero blocks: an empty artifact.
  if (head.length === 0 || (head.length >= 512 && head.every((b) => b === 0))) {
    stream.resume();
    return { files: 0, bytes: 0, kind: "tar" };
  }
  if (!looksLikeTar(head)) {
    if (!options.singleFileName) throw new ArchiveError("artifact is not a tar archive (no ustar header)");
    const name = safeMemberPath(basename(options.singleFileName));
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (options.budgetBytes !== undefined && bytes > options.budgetBytes) {
        stream.destroy(new ArchiveError(`artifact is larger than the disk budget of ${formatBytes(options.budgetBytes)}`));
      }
    });
    await pipeline(stream, createWriteStream(join(root, name)));
    return { files: 1, bytes, kind: "file" };
  }

  const extract = tar.extract();
  stream.on("error", (err) => extract.destroy(err));
  stream.pipe(extract);
  let files = 0;
  let bytes = 0;
  const deferredDirTimes: Array<[string, Date]> = [];
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = safeMemberPath(h.name);
      const target = join(root, rel);
      if (rel === "") {
        entry.resume();
        continue;
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
            throw new ArchiveError(`archive content exceeds the disk budget of ${formatBytes(options.budgetBytes)} at member ${JSON.stringify(h.name)}`);
          }
          await safeParent(root, target, h.name);
          await pipeline(entry, createWriteStream(target, { mode: (h.mode ?? 0o644) & 0o777 }));
          if (h.mtime) await utimes(target, h.mtime, h.mtime).catch(() => undefined);
          files++;
          break;
        }
        case "symlink": {
          const linkname = h.linkname ?? "";
          if (isAbsolute(linkname) || !insideDir(root, resolve(dirname(target), linkname))) {
            throw new ArchiveError(`archive member ${JSON.stringify(h.name)} is a symlink pointing outside the artifact (${JSON.stringify(linkname)})`);
          }
          await safeParent(root, target, h.name);
          if (!insideDir(root, resolve(await realpath(dirname(target)), linkname))) {
            throw new ArchiveError(`archive member ${JSON.stringify(h.name)} is a symlink pointing outside the artifact (${JSON.stringify(linkname)})`);
          }
          await symlink(linkname, target);
          entry.resume();
          break;
        }
        case "link": {
          const source = join(root, safeMemberPath(posix.normalize(h.linkname ?? "")));
          await safeParent(root, source, h.name);
          await safeParent(root, target, h.name);
          await link(source, target);
          entry.resume();
          break;
        }
        case "character-device":
        case "block-device":
        case "fifo":
          throw new ArchiveError(`archive member ${JSON.stringify(h.name)} is a ${h.type}, which artifacts may not contain`);
        default:
          entry.resume();
      }
    }
  } catch (err) {
    extract.destroy();
    stream.destroy();
    throw err;
  }
  for (const [dir, mtime] of deferredDirTimes.reverse()) await utimes(dir, mtime, mtime).catch(() => undefined);
  return { files, bytes, kind: "tar" };
}
