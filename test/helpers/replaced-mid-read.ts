// The check that a store's getFile of an object replaced half-way fails clearly (the partial file
// is the caller's to throw away): shared by the S3 and GCS parallel-read tests.

import { expect } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { ObjectStore } from "../../src/storage/object-store.ts";
import { ObjectChangedError } from "../../src/storage/parallel-ranges.ts";
import type { ForwardingProxy } from "./forwarding-proxy.ts";

export type ReplacedMidRead = {
  /** Reads through `gate` (its endpoint points at the proxy). */
  reader: ObjectStore;
  /** Writes to the server directly. */
  writer: ObjectStore;
  /** The object, as the reader names it. */
  location: string;
  /** The same object as the writer names it (when its location names the server). */
  writeLocation?: string;
  bytes: number;
  /** A proxy in front of the server, between the reader and it. */
  gate: ForwardingProxy;
};

const isRangedGet = (r: { method: string; headers: Headers }) => r.method === "GET" && r.headers.has("range");

/**
 * Puts `bytes` of 1s, starts getFile, and as soon as its first bytes land puts `bytes` of 2s over
 * the object; expects the read to fail with ObjectChangedError. The proxy holds every ranged GET
 * asked for once the replacement has begun until it is stored, so the parts still to come are
 * asked of the new version whatever the timing (the object must span more parts than are in flight).
 */
export async function expectReplacedMidReadFails(o: ReplacedMidRead): Promise<void> {
  const writeLocation = o.writeLocation ?? o.location;
  await o.writer.put(writeLocation, Readable.from([Buffer.alloc(o.bytes, 1)]));
  let replacing: Promise<unknown> | undefined;
  let heldFrom = -1;
  o.gate.intercept = async (r) => {
    if (replacing && isRangedGet(r)) await replacing.catch(() => undefined);
    return undefined;
  };
  const dir = await mkdtemp(join(tmpdir(), "replaced-mid-read-"));
  try {
    const err = await o.reader.getFile!(o.location, join(dir, "object"), {
      onBytes: () => {
        if (replacing) return;
        heldFrom = o.gate.seen.length;
        replacing = o.writer.put(writeLocation, Readable.from([Buffer.alloc(o.bytes, 2)]));
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(replacing).toBeDefined();
    await replacing; // the new version was stored
    // Parts were still asked for after the replacement began: they met the new version.
    expect(o.gate.seen.slice(heldFrom).filter(isRangedGet).length).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(ObjectChangedError);
    expect((err as Error).message).toContain("replaced while it was being read");
  } finally {
    o.gate.intercept = undefined;
    await rm(dir, { recursive: true, force: true });
  }
}
