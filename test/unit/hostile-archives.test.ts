// Hostile archives against src/archive/unpack.ts, beyond what test/unit/archive.test.ts covers: links
// that escape in two steps, hard links to /etc/passwd, to symlinks and to directories, duplicate
// names (a file, then a symlink of the same name), tar bombs by member count and by compression,
// long names, control characters, setuid bits. Each must end in an ArchiveError (a PermanentError:
// the request is at fault, never retried) naming the member, with nothing written outside.
// Then the other direction: hostile directories packed for upload, and runner-written files in
// directories a job can write (src/archive/walk.ts, src/fs/safe-open.ts).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createReadStream, existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_ARCHIVE_ENTRIES, unpackArchive, type UnpackOptions } from "../../src/archive/unpack.ts";
import { ArchiveError, PermanentError } from "../../src/errors.ts";
import { craftTar, type TarEntry as Entry } from "../helpers/craft-tar.ts";
import { directoryBytes, fingerprintDirectory, NotADirectoryToPack, packDirectory } from "../../src/archive/pack.ts";
import { MAX_WALK_DEPTH, type SkippedEntry } from "../../src/archive/walk.ts";
import { NotARegularFileError, readRegularFileNoFollow, writeRunnerFile } from "../../src/fs/safe-open.ts";
import { waitFor } from "../helpers/wait-for.ts";

