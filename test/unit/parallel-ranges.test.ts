// Covers src/storage/parallel-ranges.ts with ranges served from memory: the bytes come out whole and
// in order whatever order the parts finish in, at most `concurrency` parts are in flight, a part
// that breaks mid-body is fetched again alone, a changed object fails at once, and a part that
// keeps failing fails the read naming its bytes.

import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { PermanentError } from "../../src/errors.ts";
import { ObjectChangedError, parallelRangeStream, worthParallel } from "../../src/storage/parallel-ranges.ts";

const KiB = 1024;
const noSleep = async () => {};

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Serves ranges of `data`, each in 1 KiB chunks after a delay that makes later parts finish first. */
function server(data: Buffer, faults: (start: number, call: number) => "break" | "changed" | "refused" | undefined) {
  const calls = new Map<number, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    calls,
    get maxInFlight() {
      return maxInFlight;
    },
    fetchRange: async (start: number, end: number) => {
      const call = (calls.get(start) ?? 0) + 1;
      calls.set(start, call);
      const fault = faults(start, call);
      if (fault === "changed") throw new ObjectChangedError("the object changed");
      if (fault === "refused") throw new PermanentError("access denied");
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await Bun.sleep(Math.max(0, 20 - start / (8 * KiB))); // later parts answer sooner
      const slice = data.subarray(start, end + 1);
      async function* body() {
        try {
          for (let i = 0; i < slice.length; i += KiB) {
            if (fault === "break" && i >= slice.length / 2) throw new Error("connection reset");
            yield slice.subarray(i, i + KiB);
          }
        } finally {
          inFlight--;
        }
      }
      return Readable.from(body());
    },
  };
}

describe("parallel ranged reads", () => {
  test("whole and in order, at most `concurrency` parts in flight", async () => {
    const data = randomBytes(100 * KiB + 123);
    const s = server(data, () => undefined);
    const out = await readAll(
      parallelRangeStream({
        concurrency: 3,
        partBytes: 8 * KiB,
        totalBytes: data.length,
        fetchRange: s.fetchRange,
        describe: "x",
      }),
    );
    expect(out.equals(data)).toBe(true);
    expect(s.calls.size).toBe(13);
    expect(s.maxInFlight).toBeLessThanOrEqual(3);
    expect(s.maxInFlight).toBeGreaterThan(1);
  });

  test("a part that breaks mid-body is fetched again alone", async () => {
    const data = randomBytes(64 * KiB);
    const s = server(data, (start, call) => (start === 24 * KiB && call === 1 ? "break" : undefined));
    const out = await readAll(
      parallelRangeStream({
        concurrency: 4,
        partBytes: 8 * KiB,
        totalBytes: data.length,
        fetchRange: s.fetchRange,
        describe: "x",
        sleep: noSleep,
      }),
    );
    expect(out.equals(data)).toBe(true);
    expect(s.calls.get(24 * KiB)).toBe(2);
    expect([...s.calls.entries()].filter(([start]) => start !== 24 * KiB).every(([, n]) => n === 1)).toBe(true);
  });

  test("a changed object and a refusal fail at once; a part that keeps failing fails naming its bytes", async () => {
    const data = randomBytes(32 * KiB);
    for (const fault of ["changed", "refused"] as const) {
      const s = server(data, (start) => (start === 8 * KiB ? fault : undefined));
      const err = await readAll(
        parallelRangeStream({
          concurrency: 2,
          partBytes: 8 * KiB,
          totalBytes: data.length,
          fetchRange: s.fetchRange,
          describe: "x",
        }),
      ).catch((e) => e);
      expect(err).toBeInstanceOf(fault === "changed" ? ObjectChangedError : PermanentError);
      expect(s.calls.get(8 * KiB)).toBe(1);
    }
    const s = server(data, (start) => (start === 16 * KiB ? "break" : undefined));
    const err = await readAll(
      parallelRangeStream({
        concurrency: 2,
        partBytes: 8 * KiB,
        totalBytes: data.length,
        fetchRange: s.fetchRange,
        describe: "GET s3://b/k",
        sleep: noSleep,
        partTries: 3,
      }),
    ).catch((e) => e);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("GET s3://b/k: bytes 16384-24575 failed 3 times");
    expect(s.calls.get(16 * KiB)).toBe(3);
  });

  test("only objects of two parts or more are read in parts", () => {
    const t = { concurrency: 8, partBytes: 8 * 1024 * KiB };
    expect(worthParallel(undefined, t)).toBe(false);
    expect(worthParallel(16 * 1024 * KiB - 1, t)).toBe(false);
    expect(worthParallel(16 * 1024 * KiB, t)).toBe(true);
    expect(worthParallel(1 << 30, { ...t, concurrency: 1 })).toBe(false);
  });
});
