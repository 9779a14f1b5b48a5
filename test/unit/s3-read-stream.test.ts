// The resumable S3 read stream's pauses: a body that ends early is continued from the last byte
// after the back-off's pause (250 ms doubling, through an injected sleep), and gives up after its
// resumes. The S3 conformance suite covers the same against a real server.

import { describe, expect, test } from "bun:test";
import { Readable } from "node:stream";
import { resumableReadStream } from "../../src/storage/s3/s3-read-stream.ts";

const bytes = (from: number, to: number) => Buffer.from(Array.from({ length: to - from }, (_, i) => (from + i) % 256));

async function drain(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe("s3 read stream resumes", () => {
  test("each early end is resumed from the bytes received, after 250 ms, 500 ms, …", async () => {
    const slept: number[] = [];
    const offsets: number[] = [];
    const total = 40;
    const stream = resumableReadStream({
      first: Readable.from([bytes(0, 10)]),
      totalBytes: total,
      describe: "s3://b/k",
      // Each reopened body brings 10 more bytes, then ends early again, until the last.
      reopen: async (offset) => (offsets.push(offset), Readable.from([bytes(offset, Math.min(total, offset + 10))])),
      sleep: async (ms) => void slept.push(ms),
    });
    expect((await drain(stream)).equals(bytes(0, total))).toBe(true);
    expect(offsets).toEqual([10, 20, 30]);
    expect(slept).toEqual([250, 500, 1000]);
  });

  test("gives up after maxResumes, having paused before each", async () => {
    const slept: number[] = [];
    const stream = resumableReadStream({
      first: Readable.from([bytes(0, 5)]),
      totalBytes: 100,
      describe: "s3://b/k",
      maxResumes: 2,
      reopen: async () => Readable.from([]),
      sleep: async (ms) => void slept.push(ms),
    });
    await expect(drain(stream)).rejects.toThrow(
      "s3://b/k: transfer truncated at 5 of 100 bytes (connection closed early), gave up after 2 resumes",
    );
    expect(slept).toEqual([250, 500]);
  });
});
