// Covers src/request/replay-guard.ts and src/request/admission.ts: --max-request-age by
// experiment.time_added (first deliveries only), replay protection recorded at ack (a redelivery of
// an un-acked message runs, a re-published completed one is refused), the record's bounds and modes.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Delivery } from "../../src/queue/task-queue.ts";
import { RequestAdmission } from "../../src/request/admission.ts";
import { parseRequest } from "../../src/request/parse.ts";
import { ReplayGuard } from "../../src/request/replay-guard.ts";

const BASE = JSON.parse(readFileSync(join(import.meta.dir, "..", "fixtures", "envelope", "request.json"), "utf8"));
const HOUR = 3_600_000;

function request(key: string, timeAddedS: number | null) {
  const doc = structuredClone(BASE);
  doc.experiment.key = key;
  doc.experiment.time_added = timeAddedS;
  const body = new TextEncoder().encode(JSON.stringify(doc));
  return { body, request: parseRequest(body) };
}

function fakeDelivery(body: Uint8Array, deliveryCount = 1) {
  const calls: string[] = [];
  const d: Delivery = {
    id: "m1",
    queue: "local_q",
    body,
    deliveryCount,
    extendLease: async () => {},
    ack: async () => void calls.push("ack"),
    nack: async (reason) => (calls.push(`nack ${reason}`), "requeued"),
    reject: async (reason) => void calls.push(`reject ${reason}`),
  };
  return { d, calls };
}

const dir = () => join(mkdtempSync(join(tmpdir(), "replay-")), ".completed");

describe("max request age", () => {
  const now = 1_800_000_000_000;
  const admission = new RequestAdmission({ maxAgeMs: HOUR, now: () => now });
  test("a request added 2 h ago is refused on its first delivery, naming the field and the age", () => {
    const r = request("old", (now - 2 * HOUR) / 1000);
    const why = admission.refusal(r.request, { body: r.body, deliveryCount: 1 });
    expect(why).toContain("experiment.time_added");
    expect(why).toContain("2h");
    expect(why).toContain("--max-request-age 1h");
  });
  test("a redelivery (after a runner fault) of a message accepted young is not refused for its age", () => {
    const r = request("old", (now - 2 * HOUR) / 1000);
    expect(admission.refusal(r.request, { body: r.body, deliveryCount: 2 })).toBeUndefined();
  });
  test("young requests pass; without time_added the age cannot be told and the request is refused", () => {
    const young = request("young", (now - 10 * 60_000) / 1000);
    expect(admission.refusal(young.request, { body: young.body, deliveryCount: 1 })).toBeUndefined();
    const undated = request("undated", null);
    expect(admission.refusal(undated.request, { body: undated.body, deliveryCount: 1 })).toContain(
      "experiment.time_added: (missing)",
    );
    expect(
      new RequestAdmission({ maxAgeMs: 0 }).refusal(undated.request, { body: undated.body, deliveryCount: 1 }),
    ).toBeUndefined();
  });
});

