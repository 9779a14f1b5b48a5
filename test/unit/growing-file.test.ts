// Covers src/storage/growing-file.ts: a GrowingFile's waits (reach resolves once enough is written
// or the file is complete, throws the writer's fault, or the abort signal's reason), followFile
// reading a file written in pieces in order (never past what is reported written) and ending only
// once it is finished or failing with the writer's fault, and writeStreamToFile / spoolInto.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { open, readFile, rm, stat, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { followFile, GrowingFile, spoolInto, writeStreamToFile } from "../../src/storage/growing-file.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "growing-file-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const KiB = 1024;
const MiB = 1024 * KiB;
const fresh = () => join(dir, `${crypto.randomUUID()}.bin`);

/** Resolves once `check` holds (polling), failing after `ms`: for what must happen, however loaded the machine. */
async function eventually(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** Whether `p` settles within `ms` (without consuming its outcome). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    Bun.sleep(ms).then(() => false),
  ]);
}

describe("GrowingFile", () => {
  test("reach waits until enough is written; reached never moves back", async () => {
    const g = new GrowingFile();
    expect(g.availableBytes).toBe(0);
    expect(await g.reach(0)).toEqual({ availableBytes: 0, complete: false });
    const waiting = g.reach(100);
    g.reached(40);
    expect(await settlesWithin(waiting, 20)).toBe(false);
    g.reached(150);
    expect(await waiting).toEqual({ availableBytes: 150, complete: false });
    g.reached(10); // behind what is known: ignored
    expect(g.availableBytes).toBe(150);
    expect(await g.reach(120)).toEqual({ availableBytes: 150, complete: false });
  });

  test("finish wakes every waiter with complete, even those asking for more than the file has", async () => {
    const g = new GrowingFile();
    g.reached(10);
    const small = g.reach(50);
    const huge = g.reach(Infinity);
    g.finish(80);
    expect(await small).toEqual({ availableBytes: 80, complete: true });
    expect(await huge).toEqual({ availableBytes: 80, complete: true });
    expect(g.availableBytes).toBe(80);
    expect(await g.reach(1_000)).toEqual({ availableBytes: 80, complete: true });
  });

  test("fail throws the writer's fault to waiters and later callers; the first fault is kept", async () => {
    const g = new GrowingFile();
    g.reached(10);
    const waiting = g.reach(100);
    const disk = new Error("disk full");
    g.fail(disk);
    g.fail(new Error("a later fault"));
    expect(await waiting.catch((e) => e)).toBe(disk);
    // Even bytes already written are not handed out once the file will never be whole.
    expect(await g.reach(5).catch((e) => e)).toBe(disk);
  });

  test("an abort signal ends a wait with its reason; other waiters and the file go on", async () => {
    const g = new GrowingFile();
    const controller = new AbortController();
    const aborted = g.reach(100, controller.signal);
    const other = g.reach(100);
    const reason = new Error("upload abandoned");
    controller.abort(reason);
    expect(await aborted.catch((e) => e)).toBe(reason);
    expect(await settlesWithin(other, 20)).toBe(false);
    g.reached(100);
    expect(await other).toEqual({ availableBytes: 100, complete: false });
    // A signal aborted already refuses at once, even where the bytes are there.
    expect(await g.reach(200, controller.signal).catch((e) => e)).toBe(reason);
  });
});

