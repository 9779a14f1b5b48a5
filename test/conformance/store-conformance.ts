// One conformance suite for every object store: each adapter's test file calls it. It covers the
// stream calls and the whole-file transfers (file-transfer.ts) that downloads and uploads go through.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { describe, expect } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { packOpenDirectory } from "../../src/archive/pack.ts";
import { layOutOpenDirectory } from "../../src/archive/tar-layout.ts";
import { NotFoundError } from "../../src/errors.ts";
import { tryOpenDirectory } from "../../src/fs/safe-open.ts";
import { downloadToFile, uploadFromFile } from "../../src/storage/file-transfer.ts";
import { GrowingFile, spoolInto } from "../../src/storage/growing-file.ts";
import type { ObjectStore } from "../../src/storage/object-store.ts";

export type StoreHarness = { store: ObjectStore; locationOf(key: string): string; cleanup(): Promise<void> };

async function readAll(r: Readable): Promise<string>;
async function readAll(r: Readable, as: "buffer"): Promise<Buffer>;
async function readAll(r: Readable, as?: "buffer"): Promise<string | Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c));
  const all = Buffer.concat(chunks);
  return as === "buffer" ? all : all.toString("utf8");
}

const MiB = 1024 * 1024;
/** Over two parts of the default transfer settings (16 MiB), so stores that read and write in parts do. */
const LARGE_BYTES = 40 * MiB + 123;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function storeConformance(kind: string, makeHarness: () => Promise<StoreHarness>) {
  describe(`store conformance: ${kind}`, () => {
    const withHarness = fixtureTest(makeHarness);

    withHarness("a missing object: head is undefined, get throws NotFoundError", async (h) => {
      const loc = h.locationOf("experiments/none/output.tar");
      expect(await h.store.head(loc)).toBeUndefined();
      await expect(h.store.get(loc)).rejects.toBeInstanceOf(NotFoundError);
    });

    withHarness("put then get returns the same bytes; head reports the size", async (h) => {
      const loc = h.locationOf("blobstore/abc.tar");
      const body = "x".repeat(100_000);
      const info = await h.store.put(loc, Readable.from([Buffer.from(body)]));
      expect(info.sizeBytes).toBe(100_000);
      expect((await h.store.head(loc))!.sizeBytes).toBe(100_000);
      expect(await readAll(await h.store.get(loc))).toBe(body);
    });

    withHarness("overwriting changes the version", async (h) => {
      const loc = h.locationOf("experiments/k/modeldir.tar");
      const v1 = (await h.store.put(loc, Readable.from([Buffer.from("one")]))).version;
      await Bun.sleep(5); // timing: a store whose version is a time stamp must see a later one
      const v2 = (await h.store.put(loc, Readable.from([Buffer.from("two!")]))).version;
      expect(v2).not.toBe(v1);
      expect(await readAll(await h.store.get(loc))).toBe("two!");
    });

    withHarness("a failed upload leaves the old object whole and no partial object", async (h) => {
      const loc = h.locationOf("experiments/k/output.tar");
      await h.store.put(loc, Readable.from([Buffer.from("complete")]));
      const failing = new Readable({
        read() {
          this.push(Buffer.from("partial"));
          this.destroy(new Error("connection reset"));
        },
      });
      await expect(h.store.put(loc, failing)).rejects.toThrow();
      expect(await readAll(await h.store.get(loc))).toBe("complete");
      const fresh = h.locationOf("experiments/k/never.tar");
      const failing2 = new Readable({
        read() {
          this.destroy(new Error("boom"));
        },
      });
      await expect(h.store.put(fresh, failing2)).rejects.toThrow();
      expect(await h.store.head(fresh)).toBeUndefined();
    });

    withHarness("a file round trip: uploadFromFile then downloadToFile (in parts where the store can)", async (h) => {
      const dir = await mkdtemp(join(tmpdir(), "store-files-"));
      try {
        const data = randomBytes(LARGE_BYTES);
        await Bun.write(join(dir, "up.bin"), data);
        const loc = h.locationOf("experiments/k/large.tar");
        let sent = 0;
        const info = await uploadFromFile(h.store, loc, join(dir, "up.bin"), { onBytes: (n) => (sent += n) });
        expect(info.sizeBytes).toBe(data.length);
        expect(sent).toBe(data.length);
        let received = 0;
        const known = await h.store.head(loc);
        await downloadToFile(h.store, loc, join(dir, "down.bin"), { known, onBytes: (n) => (received += n) });
        expect(received).toBe(data.length);
        expect(sha256(await readFile(join(dir, "down.bin")))).toBe(sha256(data));
        await expect(
          downloadToFile(h.store, h.locationOf("experiments/none/x.tar"), join(dir, "x")),
        ).rejects.toBeInstanceOf(NotFoundError);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    withHarness("uploadFromFile follows a file still being written; a writer that fails stores nothing", async (h) => {
      const dir = await mkdtemp(join(tmpdir(), "store-files-"));
      try {
        const data = randomBytes(LARGE_BYTES);
        const slowly = (failAt?: number) =>
          Readable.from(
            (async function* () {
              for (let at = 0; at < data.length; at += 4 * MiB) {
                if (failAt !== undefined && at >= failAt) throw new Error("the packer broke");
                await Bun.sleep(5);
                yield data.subarray(at, at + 4 * MiB);
              }
            })(),
          );
        const loc = h.locationOf("experiments/k/spooled.tar");
        const growing = new GrowingFile();
        const packing = spoolInto(slowly(), join(dir, "spool"), growing);
        const info = await uploadFromFile(h.store, loc, join(dir, "spool"), { growing });
        expect(await packing).toBe(data.length);
        expect(info.sizeBytes).toBe(data.length);
        expect(sha256(await readAll(await h.store.get(loc), "buffer"))).toBe(sha256(data));

        const broken = new GrowingFile();
        const failing = spoolInto(slowly(24 * MiB), join(dir, "spool2"), broken);
        failing.catch(() => undefined);
        await expect(uploadFromFile(h.store, loc, join(dir, "spool2"), { growing: broken })).rejects.toThrow(
          "the packer broke",
        );
        expect(sha256(await readAll(await h.store.get(loc), "buffer"))).toBe(sha256(data)); // the old one, whole
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    withHarness(
      "putSource (where a store has it): a tar laid out over its files stores the packed tar; a file that shrank stores nothing",
      async (h) => {
        const putSource = h.store.putSource?.bind(h.store);
        if (!putSource) return; // stores without it upload artifacts from a spool file (tested above)
        const dir = await mkdtemp(join(tmpdir(), "store-layout-"));
        try {
          await mkdir(join(dir, "sub"));
          await writeFile(join(dir, "big.bin"), randomBytes(LARGE_BYTES)); // spans parts, sent from the file
          await writeFile(join(dir, "sub/small.txt"), "small\n");
          const packedTar = async () => {
            const opened = await tryOpenDirectory(dir);
            if ("not" in opened) throw new Error("no directory");
            return readAll(packOpenDirectory(opened.dir), "buffer");
          };
          const sendLaidOut = async (loc: string, before?: () => Promise<void>) => {
            const opened = await tryOpenDirectory(dir);
            if ("not" in opened) throw new Error("no directory");
            const layout = await layOutOpenDirectory(opened.dir);
            if (!layout) throw new Error("not laid out");
            try {
              await before?.();
              let counted = 0;
              const info = await putSource(loc, layout.source, { onBytes: (n) => (counted += n) });
              expect(counted).toBe(layout.source.sizeBytes);
              return info;
            } finally {
              await layout.close();
              await opened.dir.close();
            }
          };
          const loc = h.locationOf("experiments/k/modeldir.tar");
          const expected = await packedTar();
          const info = await sendLaidOut(loc);
          expect(info.sizeBytes).toBe(expected.length);
          expect(sha256(await readAll(await h.store.get(loc), "buffer"))).toBe(sha256(expected));

          // big.bin shrinks after the layout, before it is sent: the old object stays, whole.
          await expect(sendLaidOut(loc, () => truncate(join(dir, "big.bin"), 3 * MiB))).rejects.toThrow();
          expect(sha256(await readAll(await h.store.get(loc), "buffer"))).toBe(sha256(expected));
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    );

    withHarness("delete removes the object", async (h) => {
      const loc = h.locationOf("experiments/k/tb.tar");
      await h.store.put(loc, Readable.from([Buffer.from("tb")]));
      await h.store.delete(loc);
      expect(await h.store.head(loc)).toBeUndefined();
    });
  });
}
