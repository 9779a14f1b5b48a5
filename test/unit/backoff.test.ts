// The shared back-off: strategies and their caps, jitter kept within its bounds (seeded random
// draws), and the retry helper with an injected sleep: pauses, non-retryable errors, the last
// error, what onRetry hears. Nothing here waits in real time.

import { describe, expect, test } from "bun:test";
import { backoffDelayMs, DEFAULT_BACKOFF } from "../../src/queue/rabbitmq/backoff.ts";
import {
  exponentialBackoff,
  fixedBackoff,
  jittered,
  MAX_DELAY_MS,
  type Jitter,
  type Random,
} from "../../src/retry/backoff.ts";
import { retry, type RetryNotice } from "../../src/retry/retry.ts";
import { withRetries } from "../../src/status/record.ts";

/** A small deterministic source in [0, 1): a 32-bit linear congruential generator. */
function seeded(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** A sleep that only writes the pause down. */
function recordingSleep(): { sleep: (ms: number) => Promise<void>; slept: number[] } {
  const slept: number[] = [];
  return { slept, sleep: async (ms) => void slept.push(ms) };
}

describe("strategies", () => {
  test("exponential: initialMs times factor^(retry-1), no jitter by default", () => {
    const doubling = exponentialBackoff({ initialMs: 100 });
    expect([1, 2, 3, 4, 5].map((n) => doubling(n))).toEqual([100, 200, 400, 800, 1600]);
    const quadrupling = exponentialBackoff({ initialMs: 500, factor: 4 });
    expect([1, 2, 3].map((n) => quadrupling(n))).toEqual([500, 2000, 8000]);
  });

  test("exponential: the cap holds, even after a very long outage", () => {
    const capped = exponentialBackoff({ initialMs: 250, maxMs: 8_000 });
    expect([1, 5, 6, 7, 50, 5000].map((n) => capped(n))).toEqual([250, 4000, 8000, 8000, 8000, 8000]);
    // Without a cap the pause still stays a number a timer can wait for.
    const uncapped = exponentialBackoff({ initialMs: 500, factor: 4 });
    expect(uncapped(10_000)).toBe(MAX_DELAY_MS);
    expect(exponentialBackoff({ initialMs: 0 })(10_000)).toBe(0);
  });

  test("exponential: a retry number below 1 counts as the first", () => {
    const s = exponentialBackoff({ initialMs: 300 });
    expect(s(0)).toBe(300);
    expect(s(-3)).toBe(300);
  });

  test("fixed: the same pause every time", () => {
    const s = fixedBackoff(750);
    expect([1, 2, 10, 1000].map((n) => s(n))).toEqual([750, 750, 750, 750]);
  });

  test("the random source is used only by jittered strategies", () => {
    let draws = 0;
    const counting: Random = () => (draws++, 0.5);
    exponentialBackoff({ initialMs: 100 })(3, counting);
    fixedBackoff(100)(1, counting);
    expect(draws).toBe(0);
    expect(exponentialBackoff({ initialMs: 100, jitter: "full" })(3, counting)).toBe(200);
    expect(fixedBackoff(100, "equal")(1, counting)).toBe(75);
    expect(draws).toBe(2);
  });
});

describe("jitter", () => {
  const bounds: [Jitter, number, number][] = [
    ["none", 1000, 1000],
    ["full", 0, 1000],
    ["equal", 500, 1000],
    [{ spread: 0.25 }, 750, 1250],
  ];

  for (const [jitter, low, high] of bounds) {
    test(`${JSON.stringify(jitter)}: 1000 ms stays within [${low}, ${high}]${low === high ? "" : " and is spread over it"}`, () => {
      const random = seeded(42);
      const draws = Array.from({ length: 2000 }, () => jittered(1000, jitter, random));
      expect(Math.min(...draws)).toBeGreaterThanOrEqual(low);
      expect(Math.max(...draws)).toBeLessThanOrEqual(high);
      expect(draws.every(Number.isInteger)).toBe(true);
      if (low !== high) {
        // 2000 uniform draws reach within 2% of both ends.
        const width = high - low;
        expect(Math.min(...draws)).toBeLessThan(low + width * 0.02);
        expect(Math.max(...draws)).toBeGreaterThan(high - width * 0.02);
      }
      // The ends themselves, from a random source at its extremes.
      expect(jittered(1000, jitter, () => 0)).toBe(low);
      expect(jittered(1000, jitter, () => 1)).toBe(high);
    });
  }

  test("the same seed gives the same pauses", () => {
    const s = exponentialBackoff({ initialMs: 500, maxMs: 30_000, jitter: "full" });
    const a = seeded(7);
    const b = seeded(7);
    const first = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => s(n, a));
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => s(n, b))).toEqual(first);
  });

  test("jitter applies after the cap: a capped pause is spread around the cap", () => {
    const s = exponentialBackoff({ initialMs: 500, maxMs: 30_000, jitter: "equal" });
    expect(s(100, () => 0)).toBe(15_000);
    expect(s(100, () => 1)).toBe(30_000);
  });

  test("a pause is never negative, even with a spread over 100%", () => {
    expect(jittered(1000, { spread: 1.5 }, () => 0)).toBe(0);
  });
});

