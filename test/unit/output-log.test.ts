// The experiment's log file: lines and notes land masked and in order, batched writes are all on
// disk after flush/close, and a file that cannot be written is reported, never thrown.

import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OutputLog } from "../../src/task/output-log.ts";
import { SecretMasker } from "../../src/log/secret-mask.ts";
import { waitFor } from "../helpers/wait-for.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "output-log-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("lines and notes are written masked, in order, and all of them by flush and close", async () => {
  const echoed: string[] = [];
  const log = new OutputLog(join(dir, "output"), new SecretMasker(["hunter2-secret"]), (l) => echoed.push(l));
  log.note("starting");
  for (let i = 0; i < 5000; i++) log.write(`line ${i} password=hunter2-secret`);
  await log.flush();
  const afterFlush = readFileSync(join(dir, "output"), "utf8").split("\n");
  expect(afterFlush[0]).toBe("[studio-runner] starting");
  expect(afterFlush[5000]).toBe("line 4999 password=***");
  log.write("last");
  await log.close();
  const text = readFileSync(join(dir, "output"), "utf8");
  expect(text.endsWith("last\n")).toBe(true);
  expect(text).not.toContain("hunter2");
  expect(echoed.length).toBe(5002);
  expect(log.failure).toBeUndefined();
});

test("a log that cannot be written sets failure instead of throwing", async () => {
  const log = new OutputLog(join(dir, "missing-dir", "output"), new SecretMasker());
  log.write("lost");
  await log.flush();
  // The stream reports the failed open later, as an event: wait for it, not a fixed time.
  await waitFor("the write failure", () => log.failure, 5_000, 5);
  await log.close();
  expect(log.failure?.message).toContain("ENOENT");
  expect(log.congested).toBe(false);
});
