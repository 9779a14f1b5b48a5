// One conformance suite for every object store: each adapter's test file calls it.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { describe, expect } from "bun:test";
import { Readable } from "node:stream";
import { NotFoundError } from "../../src/errors.ts";
import type { ObjectStore } from "../../src/storage/object-store.ts";

export type StoreHarness = { store: ObjectStore; locationOf(key: string): string; cleanup(): Promise<void> };

async function readAll(r: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks).toString("utf8");
}

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

    withHarness("delete removes the object", async (h) => {
      const loc = h.locationOf("experiments/k/tb.tar");
      await h.store.put(loc, Readable.from([Buffer.from("tb")]));
      await h.store.delete(loc);
      expect(await h.store.head(loc)).toBeUndefined();
    });
  });
}
