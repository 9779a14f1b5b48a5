// ResponseReports on a recording publisher: progress order, log batching, bounded buffering with
// a dropped count, one warning per failing queue, absent queues, and encryption for the experimenter.

import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { RunnerEvents, type AttemptIdentity } from "../../src/observe/events.ts";
import { decryptPayload } from "../../src/request/envelope/hybrid.ts";
import { LOG_BUFFER_MAX_BYTES, ResponseReports } from "../../src/status/response-reports.ts";
import type { ResponsePublisher, ResponseTarget } from "../../src/queue/response-publisher.ts";

class Recorder implements ResponsePublisher {
  readonly kind = "local";
  bodies: Uint8Array[] = [];
  fail = false;
  exists = true;
  slowMs = 0;
  async target(workQueue: string): Promise<ResponseTarget | undefined> {
    if (!this.exists) return undefined;
    return {
      where: `${workQueue}_response`,
      send: async (body) => {
        if (this.slowMs) await Bun.sleep(this.slowMs); // a slow broker, as the test asks
        if (this.fail) throw new Error("broker says no");
        this.bodies.push(body);
      },
    };
  }
  async close() {}
  docs() {
    return this.bodies.map((b) => JSON.parse(new TextDecoder().decode(b)));
  }
}

const who: AttemptIdentity = { key: "exp-1", attemptId: "run-a-1", source: "local", queue: "local_q" };
const started = {
  ...who,
  deliveryCount: 1,
  gpus: [],
  resources: { cpus: 1, ramBytes: 1, hddBytes: 1, gpus: 0 },
  startedAtMs: 0,
};
const logs = () => ({
  info: (_m: string) => undefined,
  warned: [] as string[],
  warn(m: string) {
    this.warned.push(m);
  },
});

describe("response reports", () => {
  test("Prestart → Started → Stopping → Success with the log lines between, in order", async () => {
    const events = new RunnerEvents();
    const rec = new Recorder();
    const reports = new ResponseReports({
      events,
      publishers: [rec],
      executorId: "host-1",
      log: logs(),
      logFlushIntervalMs: 50,
    });
    events.emit("attempt.started", started);
    events.emit("attempt.phase", { ...who, phase: "fetch" });
    events.emit("attempt.phase", { ...who, phase: "run", previous: "environment" });
    events.emit("attempt.log", { ...who, line: "hello" });
    events.emit("attempt.log", { ...who, line: "world" });
    events.emit("attempt.phase", { ...who, phase: "upload", previous: "run" });
    events.emit("attempt.finished", { ...who, result: "succeeded", reason: "exited 0", exitCode: 0, durationMs: 1 });
    await reports.close(2000);
    const docs = rec.docs();
    expect(docs.map((d) => d.progress?.state ?? "log")).toEqual(["Prestart", "Started", "log", "Stopping", "Success"]);
    expect(docs[2].logging).toMatchObject({ severity: "INFO", message: "hello\nworld", fields: { lines: "2" } });
    for (const d of docs)
      expect(d).toMatchObject({ experiment_id: "exp-1", unique_id: "run-a-1", executor_id: "host-1" });
    expect(Date.parse(docs[0].time)).toBeGreaterThan(0);
  });

  test("a failing script is Failed with its reason and exit code", async () => {
    const events = new RunnerEvents();
    const rec = new Recorder();
    const reports = new ResponseReports({ events, publishers: [rec], executorId: "h", log: logs() });
    events.emit("attempt.started", started);
    events.emit("attempt.finished", {
      ...who,
      result: "failed",
      reason: "the script exited with code 3",
      exitCode: 3,
      durationMs: 1,
    });
    await reports.close(2000);
    expect(rec.docs().at(-1).progress).toMatchObject({
      state: "Failed",
      error: { msg: "the script exited with code 3", code: 3 },
    });
  });

  test("a log flood is bounded: lines beyond the buffer are dropped and counted, nothing blocks", async () => {
    const events = new RunnerEvents();
    const rec = new Recorder();
    rec.slowMs = 20;
    const reports = new ResponseReports({
      events,
      publishers: [rec],
      executorId: "h",
      log: logs(),
      logFlushIntervalMs: 10_000,
    });
    events.emit("attempt.started", started);
    const line = "x".repeat(1000);
    const t0 = performance.now();
    for (let i = 0; i < 100_000; i++) events.emit("attempt.log", { ...who, line });
    expect(performance.now() - t0).toBeLessThan(5_000);
    events.emit("attempt.finished", { ...who, result: "succeeded", reason: "", exitCode: 0, durationMs: 1 });
    await reports.close(30_000);
    const docs = rec.docs();
    const logged = docs.filter((d) => d.logging);
    const sentLines = logged.reduce((n, d) => n + Number(d.logging.fields.lines), 0);
    const dropped = logged.reduce((n, d) => n + Number(d.logging.fields.dropped_lines ?? 0), 0);
    expect(sentLines + dropped).toBe(100_000);
    expect(dropped).toBeGreaterThan(0);
    for (const d of logged) expect(d.logging.message.length).toBeLessThanOrEqual(LOG_BUFFER_MAX_BYTES);
    expect(docs.at(-1).progress.state).toBe("Success");
  });

  test("send failures are dropped and warned once per queue; an absent queue gets nothing", async () => {
    const events = new RunnerEvents();
    const rec = new Recorder();
    rec.fail = true;
    const log = logs();
    const reports = new ResponseReports({ events, publishers: [rec], executorId: "h", log });
    events.emit("attempt.started", started);
    events.emit("attempt.phase", { ...who, phase: "run" });
    events.emit("attempt.finished", { ...who, result: "succeeded", reason: "", exitCode: 0, durationMs: 1 });
    await reports.close(2000);
    expect(log.warned.length).toBe(1);
    expect(log.warned[0]).toContain("broker says no");

    const events2 = new RunnerEvents();
    const absent = new Recorder();
    absent.exists = false;
    const r2 = new ResponseReports({ events: events2, publishers: [absent], executorId: "h", log: logs() });
    events2.emit("attempt.started", started);
    events2.emit("attempt.finished", { ...who, result: "succeeded", reason: "", exitCode: 0, durationMs: 1 });
    await r2.close(2000);
    expect(absent.bodies.length).toBe(0);
  });

  test("with the experimenter's key, reports are sealed and open with the private key", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const events = new RunnerEvents();
    const rec = new Recorder();
    const reports = new ResponseReports({
      events,
      publishers: [rec],
      executorId: "h",
      log: logs(),
      keyFor: (q) => (q === "local_q" ? publicKey : undefined),
    });
    events.emit("attempt.started", started);
    await reports.close(2000);
    const text = new TextDecoder().decode(rec.bodies[0]);
    expect(text).not.toContain("exp-1");
    const doc = JSON.parse(new TextDecoder().decode(decryptPayload(text, privateKey)));
    expect(doc).toMatchObject({ experiment_id: "exp-1", progress: { state: "Prestart" } });
  });
});
