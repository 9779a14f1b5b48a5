// Covers src/config/units.ts: duration and size parsing (Go-style / human strings) and formatting.
import { describe, expect, test } from "bun:test";
import { formatBytes, formatDuration, parseDurationMs, parseSizeBytes } from "../../src/config/units.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

describe("parseDurationMs", () => {
  test.each([
    ["20m", 20 * 60_000],
    ["1h30m", 90 * 60_000],
    ["3600s", 3_600_000],
    ["1.5h", 5_400_000],
    ["300ms", 300],
    ["2d", 2 * 86_400_000],
    ["1h0m5s", 3_605_000],
    ["  20M  ", 20 * 60_000],
    ["0", 0],
    ["0s", 0],
  ] as const)("%p → %p ms", (input, expected) => {
    expect(parseDurationMs(input)).toBe(expected);
  });

  test("bare number strings are seconds", () => {
    expect(parseDurationMs("30")).toBe(30_000);
    expect(parseDurationMs("2.5")).toBe(2500);
  });

  test("numbers are seconds", () => {
    expect(parseDurationMs(90)).toBe(90_000);
    expect(parseDurationMs(0)).toBe(0);
    expect(parseDurationMs(0.5)).toBe(500);
  });

  test.each([["soon"], [""], ["   "], ["20x"], ["m20"], ["1h 30m"], ["-5s"], ["1h30"], ["h"], ["1.2.3s"]] as const)(
    "invalid %p → undefined",
    (input) => {
      expect(parseDurationMs(input)).toBeUndefined();
    },
  );

  test("non-string, non-finite and negative values → undefined", () => {
    expect(parseDurationMs(null)).toBeUndefined();
    expect(parseDurationMs(undefined)).toBeUndefined();
    expect(parseDurationMs({})).toBeUndefined();
    expect(parseDurationMs([])).toBeUndefined();
    expect(parseDurationMs(true)).toBeUndefined();
    expect(parseDurationMs(Number.NaN)).toBeUndefined();
    expect(parseDurationMs(Number.POSITIVE_INFINITY)).toBeUndefined();
    expect(parseDurationMs(-1)).toBeUndefined();
  });
});

describe("parseSizeBytes", () => {
  test.each([
    ["3g", 3 * GiB],
    ["3G", 3 * GiB],
    ["2G", 2 * GiB],
    ["3gb", 3e9],
    ["3GB", 3e9],
    ["16gib", 16 * GiB],
    ["16GiB", 16 * GiB],
    ["512mb", 512e6],
    ["512m", 512 * MiB],
    ["512mib", 512 * MiB],
    ["1k", 1024],
    ["1kb", 1000],
    ["1t", 2 ** 40],
    ["1.5g", 1.5 * GiB],
    ["100b", 100],
    [" 4 gib ", 4 * GiB],
    ["0", 0],
  ] as const)("%p → %p bytes", (input, expected) => {
    expect(parseSizeBytes(input)).toBe(expected);
  });

  test("bare number strings and numbers are bytes", () => {
    expect(parseSizeBytes("1048576")).toBe(1048576);
    expect(parseSizeBytes(4096)).toBe(4096);
    expect(parseSizeBytes(10.6)).toBe(11);
    expect(parseSizeBytes(0)).toBe(0);
  });

  test.each([["lots"], [""], ["g"], ["3 zb"], ["3gbs"], ["-1g"], ["1..5g"], ["3 g b"]] as const)(
    "invalid %p → undefined",
    (input) => {
      expect(parseSizeBytes(input)).toBeUndefined();
    },
  );

  test("non-string, non-finite and negative values → undefined", () => {
    expect(parseSizeBytes(null)).toBeUndefined();
    expect(parseSizeBytes(undefined)).toBeUndefined();
    expect(parseSizeBytes({})).toBeUndefined();
    expect(parseSizeBytes(Number.NaN)).toBeUndefined();
    expect(parseSizeBytes(Number.POSITIVE_INFINITY)).toBeUndefined();
    expect(parseSizeBytes(-5)).toBeUndefined();
  });
});

describe("formatDuration", () => {
  test.each([
    [0, "0ms"],
    [300, "300ms"],
    [1500, "1.5s"],
    [59_000, "59s"],
    [60_000, "1m"],
    [90_000, "1m30s"],
    [3_600_000, "1h"],
    [5_400_000, "1h30m"],
    [3_605_000, "1h5s"],
  ] as const)("%p ms → %p", (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  test("formatted durations parse back to the same value", () => {
    for (const ms of [300, 1500, 59_000, 90_000, 5_400_000, 3_605_000, 86_400_000]) {
      expect(parseDurationMs(formatDuration(ms))).toBe(ms);
    }
  });
});

describe("formatBytes", () => {
  test.each([
    [0, "0B"],
    [512, "512B"],
    [1023, "1023B"],
    [1024, "1.0KiB"],
    [1536, "1.5KiB"],
    [MiB, "1.0MiB"],
    [2 * GiB, "2.0GiB"],
    [3 * 2 ** 40, "3.0TiB"],
    [2048 * 2 ** 40, "2048.0TiB"],
  ] as const)("%p → %p", (bytes, expected) => {
    expect(formatBytes(bytes)).toBe(expected);
  });
});