describe("retry", () => {
  test("retries until success, pausing as the strategy says, through the injected sleep", async () => {
    const { sleep, slept } = recordingSleep();
    const seen: number[] = [];
    const out = await retry(
      async (tryNumber) => {
        seen.push(tryNumber);
        if (tryNumber < 4) throw new Error(`fail ${tryNumber}`);
        return "done";
      },
      { strategy: exponentialBackoff({ initialMs: 100 }), tries: 5, sleep },
    );
    expect(out).toBe("done");
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(slept).toEqual([100, 200, 400]);
  });

  test("the random source goes to the strategy", async () => {
    const { sleep, slept } = recordingSleep();
    await expect(
      retry(async () => Promise.reject(new Error("x")), {
        strategy: fixedBackoff(1000, "full"),
        tries: 3,
        sleep,
        random: () => 0.25,
      }),
    ).rejects.toThrow("x");
    expect(slept).toEqual([250, 250]);
  });

  test("stops at once on a non-retryable error, without a pause", async () => {
    const { sleep, slept } = recordingSleep();
    const notices: RetryNotice[] = [];
    let calls = 0;
    const permanent = new Error("AccessDenied");
    const err = await retry(
      async () => {
        calls++;
        throw calls === 1 ? new Error("reset") : permanent;
      },
      {
        strategy: fixedBackoff(10),
        tries: 5,
        sleep,
        isRetryable: (e) => (e as Error).message !== "AccessDenied",
        onRetry: (n) => notices.push(n),
      },
    ).catch((e: unknown) => e);
    expect(err).toBe(permanent);
    expect(calls).toBe(2);
    expect(slept).toEqual([10]);
    expect(notices.length).toBe(1);
  });

  test("after the last try the last error goes up as it was thrown", async () => {
    const { sleep, slept } = recordingSleep();
    const thrown: Error[] = [];
    const err = await retry(
      async (n) => {
        const e = new Error(`try ${n}`);
        thrown.push(e);
        throw e;
      },
      { strategy: fixedBackoff(5), tries: 3, sleep },
    ).catch((e: unknown) => e);
    expect(thrown.length).toBe(3);
    expect(err).toBe(thrown[2]!);
    expect(slept).toEqual([5, 5]);
  });

  test("one try means no retry and no pause", async () => {
    const { sleep, slept } = recordingSleep();
    let calls = 0;
    await expect(
      retry(async () => (calls++, Promise.reject(new Error("once"))), { strategy: fixedBackoff(5), tries: 1, sleep }),
    ).rejects.toThrow("once");
    expect(calls).toBe(1);
    expect(slept).toEqual([]);
  });

  test("onRetry hears what failed, which try comes next of how many, and the pause, before the pause", async () => {
    const order: string[] = [];
    const said: string[] = [];
    await retry(
      async (n) => {
        if (n < 3) throw new Error(`reset ${n}`);
      },
      {
        strategy: exponentialBackoff({ initialMs: 1500, factor: 2 }),
        tries: 4,
        sleep: async (ms) => void order.push(`sleep ${ms}`),
        onRetry: ({ error, nextTry, tries, delayMs }) => {
          order.push(`notice ${nextTry}`);
          said.push(`${(error as Error).message}; try ${nextTry} of ${tries} in ${(delayMs / 1000).toFixed(1)}s`);
        },
      },
    );
    expect(said).toEqual(["reset 1; try 2 of 4 in 1.5s", "reset 2; try 3 of 4 in 3.0s"]);
    expect(order).toEqual(["notice 2", "sleep 1500", "notice 3", "sleep 3000"]);
  });
});

describe("the callers' schedules are unchanged", () => {
  test("record updates: 500 ms, then doubling", async () => {
    const { sleep, slept } = recordingSleep();
    let calls = 0;
    await expect(withRetries(4, async () => (calls++, Promise.reject(new Error("blip"))), sleep)).rejects.toThrow(
      "blip",
    );
    expect(calls).toBe(4);
    expect(slept).toEqual([500, 1000, 2000]);
  });

  test("broker reconnects: doubling from 0.5 s to 30 s, equal jitter", () => {
    expect([1, 2, 3, 7, 100].map((n) => backoffDelayMs(n, DEFAULT_BACKOFF, () => 1))).toEqual([
      500, 1000, 2000, 30_000, 30_000,
    ]);
    expect([1, 2, 100].map((n) => backoffDelayMs(n, DEFAULT_BACKOFF, () => 0))).toEqual([250, 500, 15_000]);
  });
});
