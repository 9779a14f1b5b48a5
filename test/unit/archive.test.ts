// Covers src/archive/pack.ts and src/archive/unpack.ts: round trips, compression by magic bytes, member forms, safety refusals, fingerprints.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { fingerprintDirectory, packDirectory } from "../../src/archive/pack.ts";
import { safeMemberPath, unpackArchive, type UnpackOptions } from "../../src/archive/unpack.ts";
import { ArchiveError } from "../../src/errors.ts";
import { craftTar } from "../helpers/craft-tar.ts";

let tmp: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "studio-runner-archive-"));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const BIG = randomBytes(200_000);

/** A directory with files, nested dirs, an empty file, an empty dir, an executable and symlinks inside. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "nested", "deeper"), { recursive: true });
  await mkdir(join(root, "emptydir"), { recursive: true });
  await writeFile(join(root, "a.txt"), "hello\n");
  await writeFile(join(root, "empty.txt"), "");
  await writeFile(join(root, "nested", "deeper", "big.bin"), BIG);
  await writeFile(join(root, "nested", "with space.txt"), "spaced\n");
  await writeFile(join(root, "run.sh"), "#!/bin/sh\necho hi\n");
  await chmod(join(root, "run.sh"), 0o755);
  await symlink("a.txt", join(root, "link-to-a"));
  await symlink("../a.txt", join(root, "nested", "up-link"));
}

async function expectTree(root: string): Promise<void> {
  expect(await readFile(join(root, "a.txt"), "utf8")).toBe("hello\n");
  expect((await stat(join(root, "empty.txt"))).size).toBe(0);
  expect(Buffer.compare(await readFile(join(root, "nested", "deeper", "big.bin")), BIG)).toBe(0);
  expect(await readFile(join(root, "nested", "with space.txt"), "utf8")).toBe("spaced\n");
  expect((await stat(join(root, "emptydir"))).isDirectory()).toBe(true);
  expect((await stat(join(root, "run.sh"))).mode & 0o777).toBe(0o755);
  expect((await lstat(join(root, "link-to-a"))).isSymbolicLink()).toBe(true);
  expect(await readlink(join(root, "link-to-a"))).toBe("a.txt");
  expect(await readFile(join(root, "link-to-a"), "utf8")).toBe("hello\n");
  expect(await readlink(join(root, "nested", "up-link"))).toBe("../a.txt");
  expect(await readFile(join(root, "nested", "up-link"), "utf8")).toBe("hello\n");
}

async function packToFile(root: string, file: string, options: { gzip?: boolean } = {}): Promise<void> {
  await pipeline(packDirectory(root, options), createWriteStream(file));
}

function unpackFile(file: string, dest: string, options?: UnpackOptions) {
  return unpackArchive(createReadStream(file), dest, options);
}

function sh(cmd: string[], cwd = tmp): void {
  const r = Bun.spawnSync(cmd, { cwd, stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
}

function tarList(file: string): string[] {
  const r = Bun.spawnSync(["tar", "-tf", file], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return r.stdout.toString().split("\n").filter(Boolean);
}

/** Expect an ArchiveError whose message names the given member. */
async function expectRefused(promise: Promise<unknown>, member: string): Promise<ArchiveError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ArchiveError);
  expect((caught as Error).message).toContain(member);
  return caught as ArchiveError;
}