let tmp: string;
/** <tmp>/case/dest: the destination; <tmp>/case must hold nothing else afterwards. */
let caseDir: string;
let dest: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "studio-runner-hostile-"));
  caseDir = join(tmp, "case");
  dest = join(caseDir, "dest");
  await mkdir(caseDir);
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function sh(cmd: string): void {
  const r = Bun.spawnSync(["sh", "-c", cmd], { cwd: tmp, stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd} failed: ${r.stderr.toString()}`);
}

/** How many `xz -dc` children this test process has (an unpack must not leave one running). */
function xzChildren(): number {
  const ps = Bun.spawnSync(["sh", "-c", `ps -o pid=,args= --ppid ${process.pid} | grep -c "[x]z -dc" || true`], {
    stdout: "pipe",
  });
  return Number(ps.stdout.toString().trim());
}

function unpackFile(file: string, options?: UnpackOptions) {
  return unpackArchive(createReadStream(file), dest, options);
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

/** Expect an ArchiveError (permanent) naming the member, and nothing next to the destination. */
async function expectRefused(promise: Promise<unknown>, ...mentions: string[]): Promise<ArchiveError> {
  let caught: unknown;
  try {
    await settleWithin(promise, 20_000);
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof ArchiveError))
    throw new Error(
      `expected an ArchiveError, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`,
    );
  expect(caught).toBeInstanceOf(PermanentError);
  expect(caught.retryable).toBe(false);
  for (const m of mentions) expect(caught.message).toContain(m);
  await expectNothingOutside();
  return caught;
}

async function expectNothingOutside(): Promise<void> {
  expect((await readdir(caseDir)).filter((n) => n !== "dest")).toEqual([]);
  expect((await readdir(tmp)).filter((n) => n !== "case" && !n.endsWith(".tar") && !n.includes("."))).toEqual([]);
}

async function present(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

describe("links that escape", () => {
  test(
    "a symlink with '..' after a name (x -> ., up -> x/../outside.txt), then a " + "file written through it",
    async () => {
      const file = join(tmp, "t.tar");
      await craftTar(file, [
        { header: { name: "x", type: "symlink", linkname: "." } },
        { header: { name: "up", type: "symlink", linkname: "x/../outside.txt" } },
        { header: { name: "up", type: "file", size: 4 }, content: "evil" },
      ]);
      const err = await expectRefused(unpackFile(file), '"up"', "x/../outside.txt");
      expect(err.message).toContain("symlink");
      expect(existsSync(join(caseDir, "outside.txt"))).toBe(false);
    },
  );

  test("a symlink escape refused, then a file through the same path is never written", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "esc", type: "symlink", linkname: "../outside" } },
      { header: { name: "esc/f.txt", type: "file", size: 1 }, content: "x" },
    ]);
    await expectRefused(unpackFile(file), '"esc"', "../outside");
    expect(await present(join(dest, "esc"))).toBe(false);
  });

  test("a symlink in a subdirectory climbing out with leading '..' (a/b -> ../../x)", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [{ header: { name: "a/b", type: "symlink", linkname: "../../x" } }]);
    await expectRefused(unpackFile(file), '"a/b"', "../../x");
  });

  test("symlinks that stay inside still work, and files land through them inside", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "sub", type: "directory" } },
      { header: { name: "d", type: "symlink", linkname: "sub" } },
      { header: { name: "sub/deeper/up", type: "symlink", linkname: "../../top.txt" } },
      { header: { name: "d/f.txt", type: "file", size: 2 }, content: "ok" },
      { header: { name: "top.txt", type: "file", size: 3 }, content: "top" },
    ]);
    await unpackFile(file);
    expect(await readFile(join(dest, "sub", "f.txt"), "utf8")).toBe("ok");
    expect(await readFile(join(dest, "sub", "deeper", "up"), "utf8")).toBe("top");
    await expectNothingOutside();
  });

  test("a hard link to /etc/passwd (absolute target) is refused naming the member", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [{ header: { name: "h", type: "link", linkname: "/etc/passwd" } }]);
    const err = await expectRefused(unpackFile(file), '"h"', "/etc/passwd");
    expect(err.message).toContain("hard link");
    expect(await present(join(dest, "h"))).toBe(false);
  });

  test("a hard link whose target climbs with a/../../ is refused", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [{ header: { name: "h2", type: "link", linkname: "a/../../outside.txt" } }]);
    await expectRefused(unpackFile(file), '"h2"', "a/../../outside.txt");
  });

  test("a hard link to a symlink extracted earlier is refused (the copy would point elsewhere)", async () => {
    // a/s -> ../f means <dest>/f; a hard link "h" to it is a second symlink "../f" at the top, which
    // means <case>/f, outside; a later file member "h" would then be written through it.
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "a/s", type: "symlink", linkname: "../f" } },
      { header: { name: "h", type: "link", linkname: "a/s" } },
      { header: { name: "h", type: "file", size: 4 }, content: "evil" },
    ]);
    await expectRefused(unpackFile(file), '"h"', "a/s");
    expect(existsSync(join(caseDir, "f"))).toBe(false);
  });

  test("hard links to a directory or to a member that does not exist are refused, not fs errors", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "dir", type: "directory" } },
      { header: { name: "hd", type: "link", linkname: "dir" } },
    ]);
    await expectRefused(unpackFile(file), '"hd"', "dir");
    const file2 = join(tmp, "t2.tar");
    await craftTar(file2, [{ header: { name: "hm", type: "link", linkname: "missing.txt" } }]);
    await rm(dest, { recursive: true, force: true });
    await expectRefused(unpackFile(file2), '"hm"', "missing.txt");
  });
});

describe("duplicate names (TOCTOU style)", () => {
  test("a file, then a symlink of the same name pointing outside, then the file again", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "dup", type: "file", size: 5 }, content: "first" },
      { header: { name: "dup", type: "symlink", linkname: "../outside.txt" } },
      { header: { name: "dup", type: "file", size: 4 }, content: "evil" },
    ]);
    await expectRefused(unpackFile(file), '"dup"', "../outside.txt");
    expect(existsSync(join(caseDir, "outside.txt"))).toBe(false);
  });

  test(
    "a file replaced by an inside symlink, then written again: the symlink is " + "replaced, never written through",
    async () => {
      const file = join(tmp, "t.tar");
      await craftTar(file, [
        { header: { name: "target.txt", type: "file", size: 8 }, content: "original" },
        { header: { name: "dup", type: "file", size: 5 }, content: "first" },
        { header: { name: "dup", type: "symlink", linkname: "target.txt" } },
        { header: { name: "dup", type: "file", size: 6 }, content: "second" },
      ]);
      await unpackFile(file);
      expect(await readFile(join(dest, "target.txt"), "utf8")).toBe("original");
      expect((await lstat(join(dest, "dup"))).isFile()).toBe(true);
      expect(await readFile(join(dest, "dup"), "utf8")).toBe("second");
    },
  );

  test("a file written again after a hard link to it does not change the other name", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "orig.txt", type: "file", size: 4 }, content: "data" },
      { header: { name: "copy.txt", type: "link", linkname: "orig.txt" } },
      { header: { name: "copy.txt", type: "file", size: 7 }, content: "changed" },
    ]);
    await unpackFile(file);
    expect(await readFile(join(dest, "orig.txt"), "utf8")).toBe("data");
    expect(await readFile(join(dest, "copy.txt"), "utf8")).toBe("changed");
  });

  test("a directory, then a symlink of the same name, is refused", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "d", type: "directory" } },
      { header: { name: "d/in.txt", type: "file", size: 1 }, content: "x" },
      { header: { name: "d", type: "symlink", linkname: "." } },
    ]);
    await expectRefused(unpackFile(file), '"d"');
    expect((await lstat(join(dest, "d"))).isDirectory()).toBe(true);
  });

  test("a symlink to a directory inside, then a file of that name, replaces the link only", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "sub", type: "directory" } },
      { header: { name: "l", type: "symlink", linkname: "sub" } },
      { header: { name: "l", type: "file", size: 1 }, content: "x" },
    ]);
    await unpackFile(file);
    expect((await lstat(join(dest, "l"))).isFile()).toBe(true);
    expect(await readdir(join(dest, "sub"))).toEqual([]);
  });
});

describe("special members", () => {
  test("device and FIFO members crafted after a good file: refused, no node created", async () => {
    for (const [type, name] of [
      ["character-device", "tty0"],
      ["block-device", "sda"],
      ["fifo", "pipe"],
    ] as const) {
      const file = join(tmp, `${type}.tar`);
      await craftTar(file, [
        { header: { name: "ok.txt", type: "file", size: 2 }, content: "ok" },
        { header: { name, type, devmajor: 8, devminor: 0 } },
      ]);
      await rm(dest, { recursive: true, force: true });
      await expectRefused(unpackFile(file), `"${name}"`, type);
      expect(await present(join(dest, name))).toBe(false);
    }
  });

  test("setuid, setgid and sticky bits are dropped, permission bits kept", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "suid", type: "file", size: 1, mode: 0o4755 }, content: "x" },
      { header: { name: "sgid", type: "file", size: 1, mode: 0o2750 }, content: "x" },
      { header: { name: "sticky", type: "directory", mode: 0o1777 } },
      { header: { name: "all", type: "file", size: 1, mode: 0o7777 }, content: "x" },
    ]);
    await unpackFile(file);
    expect((await stat(join(dest, "suid"))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(dest, "sgid"))).mode & 0o7000).toBe(0);
    expect((await stat(join(dest, "sticky"))).mode & 0o7000).toBe(0);
    expect((await stat(join(dest, "all"))).mode & 0o7000).toBe(0);
  });

  test("a setuid file replacing an existing file keeps no setuid bit either", async () => {
    await mkdir(dest, { recursive: true });
    await writeFile(join(dest, "tool"), "old");
    const file = join(tmp, "t.tar");
    await craftTar(file, [{ header: { name: "tool", type: "file", size: 3, mode: 0o6755 }, content: "new" }]);
    await unpackFile(file);
    expect((await stat(join(dest, "tool"))).mode & 0o7000).toBe(0);
    expect(await readFile(join(dest, "tool"), "utf8")).toBe("new");
  });
});

describe("names", () => {
  test("a member name longer than PATH_MAX is refused naming the member (shortened)", async () => {
    const long = `${"d/".repeat(2100)}f.txt`;
    const file = join(tmp, "t.tar");
    await craftTar(file, [{ header: { name: long, type: "file", size: 1 }, content: "x" }]);
    const err = await expectRefused(unpackFile(file), "d/d/d/", "longer than");
    expect(err.message.length).toBeLessThan(400);
  });

  test("a name component longer than NAME_MAX is refused, not an ENAMETOOLONG", async () => {
    const file = join(tmp, "t.tar");
    const name = `${"n".repeat(300)}.txt`;
    await craftTar(file, [{ header: { name, type: "file", size: 1 }, content: "x" }]);
    await expectRefused(unpackFile(file), "nnnn", "component");
  });

  test("names with a newline or other control characters are refused (log injection)", async () => {
    for (const name of ["a\nb.txt", "evil\r\n[INFO] fake log line", "tab\there", "esc\u001b[31m"]) {
      const file = join(tmp, "t.tar");
      await craftTar(file, [{ header: { name, type: "file", size: 1 }, content: "x" }]);
      await rm(dest, { recursive: true, force: true });
      const err = await expectRefused(unpackFile(file), JSON.stringify(name));
      expect(err.message).toContain("control character");
      expect(err.message).not.toContain("\n");
    }
  });

  test("a NUL byte in a PAX path is refused", async () => {
    const file = join(tmp, "t.tar");
    await craftTar(file, [
      { header: { name: "ok.txt", type: "file", size: 1, pax: { path: "a\u0000/../../evil" } }, content: "x" },
    ]);
    let caught: unknown;
    try {
      await settleWithin(unpackFile(file), 10_000);
    } catch (err) {
      caught = err;
    }
    // tar-stream may cut the PAX path at the NUL; either way nothing escapes.
    if (caught !== undefined) expect(caught).toBeInstanceOf(ArchiveError);
    await expectNothingOutside();
    expect(existsSync(join(tmp, "evil"))).toBe(false);
  });
});

describe("tar bombs", () => {
  test("MAX_ARCHIVE_ENTRIES is a million", () => {
    expect(MAX_ARCHIVE_ENTRIES).toBe(1_000_000);
  });

  test("more tiny files than the member bound are refused, naming the member that crossed it", async () => {
    const file = join(tmp, "t.tar");
    const entries: Entry[] = Array.from({ length: 300 }, (_, i) => ({
      header: { name: `f${i}`, type: "file" as const, size: 0 },
      content: "",
    }));
    await craftTar(file, entries);
    const err = await expectRefused(unpackFile(file, { maxEntries: 250 }), '"f250"', "250");
    expect(err.message).toContain("members");
    expect((await readdir(dest)).length).toBe(250);
    // Within the bound: fine.
    await rm(dest, { recursive: true, force: true });
    expect((await unpackFile(file, { maxEntries: 300 })).files).toBe(300);
  });

  for (const [tool, ext] of [
    ["gzip", "gz"],
    ["bzip2", "bz2"],
    ["xz", "xz"],
  ] as const) {
    test(`${tool}: a small tar followed by 64 MiB of zeros is stopped at the budget`, async () => {
      const plain = join(tmp, "small.tar");
      await craftTar(plain, [{ header: { name: "a.txt", type: "file", size: 1 }, content: "a" }]);
      const bomb = join(tmp, `bomb.${ext}`);
      sh(`(cat small.tar; head -c 67108864 /dev/zero) | ${tool} -1 -c > bomb.${ext}`);
      expect((await stat(bomb)).size).toBeLessThan(1_000_000);
      const started = Date.now();
      const err = await expectRefused(unpackFile(bomb, { budgetBytes: 1_000_000 }), "budget");
      expect(err.message).toContain("decompresses");
      expect(Date.now() - started).toBeLessThan(15_000);
      await waitFor("no xz child left", () => xzChildren() === 0, 2_000, 50);
    }, 60_000); // making the bomb (64 MiB through the compressor) takes seconds on a loaded 2-core machine

    test(`${tool}: a member declaring more than the budget is refused before it is written`, async () => {
      const bomb = join(tmp, `member.${ext}`);
      sh(
        `mkdir -p src && head -c 20000000 /dev/zero > src/zeros.bin && tar -C src -cf ` +
          `- zeros.bin | ${tool} -1 -c > member.${ext} && rm -r src`,
      );
      // The member's header size, or (when the decompressor hands over one big block first) the
      // decompressed stream, crosses the budget first.
      const err = await expectRefused(unpackFile(bomb, { budgetBytes: 1_000_000 }), "budget");
      expect(err.message.includes('"zeros.bin"') || err.message.includes("decompresses")).toBe(true);
      expect(await present(join(dest, "zeros.bin"))).toBe(false);
    }, 60_000);
  }

  test("zeros only (an 'empty' tar of 64 MiB) return at once as empty, without decompressing it all", async () => {
    const bomb = join(tmp, "zeros.xz");
    sh("head -c 67108864 /dev/zero | xz -1 -c > zeros.xz");
    const started = Date.now();
    const r = await settleWithin(unpackFile(bomb), 10_000);
    expect(r).toEqual({ files: 0, bytes: 0, kind: "tar" });
    expect(await readdir(dest)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The xz child is not left running.
    await waitFor("no xz child left", () => xzChildren() === 0, 2_000, 50);
  });

  test("a single-file (non-tar) compressed bomb is stopped at the budget", async () => {
    const bomb = join(tmp, "blob.gz");
    sh("(printf 'not a tar'; head -c 67108864 /dev/zero) | gzip -1 -c > blob.gz");
    await expectRefused(unpackFile(bomb, { budgetBytes: 1_000_000, singleFileName: "blob.bin" }), "budget");
  });
});

test("a symlink at the single-file name is replaced, not written through", async () => {
  await mkdir(dest, { recursive: true });
  const { symlink } = await import("node:fs/promises");
  await symlink(join(caseDir, "outside.bin"), join(dest, "blob.bin"));
  const file = join(tmp, "blob");
  await writeFile(file, "payload that is not a tar");
  await unpackFile(file, { singleFileName: "blob.bin" });
  expect(existsSync(join(caseDir, "outside.bin"))).toBe(false);
  expect((await lstat(join(dest, "blob.bin"))).isFile()).toBe(true);
  expect(await readlink(join(dest, "blob.bin")).catch(() => "not a link")).toBe("not a link");
});

// ---- The other direction: a hostile job's directory packed for upload (src/archive/pack.ts,
// src/archive/walk.ts). Nothing outside the directory may end up in the tar, whatever links,
// special files or swaps the job left in it.

describe("hostile directories to pack", () => {
  const SECRET = "AWS_SECRET_ACCESS_KEY=not-for-this-experiment-1234567890";

  async function packed(root: string, onSkipped?: (s: SkippedEntry[]) => void): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of packDirectory(root, { onSkipped })) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  function listVerbose(tarBytes: Buffer): string {
    const file = join(tmp, `list-${crypto.randomUUID()}.tar`);
    writeFileSync(file, tarBytes);
    const r = Bun.spawnSync(["tar", "-tvf", file], { stdout: "pipe", stderr: "pipe" });
    return r.stdout.toString();
  }

  test("a root that is a symlink (to a directory holding a secret) is not packed, nothing of it read", async () => {
    const elsewhere = join(tmp, "queue-root");
    await mkdir(join(elsewhere, "local_other"), { recursive: true });
    await writeFile(join(elsewhere, "local_other", "request"), SECRET);
    const root = join(caseDir, "modeldir");
    symlinkSync(elsewhere, root);
    let caught: unknown;
    try {
      await packed(root);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NotADirectoryToPack);
    expect((caught as Error).message).not.toContain(elsewhere);
    expect(await fingerprintDirectory(root)).toBe("not a directory: a symbolic link");
    expect(await directoryBytes(root)).toBe(0);
  });

  test("a symlink to /etc/passwd inside is stored as a symlink member; its content is not", async () => {
    const root = join(caseDir, "output");
    await mkdir(root);
    await writeFile(join(root, "real.txt"), "mine\n");
    symlinkSync("/etc/passwd", join(root, "passwd"));
    const tarBytes = await packed(root);
    const listing = listVerbose(tarBytes);
    expect(listing).toMatch(/^l.* passwd -> \/etc\/passwd$/m);
    expect(tarBytes.includes(readFileSync("/etc/passwd").subarray(0, 20))).toBe(false);
    expect(tarBytes.includes(Buffer.from("mine\n"))).toBe(true);
  });

  test("a symlinked subdirectory pointing outside is a link member; nothing under its target is read", async () => {
    const outside = join(tmp, "outside");
    await mkdir(outside);
    await writeFile(join(outside, "secret.txt"), SECRET);
    const root = join(caseDir, "modeldir");
    await mkdir(join(root, "sub"), { recursive: true });
    symlinkSync(outside, join(root, "sub", "escape"));
    const tarBytes = await packed(root);
    expect(tarBytes.includes(Buffer.from(SECRET))).toBe(false);
    expect(listVerbose(tarBytes)).toContain(`sub/escape -> ${outside}`);
  });

  test("a FIFO and a socket are left out with a note, without blocking the pack", async () => {
    const root = join(caseDir, "modeldir");
    await mkdir(root);
    await writeFile(join(root, "a.txt"), "a\n");
    sh(`mkfifo ${join(root, "pipe")}`);
    const server = createServer();
    await new Promise<void>((r) => server.listen(join(root, "sock"), r));
    const skipped: SkippedEntry[] = [];
    try {
      const tarBytes = await settleWithin(
        packed(root, (s) => skipped.push(...s)),
        10_000,
      );
      const listing = listVerbose(tarBytes);
      expect(listing).toContain("a.txt");
      expect(listing).not.toContain("pipe");
      expect(listing).not.toContain("sock");
    } finally {
      server.close();
    }
    expect(skipped.map((s) => s.rel).sort()).toEqual(["pipe", "sock"]);
    expect(skipped.find((s) => s.rel === "pipe")!.why).toContain("FIFO");
  });

  test("a file swapped with a symlink to a secret, over and over, while it is packed: " +
    "the secret never lands in the tar", async () => {
    const secretFile = join(tmp, "host-secret.txt");
    await writeFile(secretFile, SECRET);
    const root = join(caseDir, "modeldir");
    await mkdir(root);
    await writeFile(join(root, "model.bin"), "weights\n".repeat(1000));
    // The job: replaces model.bin by a link to the secret and back, as fast as it can.
    const swapper = Bun.spawn(
      [
        "sh",
        "-c",
        `cd ${root} && while :; do ln -sfn ${secretFile} l.tmp && mv -T l.tmp ` +
          `model.bin; printf 'weights\\n' > f.tmp && mv -T f.tmp model.bin; done`,
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    try {
      // Each pass stores model.bin as the file, as the link (its target text), or leaves it out:
      // never the secret's content.
      for (let i = 0; i < 60; i++) {
        const tarBytes = await packed(root).catch(() => Buffer.alloc(0));
        expect(tarBytes.includes(Buffer.from(SECRET))).toBe(false);
      }
    } finally {
      swapper.kill();
      await swapper.exited;
    }
  }, 60_000);

  test(
    "deep nesting is bounded: directories past MAX_WALK_DEPTH are left out with a " + "note, not an fd exhaustion",
    async () => {
      const root = join(caseDir, "deep");
      await mkdir(root);
      sh(`cd ${root} && for i in $(seq 1 ${MAX_WALK_DEPTH + 5}); do mkdir d && cd d; done && echo bottom > f.txt`);
      const skipped: SkippedEntry[] = [];
      const tarBytes = await packed(root, (s) => skipped.push(...s));
      expect(tarBytes.includes(Buffer.from("bottom\n"))).toBe(false);
      expect(skipped.some((s) => s.why.includes("nested deeper"))).toBe(true);
    },
  );
});

describe("runner-written files in job-writable directories", () => {
  test("_results.json: a symlink planted at its name to a host file is replaced, the host file unchanged", async () => {
    const hostFile = join(tmp, "host.conf");
    await writeFile(hostFile, "precious\n");
    const results = join(caseDir, "_results");
    await mkdir(results);
    symlinkSync(hostFile, join(results, "_results.json"));
    await writeRunnerFile(results, "_results.json", '{"ok":true}');
    expect(await readFile(hostFile, "utf8")).toBe("precious\n");
    expect((await lstat(join(results, "_results.json"))).isFile()).toBe(true);
    expect(await readFile(join(results, "_results.json"), "utf8")).toBe('{"ok":true}');
  });

  test("the _results directory itself a symlink to a host directory: not followed, a real directory made", async () => {
    const hostDir = join(tmp, "host-dir");
    await mkdir(hostDir);
    const results = join(caseDir, "_results");
    symlinkSync(hostDir, results);
    await writeRunnerFile(results, "_results.json", '{"ok":true}');
    expect(await readdir(hostDir)).toEqual([]);
    expect((await lstat(results)).isDirectory()).toBe(true);
    expect(await readFile(join(results, "_results.json"), "utf8")).toBe('{"ok":true}');
  });

  test("a directory or a plain file planted at the name is moved or removed, never written into", async () => {
    const dir = join(caseDir, "d");
    await mkdir(join(dir, "_results.json"), { recursive: true });
    await writeFile(join(dir, "_results.json", "inside"), "job's");
    await writeRunnerFile(dir, "_results.json", "runner's");
    expect(await readFile(join(dir, "_results.json"), "utf8")).toBe("runner's");
    await writeFile(join(dir, "other.json"), "job's");
    const umask = process.umask(0o077);
    try {
      await writeRunnerFile(dir, "other.json", "runner's", 0o444, { exactMode: true });
    } finally {
      process.umask(umask);
    }
    expect(await readFile(join(dir, "other.json"), "utf8")).toBe("runner's");
    expect((await stat(join(dir, "other.json"))).mode & 0o777).toBe(0o444); // readable by the job even under umask 077
  });

  test("readRegularFileNoFollow refuses a link and a FIFO by kind, never naming the target", async () => {
    const target = join(tmp, "amqp-url.txt");
    await writeFile(target, "amqp://user:hunter2@rabbit:5672/");
    symlinkSync(target, join(caseDir, "msg"));
    sh(`mkfifo ${join(caseDir, "fifo")}`);
    for (const [name, kind] of [
      ["msg", "symbolic link"],
      ["fifo", "FIFO"],
    ] as const) {
      let caught: unknown;
      try {
        await settleWithin(readRegularFileNoFollow(join(caseDir, name), `message q/${name}`), 5_000);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(NotARegularFileError);
      expect((caught as Error).message).toContain(kind);
      expect((caught as Error).message).not.toContain("hunter2");
      expect((caught as Error).message).not.toContain(target);
    }
  });
});
