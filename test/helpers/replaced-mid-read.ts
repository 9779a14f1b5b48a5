// The check that a store's read of an object replaced half-way fails clearly and hands on nothing
// of the new version: shared by the S3 and GCS parallel-read tests.

import { expect } from "bun:test";
import { Readable } from "node:stream";
import type { ObjectStore } from "../../src/storage/object-store.ts";
import { ObjectChangedError } from "../../src/storage/parallel-ranges.ts";

/** Puts `bytes` of 1s, starts reading, puts `bytes` of 2s over it, and expects the read to fail. */
export async function expectReplacedMidReadFails(store: ObjectStore, location: string, bytes: number) {
  await store.put(location, Readable.from([Buffer.alloc(bytes, 1)]));
  const it = (await store.get(location))[Symbol.asyncIterator]();
  await it.next(); // the read has begun on the first version
  await store.put(location, Readable.from([Buffer.alloc(bytes, 2)]));
  let err: unknown;
  try {
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      expect((next.value as Buffer).includes(2)).toBe(false);
    }
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ObjectChangedError);
  expect((err as Error).message).toContain("replaced while it was being read");
}
