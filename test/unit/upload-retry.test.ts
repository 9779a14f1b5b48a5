// Upload retries: transient faults are retried with growing pauses and reported; permanent faults
// and the last failure go up unchanged. The pauses go to an injected sleep: nothing waits in real time.

import { describe, expect, test } from "bun:test";
import { PermanentError, RetryableError } from "../../src/errors.ts";
import { UPLOAD_TRIES, uploadBackoffMs, withUploadRetries } from "../../src/task/upload-retry.ts";

describe("upload retries", () => {
  test("pauses grow and stay within their jitter", () => {
    expect(uploadBackoffMs(2, () => 0.5)).toBe(500);
    expect(uploadBackoffMs(3, () => 0.5)).toBe(2000);
    expect(uploadBackoffMs(4, () => 0.5)).toBe(8000);
    expect(uploadBackoffMs(9, () => 0.5)).toBe(8000);
    expect(uploadBackoffMs(2, () => 0)).toBe(375);
    expect(uploadBackoffMs(2, () => 1)).toBe(625);
  });

  test("a transient fault is retried and said; the next try succeeds", async () => {
    const said: string[] = [];
    let calls = 0;
    const out = await withUploadRetries(
      "upload of output",
      async () => {
        if (++calls === 1) throw new RetryableError("connection reset");
        return "ok";
      },
      (m) => said.push(m),
      { sleep: async () => undefined },
    );
    expect(out).toBe("ok");
    expect(calls).toBe(2);
    expect(said[0]).toMatch(/^upload of output failed \(connection reset\); try 2 of 4 in 0\.\ds$/);
  });

  test("a permanent fault is not retried", async () => {
    let calls = 0;
    await expect(
      withUploadRetries("u", async () => {
        calls++;
        throw new PermanentError("AccessDenied");
      }),
    ).rejects.toThrow("AccessDenied");
    expect(calls).toBe(1);
  });

  test("after the last try the fault goes up; the pauses are 0.5 s, 2 s and 8 s, each ±25%", async () => {
    let calls = 0;
    const said: string[] = [];
    const slept: number[] = [];
    const sleep = async (ms: number) => void slept.push(ms);
    const lowest = { sleep, random: () => 0 };
    await expect(
      withUploadRetries(
        "u",
        async () => {
          calls++;
          throw new Error("socket hang up");
        },
        (m) => said.push(m),
        lowest,
      ),
    ).rejects.toThrow("socket hang up");
    expect(calls).toBe(UPLOAD_TRIES);
    expect(slept).toEqual([375, 1500, 6000]);
    expect(said).toEqual([
      "u failed (socket hang up); try 2 of 4 in 0.4s",
      "u failed (socket hang up); try 3 of 4 in 1.5s",
      "u failed (socket hang up); try 4 of 4 in 6.0s",
    ]);

    slept.length = 0;
    await expect(
      withUploadRetries(
        "u",
        async () => {
          throw new Error("socket hang up");
        },
        undefined,
        { sleep, random: () => 1 },
      ),
    ).rejects.toThrow("socket hang up");
    expect(slept).toEqual([625, 2500, 10_000]);
  });
});
