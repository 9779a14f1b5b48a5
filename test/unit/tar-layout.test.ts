// Covers src/archive/tar-layout.ts: the laid-out tar is byte for byte the tar packOpenDirectory
// streams (headers, small files, links, large files referenced, not read), any range of it reads
// back right whether it lies in one file (a Blob the runtime reads) or across several pieces (a
// stream), a directory not worth laying out says so, and a referenced file that shrank is refused.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packOpenDirectory } from "../../src/archive/pack.ts";
import { LaidOutFileChanged, layOutOpenDirectory, type LaidOutBytes } from "../../src/archive/tar-layout.ts";
import { tryOpenDirectory } from "../../src/fs/safe-open.ts";

const MiB = 1024 * 1024;
const LIMITS = { referenceFromBytes: 1 * MiB, maxInlineBytes: 8 * MiB, maxReferencedFiles: 16 };
let root: string;
let dir: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "tar-layout-"));
  dir = join(root, "artifact");
  mkdirSync(join(dir, "sub/deeper"), { recursive: true });
  writeFileSync(join(dir, "big.bin"), randomBytes(3 * MiB + 17)); // referenced
  writeFileSync(join(dir, "sub/also-big.bin"), randomBytes(MiB)); // referenced (exactly the threshold)
  writeFileSync(join(dir, "sub/small.txt"), "hello\n");
  writeFileSync(join(dir, "sub/deeper/empty"), "");
  writeFileSync(join(dir, `${"long-name-".repeat(12)}.json`), "{}"); // a pax header
  writeFileSync(join(dir, "medium.bin"), randomBytes(MiB - 1)); // read, not referenced
  symlinkSync("sub/small.txt", join(dir, "link"));
  for (const p of ["big.bin", "sub/also-big.bin", "sub/small.txt", "medium.bin"]) {
    utimesSync(join(dir, p), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
  }
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function packed(): Promise<Buffer> {
  const opened = await tryOpenDirectory(dir);
  if ("not" in opened) throw new Error("no directory");
  const chunks: Buffer[] = [];
  for await (const c of packOpenDirectory(opened.dir)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function bytesOf(source: LaidOutBytes, start: number, end: number): Promise<{ bytes: Buffer; blob: boolean }> {
  const body = source.body(start, end);
  if (body instanceof Blob) return { bytes: Buffer.from(await body.arrayBuffer()), blob: true };
  return { bytes: Buffer.from(await new Response(body).arrayBuffer()), blob: false };
}

async function withLayout<T>(fn: (source: LaidOutBytes) => Promise<T>, limits = LIMITS) {
  const opened = await tryOpenDirectory(dir);
  if ("not" in opened) throw new Error("no directory");
  try {
    const layout = await layOutOpenDirectory(opened.dir, limits);
    if (!layout) return undefined;
    try {
      return await fn(layout.source);
    } finally {
      await layout.close();
    }
  } finally {
    await opened.dir.close();
  }
}

describe("a tar laid out over its files", () => {
  test("is byte for byte the packed tar, read whole or in any ranges", async () => {
    const expected = await packed();
    await withLayout(async (source) => {
      expect(source.sizeBytes).toBe(expected.length);
      expect((await bytesOf(source, 0, source.sizeBytes)).bytes.equals(expected)).toBe(true);
      // Ranges of every kind: inside one referenced file (a Blob), across headers and files (a stream).
      let blobs = 0;
      let streams = 0;
      const cuts = [0, 1, 511, 512, 513, 1000, MiB, 2 * MiB, 3 * MiB + 17, expected.length - 1, expected.length];
      for (let i = 0; i < 40; i++) cuts.push(Math.floor(Math.random() * expected.length));
      cuts.sort((a, b) => a - b);
      for (let i = 0; i + 1 < cuts.length; i++) {
        const [a, b] = [cuts[i]!, cuts[i + 1]!];
        if (a === b) continue;
        const { bytes, blob } = await bytesOf(source, a, b);
        if (blob) blobs++;
        else streams++;
        expect(bytes.equals(expected.subarray(a, b))).toBe(true);
      }
      // A range wholly inside big.bin's content is a Blob.
      const inBig = expected.indexOf(Buffer.from("big.bin")) + 2048;
      expect((await bytesOf(source, inBig, inBig + 4096)).blob).toBe(true);
      expect(blobs).toBeGreaterThan(0);
      expect(streams).toBeGreaterThan(0);
    });
  });

  test("a range anywhere inside one large file is one Blob, however many pieces the file was laid out in", async () => {
    const path = join(dir, "huge.bin");
    writeFileSync(path, randomBytes(20 * MiB)); // many stand-in chunks (1 MiB each)
    try {
      const expected = await packed();
      const at = expected.indexOf(Buffer.from("huge.bin")) + 512 + MiB; // past its header
      await withLayout(async (source) => {
        const { bytes, blob } = await bytesOf(source, at, at + 16 * MiB);
        expect(blob).toBe(true);
        expect(bytes.equals(expected.subarray(at, at + 16 * MiB))).toBe(true);
      });
    } finally {
      rmSync(path, { force: true });
    }
  });

  test("too many small bytes or too many large files: not laid out (undefined), nothing left open", async () => {
    const openFds = () => readdirSync("/proc/self/fd").length;
    const before = openFds();
    expect(await withLayout(async () => "laid out", { ...LIMITS, maxInlineBytes: 64 * 1024 })).toBeUndefined();
    expect(await withLayout(async () => "laid out", { ...LIMITS, maxReferencedFiles: 1 })).toBeUndefined();
    expect(openFds()).toBe(before);
  });

  test("a referenced file that shrank after the layout is refused by check()", async () => {
    const path = join(dir, "shrinks.bin");
    writeFileSync(path, randomBytes(2 * MiB));
    try {
      await withLayout(async (source) => {
        expect(() => source.check()).not.toThrow();
        truncateSync(path, MiB);
        expect(() => source.check()).toThrow(LaidOutFileChanged);
        expect(() => source.check()).toThrow(/shrinks\.bin shrank/);
      });
    } finally {
      rmSync(path, { force: true });
    }
  });
});
