// Covers src/storage/parallel-ranges.ts with ranges served from memory into a real file: the bytes
// land whole at their offsets whatever order the parts finish in, at most `concurrency` parts are
// in flight, a part that breaks mid-body is resumed alone from its last written byte, a changed
// object, a refusal and a file that cannot be written fail at once (the first failure stops the
// other parts), a part that keeps failing fails the read naming its bytes, and a follower of the
// file is told only of a contiguous written prefix.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PermanentError } from "../../src/errors.ts";
import { GrowingFile } from "../../src/storage/growing-file.ts";
import {
  ObjectChangedError,
  type RangesIntoFileOptions,
  readRangesIntoFile,
  worthParallel,
} from "../../src/storage/parallel-ranges.ts";

const KiB = 1024;
const PART = 8 * KiB;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "parallel-ranges-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Fault = "break" | "changed" | "changed-mid-body" | "refused" | "hang";
type Call = { part: number; start: number; end: number; signal: AbortSignal };

/**
 * Serves ranges of `data` as pull-driven web streams of 1 KiB chunks (nothing is read ahead, so a
 * "break" after half of the asked bytes leaves exactly that half written). Parts answer after a
 * delay that makes later parts finish first. `faults(part, call)` picks a fault for a call.
 */
function server(data: Buffer, faults: (part: number, call: number) => Fault | undefined = () => undefined) {
  const calls: Call[] = [];
  const finished: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fetchRange = async (start: number, end: number, signal: AbortSignal) => {
    const part = Math.floor(start / PART);
    calls.push({ part, start, end, signal });
    const fault = faults(part, calls.filter((c) => c.part === part).length);
    if (fault === "changed") throw new ObjectChangedError("the object changed");
    if (fault === "refused") throw new PermanentError("access denied");
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let open = true;
    const close = () => {
      if (open) inFlight--;
      open = false;
    };
    await Bun.sleep(Math.max(0, 60 - 4 * part)); // later parts answer sooner
    const slice = data.subarray(start, end + 1);
    let at = 0;
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (fault === "hang") {
            // Like a connection that never sends: only the read's abort ends it.
            await new Promise((_, fail) => {
              if (signal.aborted) fail(signal.reason);
              signal.addEventListener("abort", () => fail(signal.reason), { once: true });
            }).catch((err) => {
              close();
              controller.error(err);
            });
            return;
          }
          if (at >= slice.length) {
            close();
            finished.push(part);
            controller.close();
            return;
          }
          if (fault === "break" && at >= slice.length / 2) {
            close();
            controller.error(new Error("connection reset"));
            return;
          }
          if (fault === "changed-mid-body" && at >= slice.length / 2) {
            close();
            controller.error(new ObjectChangedError("the generation is gone"));
            return;
          }
          controller.enqueue(new Uint8Array(slice.subarray(at, at + KiB)));
          at += KiB;
        },
        cancel: close,
      },
      { highWaterMark: 0 },
    );
    return { body, lengthBytes: slice.length };
  };
  return {
    calls,
    finished,
    fetchRange,
    get maxInFlight() {
      return maxInFlight;
    },
    get inFlight() {
      return inFlight;
    },
    callsOf: (part: number) => calls.filter((c) => c.part === part).map(({ start, end }) => [start, end]),
  };
}

/** Reads `data` through `s` into a fresh file; resolves to the file's bytes, or rejects with the read's error. */
async function readInto(
  data: Buffer,
  s: ReturnType<typeof server>,
  mode: Mode,
  options: Partial<RangesIntoFileOptions> = {},
): Promise<{ bytes: Buffer; path: string }> {
  const path = join(dir, `${crypto.randomUUID()}.bin`);
  const fd = openSync(path, "w+");
  try {
    await readRangesIntoFile({
      concurrency: 3,
      partBytes: PART,
      totalBytes: data.length,
      fd,
      path: mode === "natively" ? path : undefined,
      fetchRange: s.fetchRange,
      describe: "GET s3://b/k",
      sleep: async () => {},
      ...options,
    });
  } finally {
    closeSync(fd);
  }
  return { bytes: readFileSync(path), path };
}

/** Both writers: chunk by chunk through JS (no path), and the runtime's own (a descriptor per part). */
const MODES = ["chunk by chunk", "natively"] as const;
type Mode = (typeof MODES)[number];