describe("replay protection", () => {
  test("recorded when the ack succeeds: before it, redeliveries run; after it, the same message is a replay", async () => {
    const where = dir();
    const guard = new ReplayGuard({ dir: where, maxAgeMs: 0 }).load();
    const admission = new RequestAdmission({ maxAgeMs: 0, replay: guard });
    const r = request("exp-1", Date.now() / 1000);
    const first = fakeDelivery(r.body);
    expect(admission.refusal(r.request, first.d)).toBeUndefined();
    const tracked = admission.track(first.d, r.request);
    await tracked.nack("runner fault");
    // requeued, delivered again: still not a replay
    const again = fakeDelivery(r.body, 2);
    expect(admission.refusal(r.request, again.d)).toBeUndefined();
    await admission.track(again.d, r.request).ack();
    expect(again.calls).toEqual(["ack"]);
    const replayed = fakeDelivery(r.body, 1);
    const why = admission.refusal(r.request, replayed.d);
    expect(why).toContain('experiment.key: "exp-1" was already completed');
    expect(why).toContain("the same message");
    // Another message with the same key is refused too, and said so.
    const other = request("exp-1", Date.now() / 1000 + 1);
    expect(admission.refusal(other.request, fakeDelivery(other.body).d)).toContain("another message");
    // A new key (a re-run by the client) runs.
    const rerun = request("exp-2", Date.now() / 1000);
    expect(admission.refusal(rerun.request, fakeDelivery(rerun.body).d)).toBeUndefined();
    // Kept across restarts, in a runner-only file.
    const restarted = new ReplayGuard({ dir: where, maxAgeMs: 0 }).load();
    expect(restarted.refusal("exp-1", r.body)).toContain("already completed");
    expect(statSync(where).mode & 0o777).toBe(0o700);
    expect(statSync(join(where, "completed.jsonl")).mode & 0o777).toBe(0o600);
  });

  test("a request this runner started and gave back uncounted (a drain) is not refused for the age it reached here", async () => {
    let now = 1_800_000_000_000;
    const where = dir();
    const admission = new RequestAdmission({
      maxAgeMs: HOUR,
      replay: new ReplayGuard({ dir: where, maxAgeMs: HOUR, now: () => now }).load(),
      now: () => now,
    });
    const r = request("long-job", now / 1000);
    const first = fakeDelivery(r.body, 1);
    expect(admission.refusal(r.request, first.d)).toBeUndefined();
    await admission.track(first.d, r.request).nack("runner shutting down", { countDelivery: false });
    now += 3 * HOUR;
    // After a restart (the record is on disk), delivered again with a count of 1.
    const restarted = new RequestAdmission({
      maxAgeMs: HOUR,
      replay: new ReplayGuard({ dir: where, maxAgeMs: HOUR, now: () => now }).load(),
      now: () => now,
    });
    expect(restarted.refusal(r.request, fakeDelivery(r.body, 1).d)).toBeUndefined();
    // Another request just as old that never started here is refused.
    const other = request("never-started", (now - 3 * HOUR) / 1000);
    expect(restarted.refusal(other.request, fakeDelivery(other.body, 1).d)).toContain(
      "older than --max-request-age 1h",
    );
  });

  test("a failed ack records nothing", async () => {
    const guard = new ReplayGuard({ dir: dir(), maxAgeMs: 0 }).load();
    const admission = new RequestAdmission({ maxAgeMs: 0, replay: guard });
    const r = request("exp-ack-fails", Date.now() / 1000);
    const { d } = fakeDelivery(r.body);
    d.ack = async () => {
      throw new Error("broker gone");
    };
    await expect(admission.track(d, r.request).ack()).rejects.toThrow("broker gone");
    expect(guard.refusal("exp-ack-fails", r.body)).toBeUndefined();
  });

  test("bounded by the age limit (older requests are refused by age anyway) or by a number of entries", () => {
    let now = 1_800_000_000_000;
    const where = dir();
    const aged = new ReplayGuard({ dir: where, maxAgeMs: HOUR, now: () => now }).load();
    const body = new Uint8Array([1]);
    aged.completed("a", body, now - 30 * 60_000);
    now += 2 * HOUR;
    aged.completed("b", body, now);
    const reloaded = new ReplayGuard({ dir: where, maxAgeMs: HOUR, now: () => now }).load();
    expect(reloaded.refusal("a", body)).toBeUndefined();
    expect(reloaded.refusal("b", body)).toContain("already completed");
    const counted = new ReplayGuard({ dir: dir(), maxAgeMs: 0, maxEntries: 10, now: () => (now += 1) }).load();
    for (let i = 0; i < 30; i++) counted.completed(`k${i}`, body, undefined);
    expect(counted.size).toBeLessThanOrEqual(13);
    expect(counted.refusal("k29", body)).toContain("already completed");
    expect(counted.refusal("k0", body)).toBeUndefined();
  });
});