describe("followFile", () => {
  test("reads a file written in pieces in order, never past what is reported, and ends only once finished", async () => {
    const data = randomBytes(3 * MiB + 777);
    const path = fresh();
    const writer = await open(path, "w+");
    const g = new GrowingFile();
    const follower = followFile(await open(path, "r"), g);
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let ended = false;
    follower.on("data", (c: Buffer) => {
      received.push(c);
      receivedBytes += c.length;
    });
    const done = new Promise<void>((ok, fail) => {
      follower.on("end", () => {
        ended = true;
        ok();
      });
      follower.on("error", fail);
    });
    const prefixSoFar = () => Buffer.concat(received).equals(data.subarray(0, receivedBytes));
    try {
      // Pieces land out of order: the second before the first. Only a written prefix is reported.
      const cut = [0, 700 * KiB, 2 * MiB + 5, data.length];
      await writer.write(data, cut[1]!, cut[2]! - cut[1]!, cut[1]!);
      await Bun.sleep(20);
      expect(receivedBytes).toBe(0); // nothing reported written yet
      await writer.write(data, 0, cut[1]!, 0);
      g.reached(cut[2]!);
      // Read in large pieces: at least the first MiB, never more than was reported.
      await eventually(() => receivedBytes >= MiB, "the first MiB");
      await Bun.sleep(20);
      expect(receivedBytes).toBeLessThanOrEqual(cut[2]!);
      expect(prefixSoFar()).toBe(true);
      // The rest is on disk, but until it is reported the follower must not read it.
      await writer.write(data, cut[2]!, cut[3]! - cut[2]!, cut[2]!);
      await Bun.sleep(20);
      expect(receivedBytes).toBeLessThanOrEqual(cut[2]!);
      g.reached(data.length);
      await eventually(() => receivedBytes > cut[2]!, "the bytes past the second piece");
      expect(prefixSoFar()).toBe(true);
      expect(ended).toBe(false); // not finished: there may be more
      g.finish(data.length);
      await done;
      expect(receivedBytes).toBe(data.length);
      expect(Buffer.concat(received).equals(data)).toBe(true);
    } finally {
      await writer.close();
      g.fail(new Error("test over")); // lets a follower left waiting close its file
    }
  });

  test("fails with the writer's fault; what was read before is the file's start", async () => {
    const data = randomBytes(4 * MiB);
    const path = fresh();
    await Bun.write(path, data);
    const g = new GrowingFile();
    g.reached(2 * MiB + 100);
    const follower = followFile(await open(path, "r"), g);
    const received: Buffer[] = [];
    const outcome = (async () => {
      for await (const c of follower) received.push(c as Buffer);
    })().catch((e) => e);
    await eventually(() => received.length > 0, "the first read");
    const fault = new Error("the download broke");
    g.fail(fault);
    expect(await outcome).toBe(fault);
    const got = Buffer.concat(received);
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThanOrEqual(2 * MiB + 100);
    expect(got.equals(data.subarray(0, got.length))).toBe(true);
  });

  test("a file finished before it is followed is read whole, even once removed", async () => {
    const data = randomBytes(5 * MiB + 3);
    const path = fresh();
    await Bun.write(path, data);
    const g = new GrowingFile();
    g.finish(data.length);
    const follower = followFile(await open(path, "r"), g);
    await rm(path); // opened already: the bytes stay readable
    const chunks: Buffer[] = [];
    for await (const c of follower) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });
});

describe("writeStreamToFile and spoolInto", () => {
  test("writeStreamToFile writes every chunk in order, reports each, and leaves finishing to the caller", async () => {
    const chunks = Array.from({ length: 20 }, (_, i) => randomBytes(10 * KiB + i));
    const path = fresh();
    const g = new GrowingFile();
    const reported: number[] = [];
    const heard: number[] = [];
    const original = g.reached.bind(g);
    g.reached = (n) => {
      reported.push(n);
      original(n);
    };
    const bytes = await writeStreamToFile(Readable.from(chunks), path, { growing: g, onBytes: (n) => heard.push(n) });
    const whole = Buffer.concat(chunks);
    expect(bytes).toBe(whole.length);
    expect((await readFile(path)).equals(whole)).toBe(true);
    expect(heard).toEqual(chunks.map((c) => c.length));
    expect(reported.at(-1)).toBe(whole.length);
    expect(reported.length).toBe(chunks.length);
    expect((await g.reach(whole.length)).complete).toBe(false);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  test("spoolInto writes a stream, then finishes the file with its length", async () => {
    const data = randomBytes(2 * MiB + 1);
    const path = fresh();
    const g = new GrowingFile();
    await Bun.write(path, ""); // the follower opens the file before the writer starts
    const follower = followFile(await open(path, "r"), g);
    const read = (async () => {
      const got: Buffer[] = [];
      for await (const c of follower) got.push(c as Buffer);
      return Buffer.concat(got);
    })();
    const pieces = [];
    for (let i = 0; i < data.length; i += 64 * KiB) pieces.push(data.subarray(i, i + 64 * KiB));
    expect(await spoolInto(Readable.from(pieces), path, g)).toBe(data.length);
    expect(await g.reach(Infinity)).toEqual({ availableBytes: data.length, complete: true });
    expect((await read).equals(data)).toBe(true);
  });

  test("spoolInto of a stream that fails fails the file with the stream's fault, and rethrows it", async () => {
    const path = fresh();
    const g = new GrowingFile();
    const fault = new Error("packing failed");
    async function* failing() {
      yield randomBytes(64 * KiB);
      throw fault;
    }
    expect(await spoolInto(Readable.from(failing()), path, g).catch((e) => e)).toBe(fault);
    expect(await g.reach(Infinity).catch((e) => e)).toBe(fault);
  });
});
