// The queue conformance suite on the local directory queue, plus its crash-recovery rules.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, renameSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LocalQueueBackend } from "../../src/queue/local/local-queue.ts";
import { queueConformance } from "./queue-conformance.ts";

queueConformance("local", async () => {
  const root = await mkdtemp(join(tmpdir(), "lq-"));
  let n = 0;
  return {
    backend: async (o = {}) => new LocalQueueBackend({ root, maxDeliveries: o.maxDeliveries ?? 3, match: o.match, mismatch: o.mismatch }),
    queueName: (suffix) => `local_${suffix}_${n++}`,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe("local queue: claims of stopped runners", () => {
  const host = hostname().replace(/[^A-Za-z0-9.-]/g, "_");

  test("a claim left by a dead process on this host is put back, counted, and kept in order", async () => {
    const root = await mkdtemp(join(tmpdir(), "lq-"));
    const q = new LocalQueueBackend({ root, maxDeliveries: 3 });
    await q.publish("local_x", '{"a":1}');
    const d = await q.open("local_x").receive();
    expect(d!.deliveryCount).toBe(1);
    // Pretend the holder was a process that has since died.
    const inflight = join(root, ".inflight", "local_x");
    const [claim] = readdirSync(inflight);
    const dead = claim!.replace(/@@.*$/, `@@${host}~999999~deadbeef`);
    renameSync(join(inflight, claim!), join(inflight, dead));
    const other = new LocalQueueBackend({ root, maxDeliveries: 3 });
    expect(await other.discover()).toEqual(["local_x"]);
    const again = await other.open("local_x").receive();
    expect(again!.deliveryCount).toBe(2);
    await again!.ack();
    expect(readdirSync(join(root, "local_x"))).toEqual([]);
    await rm(root, { recursive: true, force: true });
  });

  test("a live runner's claim is left alone; a stale heartbeat from another host is taken back", async () => {
    const root = await mkdtemp(join(tmpdir(), "lq-"));
    const holder = new LocalQueueBackend({ root, maxDeliveries: 3, leaseMs: 60_000 });
    await holder.publish("local_y", "{}");
    const d = await holder.open("local_y").receive();
    // Make the claim look like it belongs to another live process on this host (our parent).
    const inflight = join(root, ".inflight", "local_y");
    const [claim] = readdirSync(inflight);
    const live = join(inflight, claim!.replace(/@@.*$/, `@@${host}~${process.ppid}~1234abcd`));
    renameSync(join(inflight, claim!), live);
    const other = new LocalQueueBackend({ root, maxDeliveries: 3, leaseMs: 60_000 });
    await other.discover();
    expect(await other.open("local_y").receive()).toBeUndefined();
    // A claim from another machine whose heartbeat stopped 10 minutes ago.
    const remote = join(inflight, claim!.replace(/@@.*$/, "@@elsewhere~1~cafe"));
    renameSync(live, remote);
    const old = new Date(Date.now() - 600_000);
    (await import("node:fs")).utimesSync(remote, old, old);
    await other.discover();
    const taken = await other.open("local_y").receive();
    expect(taken).toBeDefined();
    await taken!.ack();
    void d;
    await rm(root, { recursive: true, force: true });
  });

  test("the failed place keeps the body and every reason", async () => {
    const root = await mkdtemp(join(tmpdir(), "lq-"));
    const q = new LocalQueueBackend({ root, maxDeliveries: 2 });
    const id = await q.publish("local_z", '{"keep":"me"}');
    await (await q.open("local_z").receive())!.nack("storage down");
    await (await q.open("local_z").receive())!.nack("storage still down");
    expect(readFileSync(join(root, ".failed", "local_z", id), "utf8")).toBe('{"keep":"me"}');
    const reason = JSON.parse(readFileSync(join(root, ".failed", "local_z", `${id}.reason.json`), "utf8"));
    expect(reason.reasons.map((r: { reason: string }) => r.reason)).toEqual(["storage down", "storage still down"]);
    expect(reason.deliveries).toBe(2);
    expect(existsSync(join(root, "local_z", id))).toBe(false);
    await rm(root, { recursive: true, force: true });
  });
});