/** Fail instead of hanging when a promise does not settle in time. */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms (hangs)`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function magic(file: string, n = 6): Promise<number[]> {
  return [...(await readFile(file)).subarray(0, n)];
}

describe("pack → unpack round trip", () => {
  test("files, nested dirs, empty file, empty dir, modes and symlinks inside", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    const result = await unpackFile(file, dest);
    expect(result.kind).toBe("tar");
    expect(result.files).toBe(5);
    expect(result.bytes).toBe(6 + 0 + BIG.length + 7 + 18);
    await expectTree(dest);
    expect((await readdir(dest)).sort()).toEqual(["a.txt", "empty.txt", "emptydir", "link-to-a", "nested", "run.sh"]);
  });

  test("packDirectory writes the contents at the root, without ./ prefixes, readable by system tar", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    const names = tarList(file);
    expect(names).toContain("a.txt");
    expect(names).toContain("nested/deeper/big.bin");
    expect(names.some((n) => n.startsWith("./") || n.startsWith("/") || n.includes("src"))).toBe(false);
    const dest = join(tmp, "by-gnu-tar");
    await mkdir(dest);
    sh(["tar", "-C", dest, "-xf", file]);
    await expectTree(dest);
  });

  test("modification times survive the round trip", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "f.txt"), "x");
    const when = new Date("2021-06-01T12:00:00Z");
    await utimes(join(src, "f.txt"), when, when);
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    await unpackFile(file, join(tmp, "dest"));
    expect((await stat(join(tmp, "dest", "f.txt"))).mtime.getTime()).toBe(when.getTime());
  });

  // packDirectory of an empty directory yields only the two zero end-of-archive blocks; unpackArchive
  // rejects that as "not a tar archive" (looksLikeTar wants "ustar" in the first block).
  test("a reader that stops early (an upload refused) stops the packing without an unheard error", async () => {
    const src = join(tmp, "big");
    await mkdir(src);
    for (let i = 0; i < 12; i++) await writeFile(join(src, `f${i}`), randomBytes(2 * 1024 * 1024));
    const unheard: unknown[] = [];
    const hear = (err: unknown) => unheard.push(err);
    process.on("uncaughtException", hear);
    try {
      for (const gzip of [false, true]) {
        const out = packDirectory(src, { gzip });
        out.once("data", () => out.destroy());
        await new Promise((resolve) => out.on("close", resolve));
        await Bun.sleep(200); // what the tar stream would raise arrives after the reader's close
      }
    } finally {
      process.off("uncaughtException", hear);
    }
    expect(unheard).toEqual([]);
  });

  test("an empty directory packs to an archive that unpacks to nothing", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    const r = await unpackFile(file, dest);
    expect(r.files).toBe(0);
    expect(await readdir(dest)).toEqual([]);
  });

  // Hangs: decompress() peeks 6 bytes and sees the end of the stream, then unpackArchive peeks
  // again on the already-ended stream and waits forever for "readable"/"end".
  test("an empty object unpacks to an empty directory", async () => {
    const file = join(tmp, "empty");
    await writeFile(file, "");
    const dest = join(tmp, "dest");
    expect(await settleWithin(unpackFile(file, dest), 1000)).toEqual({ files: 0, bytes: 0, kind: "tar" });
    expect(await readdir(dest)).toEqual([]);
  });

  test("unpacking into an existing directory overwrites files", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "f.txt"), "new content");
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    await mkdir(dest);
    await writeFile(join(dest, "f.txt"), "old content that is longer");
    await writeFile(join(dest, "keep.txt"), "kept");
    await unpackFile(file, dest);
    expect(await readFile(join(dest, "f.txt"), "utf8")).toBe("new content");
    expect(await readFile(join(dest, "keep.txt"), "utf8")).toBe("kept");
  });
});

describe("compression is detected by magic bytes, not by name", () => {
  test("gzip from packDirectory({gzip: true}) saved as .tar", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "looks-plain.tar");
    await packToFile(src, file, { gzip: true });
    expect((await magic(file)).slice(0, 2)).toEqual([0x1f, 0x8b]);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });

  test("bzip2 made by tar cjf, named .tar", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "bz.tar");
    sh(["tar", "-C", src, "-cjf", file, "."]);
    expect((await magic(file)).slice(0, 3)).toEqual([0x42, 0x5a, 0x68]);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });

  test("xz made by tar cJf, named .tar", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "xz.tar");
    sh(["tar", "-C", src, "-cJf", file, "."]);
    expect(await magic(file)).toEqual([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });

  test("small compressed archives (compressed size under one tar block)", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "t.txt"), "tiny");
    for (const [flag, name] of [
      ["-czf", "s.tgz"],
      ["-cjf", "s.tbz"],
      ["-cJf", "s.txz"],
    ] as const) {
      const file = join(tmp, name);
      sh(["tar", "-C", src, flag, file, "t.txt"]);
      expect((await stat(file)).size).toBeLessThan(512);
      const dest = join(tmp, `dest-${name}`);
      const r = await settleWithin(unpackFile(file, dest), 5000);
      expect(r.files).toBe(1);
      expect(await readFile(join(dest, "t.txt"), "utf8")).toBe("tiny");
    }
  });

  test("a plain tar named .tar.gz is read as plain", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "lies.tar.gz");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });
});

describe("member name forms", () => {
  test("members with ./ prefixes (tar -C dir -cf x.tar .)", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "dot.tar");
    sh(["tar", "-C", src, "-cf", file, "."]);
    expect(tarList(file)).toContain("./a.txt");
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
    expect(existsSync(join(dest, "."))).toBe(true);
  });

  test("members without prefixes (tar -C dir -cf x.tar a b)", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "plain.tar");
    sh(["tar", "-C", src, "-cf", file, "a.txt", "nested", "empty.txt", "emptydir", "run.sh", "link-to-a"]);
    expect(tarList(file)).toContain("a.txt");
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });

  test("PAX format tars (what the studioml client writes)", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "pax.tar");
    sh([
      "tar",
      "--format=pax",
      "-C",
      src,
      "-cf",
      file,
      "a.txt",
      "nested",
      "empty.txt",
      "emptydir",
      "run.sh",
      "link-to-a",
    ]);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });

  test("long member names (over 100 characters)", async () => {
    const src = join(tmp, "src");
    const long = `${"d".repeat(60)}/${"e".repeat(60)}/${"f".repeat(80)}.txt`;
    await mkdir(join(src, long, ".."), { recursive: true });
    await writeFile(join(src, long), "deep");
    const file = join(tmp, "long.tar");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    expect(await readFile(join(dest, long), "utf8")).toBe("deep");
  });

  test("safeMemberPath normalises harmless forms", () => {
    expect(safeMemberPath("./a/b")).toBe("a/b");
    expect(safeMemberPath("a//b/")).toBe("a/b");
    expect(safeMemberPath("./")).toBe("");
    expect(safeMemberPath(".")).toBe("");
    expect(safeMemberPath("a/./b")).toBe("a/b");
    expect(safeMemberPath("..a/b..")).toBe("..a/b..");
  });

  test("safeMemberPath refuses escaping forms with ArchiveError", () => {
    for (const name of ["../x", "a/../../x", "a/..", "/etc/x", "C:\\x", "a\0b", "..\\x"]) {
      expect(() => safeMemberPath(name)).toThrow(ArchiveError);
    }
  });
});

describe("refusals", () => {
  test("a ../evil member is refused and nothing is written outside the destination", async () => {
    const file = join(tmp, "evil.tar");
    await craftTar(file, [
      { header: { name: "ok.txt", type: "file", size: 2 }, content: "ok" },
      { header: { name: "../evil", type: "file", size: 4 }, content: "evil" },
      { header: { name: "later.txt", type: "file", size: 5 }, content: "later" },
    ]);
    const dest = join(tmp, "case", "dest");
    const err = await expectRefused(unpackFile(file, dest), "../evil");
    expect(err.message).toContain("..");
    expect(existsSync(join(tmp, "case", "evil"))).toBe(false);
    expect(await readdir(join(tmp, "case"))).toEqual(["dest"]);
    expect(await readdir(tmp)).toEqual(expect.arrayContaining(["case", "evil.tar"]));
    expect((await readdir(tmp)).length).toBe(2);
  });

  test("a deeper a/../../evil member is refused", async () => {
    const file = join(tmp, "evil.tar");
    await craftTar(file, [{ header: { name: "a/../../evil2", type: "file", size: 1 }, content: "x" }]);
    const dest = join(tmp, "case", "dest");
    await expectRefused(unpackFile(file, dest), "a/../../evil2");
    expect(existsSync(join(tmp, "case", "evil2"))).toBe(false);
  });

  test("an absolute /etc/x member is refused", async () => {
    const existedBefore = existsSync("/etc/x");
    const file = join(tmp, "abs.tar");
    await craftTar(file, [{ header: { name: "/etc/x", type: "file", size: 1 }, content: "x" }]);
    const err = await expectRefused(unpackFile(file, join(tmp, "dest")), "/etc/x");
    expect(err.message).toContain("absolute");
    expect(existsSync("/etc/x")).toBe(existedBefore);
  });

  test("an absolute member naming a real writable place is not written", async () => {
    const target = join(tmp, "outside", "abs-target.txt");
    await mkdir(join(tmp, "outside"));
    const file = join(tmp, "abs.tar");
    await craftTar(file, [{ header: { name: target, type: "file", size: 1 }, content: "x" }]);
    await expectRefused(unpackFile(file, join(tmp, "dest")), target);
    expect(existsSync(target)).toBe(false);
  });

  test("a symlink pointing outside with ../../etc/passwd is refused", async () => {
    const file = join(tmp, "link.tar");
    await craftTar(file, [{ header: { name: "sub/passwd", type: "symlink", linkname: "../../etc/passwd" } }]);
    const dest = join(tmp, "dest");
    const err = await expectRefused(unpackFile(file, dest), "sub/passwd");
    expect(err.message).toContain("../../etc/passwd");
    expect(existsSync(join(dest, "sub", "passwd"))).toBe(false);
  });

  test("a symlink with an absolute target is refused", async () => {
    const file = join(tmp, "link.tar");
    await craftTar(file, [{ header: { name: "passwd", type: "symlink", linkname: "/etc/passwd" } }]);
    const dest = join(tmp, "dest");
    const err = await expectRefused(unpackFile(file, dest), "passwd");
    expect(err.message).toContain("/etc/passwd");
    let present = true;
    try {
      await lstat(join(dest, "passwd"));
    } catch {
      present = false;
    }
    expect(present).toBe(false);
  });

  test("a symlink to the parent (..) is refused", async () => {
    const file = join(tmp, "link.tar");
    await craftTar(file, [{ header: { name: "up", type: "symlink", linkname: ".." } }]);
    await expectRefused(unpackFile(file, join(tmp, "dest")), "up");
  });

  // Each symlink target is checked lexically, but the filesystem resolves ".." after following
  // earlier symlinks: `x -> .` then `up -> x/..` looks like "<dest>" lexically yet really is the
  // parent of <dest>; a later member `up/evil` is then written outside the destination.
  test("a chain of symlinks that each look inside cannot be used to write outside", async () => {
    const file = join(tmp, "chain.tar");
    await craftTar(file, [
      { header: { name: "x", type: "symlink", linkname: "." } },
      { header: { name: "up", type: "symlink", linkname: "x/.." } },
      { header: { name: "up/evil", type: "file", size: 4 }, content: "evil" },
    ]);
    const dest = join(tmp, "case", "dest");
    let caught: unknown;
    try {
      await unpackFile(file, dest);
    } catch (err) {
      caught = err;
    }
    expect(existsSync(join(tmp, "case", "evil"))).toBe(false);
    expect(caught).toBeInstanceOf(ArchiveError);
  });

  test("a hard link to a path outside is refused", async () => {
    const file = join(tmp, "hard.tar");
    await craftTar(file, [{ header: { name: "h", type: "link", linkname: "../../etc/passwd" } }]);
    await expectRefused(unpackFile(file, join(tmp, "dest")), "../../etc/passwd");
  });

  test("a hard link to a member inside works", async () => {
    const file = join(tmp, "hard.tar");
    await craftTar(file, [
      { header: { name: "orig.txt", type: "file", size: 4 }, content: "data" },
      { header: { name: "copy.txt", type: "link", linkname: "orig.txt" } },
    ]);
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    expect(await readFile(join(dest, "copy.txt"), "utf8")).toBe("data");
  });

  test("a character device member is refused", async () => {
    const file = join(tmp, "dev.tar");
    await craftTar(file, [{ header: { name: "null", type: "character-device", devmajor: 1, devminor: 3 } }]);
    const err = await expectRefused(unpackFile(file, join(tmp, "dest")), "null");
    expect(err.message).toContain("character-device");
    expect(existsSync(join(tmp, "dest", "null"))).toBe(false);
  });

  test("a block device member is refused", async () => {
    const file = join(tmp, "dev.tar");
    await craftTar(file, [{ header: { name: "disk0", type: "block-device", devmajor: 8, devminor: 0 } }]);
    await expectRefused(unpackFile(file, join(tmp, "dest")), "disk0");
  });

  test("a fifo member is refused (tar of a real fifo made with mkfifo)", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "a.txt"), "a");
    sh(["mkfifo", join(src, "pipe")]);
    const file = join(tmp, "fifo.tar");
    sh(["tar", "-C", src, "-cf", file, "a.txt", "pipe"]);
    const err = await expectRefused(unpackFile(file, join(tmp, "dest")), "pipe");
    expect(err.message).toContain("fifo");
  });

  test("content over budgetBytes is refused, naming the member that crossed it", async () => {
    const file = join(tmp, "big.tar");
    await craftTar(file, [
      { header: { name: "one.bin", type: "file", size: 80 }, content: Buffer.alloc(80, 1) },
      { header: { name: "two.bin", type: "file", size: 80 }, content: Buffer.alloc(80, 2) },
    ]);
    const err = await expectRefused(unpackFile(file, join(tmp, "dest"), { budgetBytes: 100 }), "two.bin");
    expect(err.message).toContain("budget");
    expect(existsSync(join(tmp, "dest", "two.bin"))).toBe(false);
    // The same archive within budget is fine.
    const ok = await unpackFile(file, join(tmp, "dest2"), { budgetBytes: 160 });
    expect(ok.bytes).toBe(160);
  });

  test("the budget also applies to compressed archives (decompressed size counts)", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "zeros.bin"), Buffer.alloc(1_000_000));
    const file = join(tmp, "z.tar");
    await packToFile(src, file, { gzip: true });
    expect((await stat(file)).size).toBeLessThan(100_000);
    await expectRefused(unpackFile(file, join(tmp, "dest"), { budgetBytes: 100_000 }), "zeros.bin");
  });

  test("a non-tar object without singleFileName is refused", async () => {
    const file = join(tmp, "notatar");
    await writeFile(file, "just some text, not a tar archive at all\n".repeat(20));
    let caught: unknown;
    try {
      await unpackFile(file, join(tmp, "dest"));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ArchiveError);
  });
});

describe("single-file objects", () => {
  test("a non-tar object with singleFileName is saved as that single file", async () => {
    const body = randomBytes(50_000);
    const file = join(tmp, "object");
    await writeFile(file, body);
    const dest = join(tmp, "dest");
    const r = await unpackFile(file, dest, { singleFileName: "model.bin" });
    expect(r).toEqual({ files: 1, bytes: body.length, kind: "file" });
    expect(await readdir(dest)).toEqual(["model.bin"]);
    expect(Buffer.compare(await readFile(join(dest, "model.bin")), body)).toBe(0);
  });

  // Objects of 6..511 bytes are saved as an EMPTY file (bytes: 0): the second peekBytes(512) meets
  // the end of the stream and its unshift() after "end" is lost.
  test("a short non-tar object (under one tar block) is saved intact", async () => {
    const file = join(tmp, "object");
    await writeFile(file, '{"result": 42}');
    const dest = join(tmp, "dest");
    const r = await settleWithin(unpackFile(file, dest, { singleFileName: "retval.json" }), 1000);
    expect(await readFile(join(dest, "retval.json"), "utf8")).toBe('{"result": 42}');
    expect(r).toEqual({ files: 1, bytes: 14, kind: "file" });
  });

  // Objects of 1..5 bytes hang forever (same cause as the empty object above).
  test("a tiny non-tar object (fewer than 6 bytes) is saved intact", async () => {
    const file = join(tmp, "object");
    await writeFile(file, "42\n");
    const dest = join(tmp, "dest");
    await settleWithin(unpackFile(file, dest, { singleFileName: "retval.txt" }), 1000);
    expect(await readFile(join(dest, "retval.txt"), "utf8")).toBe("42\n");
  });

  test("a non-tar object of exactly one tar block (512 bytes) is saved intact", async () => {
    const body = randomBytes(512);
    body.fill(0x41, 257, 263); // make sure no "ustar" magic
    const file = join(tmp, "object");
    await writeFile(file, body);
    const dest = join(tmp, "dest");
    const r = await unpackFile(file, dest, { singleFileName: "blk.bin" });
    expect(r).toEqual({ files: 1, bytes: 512, kind: "file" });
    expect(Buffer.compare(await readFile(join(dest, "blk.bin")), body)).toBe(0);
  });

  test("singleFileName is reduced to its base name", async () => {
    const file = join(tmp, "object");
    await writeFile(file, "payload that is not a tar");
    const dest = join(tmp, "case", "dest");
    await unpackFile(file, dest, { singleFileName: "experiments/key/../../../escape.txt" });
    expect(await readdir(dest)).toEqual(["escape.txt"]);
    expect(existsSync(join(tmp, "escape.txt"))).toBe(false);
  });

  test("a single-file object over budget is refused", async () => {
    const file = join(tmp, "object");
    await writeFile(file, randomBytes(300_000));
    let caught: unknown;
    try {
      await unpackFile(file, join(tmp, "dest"), { singleFileName: "big.bin", budgetBytes: 1000 });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ArchiveError);
  });

  test("a tar is still unpacked as a tar when singleFileName is given", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const file = join(tmp, "x.tar");
    await packToFile(src, file);
    const dest = join(tmp, "dest");
    const r = await unpackFile(file, dest, { singleFileName: "ignored.bin" });
    expect(r.kind).toBe("tar");
    await expectTree(dest);
  });
});

describe("fingerprintDirectory", () => {
  test("stable when nothing changes, different when a file changes", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const first = await fingerprintDirectory(src);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await fingerprintDirectory(src)).toBe(first);
    await writeFile(join(src, "nested", "with space.txt"), "changed, and longer\n");
    const second = await fingerprintDirectory(src);
    expect(second).not.toBe(first);
    expect(await fingerprintDirectory(src)).toBe(second);
  });

  test("changes when a same-size file gets a new modification time", async () => {
    const src = join(tmp, "src");
    await mkdir(src);
    await writeFile(join(src, "f.txt"), "aaaa");
    await utimes(join(src, "f.txt"), new Date(1_600_000_000_000), new Date(1_600_000_000_000));
    const first = await fingerprintDirectory(src);
    await writeFile(join(src, "f.txt"), "bbbb");
    await utimes(join(src, "f.txt"), new Date(1_600_000_100_000), new Date(1_600_000_100_000));
    expect(await fingerprintDirectory(src)).not.toBe(first);
  });

  test("changes when a file is added or removed", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const first = await fingerprintDirectory(src);
    await writeFile(join(src, "new.txt"), "");
    const added = await fingerprintDirectory(src);
    expect(added).not.toBe(first);
    await rm(join(src, "new.txt"));
    expect(await fingerprintDirectory(src)).toBe(first);
  });

  test("a missing directory has the fingerprint 'missing'", async () => {
    expect(await fingerprintDirectory(join(tmp, "nope"))).toBe("missing");
  });
});

describe("packDirectory: the root", () => {
  test("a root that is a link is refused by default (a job's directory) and followed with followRootLink (submit's own --workspace)", async () => {
    const src = join(tmp, "src");
    await makeTree(src);
    const link = join(tmp, "workspace-link");
    await symlink(src, link);
    await expect(packToFile(link, join(tmp, "refused.tar"))).rejects.toThrow(/symbolic link/);
    const file = join(tmp, "x.tar");
    await pipeline(packDirectory(link, { followRootLink: true }), createWriteStream(file));
    const dest = join(tmp, "dest");
    await unpackFile(file, dest);
    await expectTree(dest);
  });
});
