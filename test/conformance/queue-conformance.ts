// One conformance suite for every queue backend: each adapter's test file calls it with a
// factory that makes backends sharing one fresh queue space.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { describe, expect } from "bun:test";
import type { QueueBackend } from "../../src/queue/task-queue.ts";

export type QueueHarness = {
  /** A backend connected to this test's queue space; several calls share the same space. */
  backend(options?: { maxDeliveries?: number; match?: RegExp; mismatch?: RegExp }): Promise<QueueBackend>;
  /** A queue name valid for this backend, unique to the test. */
  queueName(suffix: string): string;
  cleanup(): Promise<void>;
};

const text = (b: Uint8Array) => new TextDecoder().decode(b);

export function queueConformance(kind: string, makeHarness: () => Promise<QueueHarness>) {
  describe(`queue conformance: ${kind}`, () => {
    const withHarness = fixtureTest(makeHarness, { timeoutMs: 60_000 });

    withHarness("discover lists work queues and honours match, mismatch and _response", async (h) => {
      const b = await h.backend({ mismatch: /_skip$/ });
      const a = h.queueName("a");
      await b.publish(a, "{}");
      await b.publish(`${a}_response`, "{}");
      await b.publish(`${a}_skip`, "{}");
      const names = await b.discover();
      expect(names).toContain(a);
      expect(names).not.toContain(`${a}_response`);
      expect(names).not.toContain(`${a}_skip`);
      await b.close();
    });

    withHarness("publish, receive, ack: delivered once with its body and count 1", async (h) => {
      const b = await h.backend();
      const q = h.queueName("ack");
      await b.publish(q, '{"n":1}');
      const d = await b.open(q).receive();
      expect(d).toBeDefined();
      expect(text(d!.body)).toBe('{"n":1}');
      expect(d!.deliveryCount).toBe(1);
      expect(d!.queue).toBe(q);
      await d!.ack();
      expect(await b.open(q).receive()).toBeUndefined();
      await b.close();
    });

    withHarness("oldest message first", async (h) => {
      const b = await h.backend();
      const q = h.queueName("fifo");
      for (let i = 0; i < 3; i++) {
        await b.publish(q, `{"n":${i}}`);
        await Bun.sleep(20); // timing is the point: "oldest" is by publish time, kept apart
      }
      const got: string[] = [];
      for (let i = 0; i < 3; i++) {
        const d = await b.open(q).receive();
        got.push(text(d!.body));
        await d!.ack();
      }
      expect(got).toEqual(['{"n":0}', '{"n":1}', '{"n":2}']);
      await b.close();
    });

    withHarness("nack requeues with a growing delivery count, then moves to the failed place", async (h) => {
      const b = await h.backend({ maxDeliveries: 3 });
      const q = h.queueName("poison");
      await b.publish(q, "{}");
      const outcomes: string[] = [];
      for (let i = 1; i <= 3; i++) {
        const d = await b.open(q).receive();
        expect(d!.deliveryCount).toBe(i);
        outcomes.push(await d!.nack(`fault ${i}`));
      }
      expect(outcomes).toEqual(["requeued", "requeued", "failed"]);
      expect(await b.open(q).receive()).toBeUndefined();
      await b.close();
    });

    withHarness("nack without counting (shutdown) keeps the delivery count", async (h) => {
      const b = await h.backend({ maxDeliveries: 2 });
      const q = h.queueName("drain");
      await b.publish(q, "{}");
      for (let i = 0; i < 4; i++) {
        const d = await b.open(q).receive();
        expect(d!.deliveryCount).toBe(1);
        expect(await d!.nack("shutdown", { countDelivery: false })).toBe("requeued");
      }
      await b.close();
    });

    withHarness("reject keeps the message out of the queue", async (h) => {
      const b = await h.backend();
      const q = h.queueName("reject");
      await b.publish(q, '{"experiment": 5}');
      const d = await b.open(q).receive();
      await d!.reject("bad request: experiment must be an object");
      expect(await b.open(q).receive()).toBeUndefined();
      await b.close();
    });

    withHarness("a message the runner does not accept stays for others", async (h) => {
      const b = await h.backend();
      const q = h.queueName("accept");
      await b.publish(q, '{"big":true}');
      expect(await b.open(q).receive({ accept: () => false })).toBeUndefined();
      const d = await b.open(q).receive({ accept: () => true });
      expect(text(d!.body)).toBe('{"big":true}');
      await d!.ack();
      await b.close();
    });

    withHarness("a delivery cannot be settled twice", async (h) => {
      const b = await h.backend();
      const q = h.queueName("twice");
      await b.publish(q, "{}");
      const d = await b.open(q).receive();
      await d!.ack();
      await expect(d!.ack()).rejects.toThrow();
      await b.close();
    });

    withHarness("two consumers sharing the queue get every message exactly once", async (h) => {
      const producers = await h.backend();
      const q = h.queueName("shared");
      const total = 30;
      for (let i = 0; i < total; i++) await producers.publish(q, `{"n":${i}}`);
      const consumers = [await h.backend(), await h.backend()];
      const seen: string[] = [];
      await Promise.all(
        consumers.map(async (c) => {
          for (;;) {
            const d = await c.open(q).receive();
            if (!d) break;
            seen.push(text(d.body));
            await d.ack();
          }
        }),
      );
      expect(seen.length).toBe(total);
      expect(new Set(seen).size).toBe(total);
      for (const c of [...consumers, producers]) await c.close();
    });

    withHarness("waitForWork wakes up when a message arrives", async (h) => {
      const b = await h.backend();
      const q = h.queueName("wake");
      await b.publish(q, "{}");
      const d = await b.open(q).receive();
      await d!.ack();
      const waiting = b.waitForWork(30_000);
      // The point is a publish while waitForWork already waits; the 10 s race only bounds a hang.
      setTimeout(() => void b.publish(q, "{}"), 50);
      const woke = await Promise.race([waiting.then(() => true), Bun.sleep(10_000).then(() => false)]);
      expect(woke).toBe(true);
      const next = await b.open(q).receive();
      expect(next).toBeDefined();
      await next!.ack();
      await b.close();
    });
  });
}