const fullRange = (part: number, total: number) => [part * PART, Math.min(total, (part + 1) * PART) - 1];

for (const mode of MODES)
  describe(`parallel ranged reads into a file, written ${mode}`, () => {
    test("bytes land whole at their offsets whatever order the parts finish in; at most `concurrency` in flight", async () => {
      const data = randomBytes(100 * KiB + 123);
      const s = server(data);
      let counted = 0;
      const { bytes } = await readInto(data, s, mode, { concurrency: 3, onBytes: (n) => (counted += n) });
      expect(bytes.length).toBe(data.length);
      expect(bytes.equals(data)).toBe(true);
      expect(counted).toBe(data.length);
      // 13 parts, each asked for once, for exactly its bytes.
      expect(s.calls.length).toBe(13);
      for (let part = 0; part < 13; part++) expect(s.callsOf(part)).toEqual([fullRange(part, data.length)]);
      // Parts really finished out of order (later ones answer sooner), and were really in parallel.
      expect(s.finished.length).toBe(13);
      expect(s.finished).not.toEqual([...s.finished].sort((a, b) => a - b));
      expect(s.maxInFlight).toBeLessThanOrEqual(3);
      expect(s.maxInFlight).toBeGreaterThan(1);
      expect(s.inFlight).toBe(0);
    });

    test("a part that breaks mid-body is retried alone, resumed from the byte where it broke", async () => {
      const data = randomBytes(64 * KiB);
      const s = server(data, (part, call) => (part === 3 && call === 1 ? "break" : undefined));
      const slept: number[] = [];
      let counted = 0;
      const { bytes } = await readInto(data, s, mode, {
        concurrency: 4,
        backoff: (retry) => 100 * retry,
        sleep: async (ms) => void slept.push(ms),
        onBytes: (n) => (counted += n),
      });
      expect(bytes.equals(data)).toBe(true);
      // The retry asked for the remaining half of part 3 only, after one pause.
      expect(s.callsOf(3)).toEqual([
        [24 * KiB, 32 * KiB - 1],
        [28 * KiB, 32 * KiB - 1],
      ]);
      expect(slept).toEqual([100]);
      // Every other part was fetched exactly once, whole; no byte was counted twice.
      for (let part = 0; part < 8; part++)
        if (part !== 3) expect(s.callsOf(part)).toEqual([fullRange(part, data.length)]);
      expect(s.calls.length).toBe(9);
      expect(counted).toBe(data.length);
    });

    test("a changed object fails at once, at the request or mid-body, with no retry; the other parts are stopped", async () => {
      const data = randomBytes(64 * KiB);
      for (const fault of ["changed", "changed-mid-body"] as const) {
        // Part 0 never answers until the read is abandoned: the failure of part 1 must abort it.
        const s = server(data, (part) => (part === 0 ? "hang" : part === 1 ? fault : undefined));
        const slept: number[] = [];
        const err = await readInto(data, s, mode, { concurrency: 2, sleep: async (ms) => void slept.push(ms) }).catch(
          (e) => e,
        );
        expect(err).toBeInstanceOf(ObjectChangedError);
        expect(s.callsOf(1)).toEqual([fullRange(1, data.length)]);
        expect(s.calls.find((c) => c.part === 0)!.signal.aborted).toBe(true);
        // No part after the first two was asked for, and the changed part was never tried again.
        expect(s.calls.every((c) => c.part <= 1)).toBe(true);
        expect(s.inFlight).toBe(0);
      }
    });

    test("a permanent fault fails at once, with no retry", async () => {
      const data = randomBytes(32 * KiB);
      const s = server(data, (part) => (part === 1 ? "refused" : undefined));
      const slept: number[] = [];
      const err = await readInto(data, s, mode, { concurrency: 2, sleep: async (ms) => void slept.push(ms) }).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as Error).message).toBe("access denied");
      expect(s.callsOf(1)).toEqual([fullRange(1, data.length)]);
      expect(slept).toEqual([]);
    });

    test("a part that keeps breaking fails naming its bytes, each try resumed where the last one broke", async () => {
      const data = randomBytes(32 * KiB);
      const s = server(data, (part) => (part === 2 ? "break" : undefined));
      const slept: number[] = [];
      const err = await readInto(data, s, mode, {
        concurrency: 2,
        partTries: 3,
        backoff: (retry) => 100 * retry,
        sleep: async (ms) => void slept.push(ms),
      }).catch((e) => e);
      expect(err.retryable).toBe(true);
      expect(err.message).toContain("GET s3://b/k: bytes 16384-24575 failed 3 times");
      expect(err.message).toContain("connection reset");
      // Half of what was asked for arrives each time: 8 KiB, then 4 KiB, then 2 KiB.
      expect(s.callsOf(2)).toEqual([
        [16 * KiB, 24 * KiB - 1],
        [20 * KiB, 24 * KiB - 1],
        [22 * KiB, 24 * KiB - 1],
      ]);
      expect(slept).toEqual([100, 200]);
    });

    test("a file that cannot be written fails at once, with the write's own error and no network retry", async () => {
      const data = randomBytes(32 * KiB);
      const s = server(data);
      // Every write to /dev/full fails with ENOSPC, like a full disk.
      const full = openSync("/dev/full", "w");
      const slept: number[] = [];
      try {
        const err = await readRangesIntoFile({
          concurrency: 2,
          partBytes: PART,
          totalBytes: data.length,
          fd: full,
          path: mode === "natively" ? "/dev/full" : undefined,
          fetchRange: s.fetchRange,
          describe: "GET s3://b/k",
          sleep: async (ms) => void slept.push(ms),
        }).catch((e) => e);
        expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
        expect(slept).toEqual([]);
        expect(s.calls.length).toBe(2); // the two first parts, each once
      } finally {
        closeSync(full);
      }
    });

    test("`growing` is told a monotonic prefix that is always written, ending at totalBytes; the caller finishes it", async () => {
      const data = randomBytes(100 * KiB + 123);
      // Part 1 breaks once: a hole the prefix must not pass over while later parts are done.
      const s = server(data, (part, call) => (part === 1 && call === 1 ? "break" : undefined));
      const path = join(dir, `${crypto.randomUUID()}.bin`);
      const fd = openSync(path, "w+");
      const reader = openSync(path, "r");
      const growing = new GrowingFile();
      const reported: number[] = [];
      const original = growing.reached.bind(growing);
      let notWritten = 0;
      growing.reached = (bytes: number) => {
        reported.push(bytes);
        // Whatever is reported is already in the file, byte for byte.
        const seen = Buffer.alloc(bytes);
        const read = readSync(reader, seen, 0, bytes, 0);
        if (read !== bytes || !seen.equals(data.subarray(0, bytes))) notWritten++;
        original(bytes);
      };
      try {
        await readRangesIntoFile({
          concurrency: 4,
          partBytes: PART,
          totalBytes: data.length,
          fd,
          path: mode === "natively" ? path : undefined,
          fetchRange: s.fetchRange,
          describe: "x",
          sleep: async () => {},
          growing,
        });
      } finally {
        closeSync(fd);
        closeSync(reader);
      }
      expect(notWritten).toBe(0);
      expect(reported.length).toBeGreaterThan(1);
      for (let i = 1; i < reported.length; i++) expect(reported[i]!).toBeGreaterThanOrEqual(reported[i - 1]!);
      expect(reported.at(-1)).toBe(data.length);
      expect(growing.availableBytes).toBe(data.length);
      // Parts 2.. finished while part 1 was being resumed, yet the prefix waited for it.
      expect(s.finished.indexOf(1)).toBeGreaterThan(s.finished.indexOf(2));
      // Finishing is the caller's: the file is not yet complete for a follower.
      expect((await growing.reach(data.length)).complete).toBe(false);
      expect(readFileSync(path).equals(data)).toBe(true);
    });

    test("only objects of two parts or more are read in parts", () => {
      const t = { concurrency: 8, partBytes: 8 * 1024 * KiB };
      expect(worthParallel(undefined, t)).toBe(false);
      expect(worthParallel(16 * 1024 * KiB - 1, t)).toBe(false);
      expect(worthParallel(16 * 1024 * KiB, t)).toBe(true);
      expect(worthParallel(1 << 30, { ...t, concurrency: 1 })).toBe(false);
    });
  });
