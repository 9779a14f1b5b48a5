// The queue conformance suite on the local directory queue, plus its crash-recovery rules and the
// entries a hostile queue writer may plant (links, FIFOs, linked queue and failed-place dirs).

import { describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LocalQueueBackend } from "../../src/queue/local/local-queue.ts";
import { queueConformance } from "./queue-conformance.ts";

queueConformance("local", async () => {
  const root = await mkdtemp(join(tmpdir(), "lq-"));
  let n = 0;
  return {
    backend: async (o = {}) =>
      new LocalQueueBackend({ root, maxDeliveries: o.maxDeliveries ?? 3, match: o.match, mismatch: o.mismatch }),
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

describe("local queue: entries queue writers should not be able to use against the runner", () => {
  const AMQP = "amqp://runner:s3cr3t-pa55word@rabbit.internal:5672/%2f";

  test(
    "a message that is a symlink (to a file with an amqp URL) is never delivered " +
      "nor read: moved to the failed place, the target named nowhere",
    async () => {
      const root = await mkdtemp(join(tmpdir(), "lq-"));
      const secretFile = join(root, "..", `amqp-${crypto.randomUUID()}.txt`);
      writeFileSync(secretFile, AMQP);
      const logs: string[] = [];
      const q = new LocalQueueBackend({ root, maxDeliveries: 3, log: (m) => logs.push(m) });
      const good = await q.publish("local_a", '{"fine":true}');
      const linkName = crypto.randomUUID();
      symlinkSync(secretFile, join(root, "local_a", linkName));
      await q.discover();
      const d = await q.open("local_a").receive();
      expect(d?.id).toBe(good);
      expect(await q.open("local_a").receive()).toBeUndefined();
      const failed = join(root, ".failed", "local_a");
      expect(lstatSync(join(failed, linkName)).isSymbolicLink()).toBe(true); // kept as it was: nothing lost
      const reason = readFileSync(join(failed, `${linkName}.reason.json`), "utf8");
      expect(reason).toContain("symbolic link");
      for (const text of [reason, logs.join("\n")]) {
        expect(text).not.toContain("s3cr3t");
        expect(text).not.toContain("amqp://");
        expect(text).not.toContain(secretFile);
      }
      expect(readFileSync(secretFile, "utf8")).toBe(AMQP);
      await d!.ack();
      await rm(root, { recursive: true, force: true });
      await rm(secretFile, { force: true });
    },
  );

  test("a FIFO message does not block the runner; it goes to the failed place unread", async () => {
    const root = await mkdtemp(join(tmpdir(), "lq-"));
    const q = new LocalQueueBackend({ root, maxDeliveries: 3 });
    mkdirSync(join(root, "local_f"), { recursive: true });
    const name = crypto.randomUUID();
    Bun.spawnSync(["mkfifo", join(root, "local_f", name)]);
    // The 5 s race only bounds the hang under test (a FIFO blocks an open for reading).
    const got = await Promise.race([q.open("local_f").receive(), Bun.sleep(5000).then(() => "hung")]);
    expect(got).toBeUndefined();
    expect(readFileSync(join(root, ".failed", "local_f", `${name}.reason.json`), "utf8")).toContain("FIFO");
    await rm(root, { recursive: true, force: true });
  });

  test("a queue directory that is a symlink to elsewhere is not discovered nor served", async () => {
    const root = await mkdtemp(join(tmpdir(), "lq-"));
    const elsewhere = await mkdtemp(join(tmpdir(), "lq-elsewhere-"));
    writeFileSync(join(elsewhere, "request-of-someone-else"), '{"aws":"AKIA-OTHER"}');
    mkdirSync(root, { recursive: true });
    symlinkSync(elsewhere, join(root, "local_linked"));
    const logs: string[] = [];
    const q = new LocalQueueBackend({ root, maxDeliveries: 3, log: (m) => logs.push(m) });
    expect(await q.discover()).not.toContain("local_linked");
    expect(await q.open("local_linked").receive()).toBeUndefined();
    expect(readdirSync(elsewhere)).toEqual(["request-of-someone-else"]);
    expect(logs.join("\n")).toContain("local_linked is a symbolic link");
    expect(logs.join("\n")).not.toContain(elsewhere);
    await rm(root, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  });

  test(
    "links planted at the runner's own names (.failed/<queue>, <id>.reason.json, " +
      "the attempts record) are never written through",
    async () => {
      const root = await mkdtemp(join(tmpdir(), "lq-"));
      const host = await mkdtemp(join(tmpdir(), "lq-host-"));
      const hostFile = join(host, "precious.conf");
      writeFileSync(hostFile, "precious\n");
      const q = new LocalQueueBackend({ root, maxDeliveries: 1 });
      const id = await q.publish("local_p", '{"x":1}');
      // The submitter knows the id: it plants links where the runner will write about it.
      mkdirSync(join(root, ".failed", "local_p"), { recursive: true });
      symlinkSync(hostFile, join(root, ".failed", "local_p", `${id}.reason.json`));
      mkdirSync(join(root, ".attempts"), { recursive: true });
      symlinkSync(host, join(root, ".attempts", "local_p"));
      const d = await q.open("local_p").receive();
      await d!.reject("bad request");
      expect(readFileSync(hostFile, "utf8")).toBe("precious\n");
      expect(readdirSync(host)).toEqual(["precious.conf"]);
      expect(JSON.parse(readFileSync(join(root, ".failed", "local_p", `${id}.reason.json`), "utf8")).summary).toBe(
        "bad request",
      );
      expect(readFileSync(join(root, ".failed", "local_p", id), "utf8")).toBe('{"x":1}');
      await rm(root, { recursive: true, force: true });
      await rm(host, { recursive: true, force: true });
    },
  );
});
