// The queue conformance suite on a real RabbitMQ, plus what only RabbitMQ has: discovery through
// the management API or the --amqp-queues list, quorum and classic delivery counts, the failed
// place, lost connections and reconnects, deleted queues, and refusals that neither spin nor starve.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { waitFor } from "../helpers/wait-for.ts";
import { beforeAll, describe, expect, test } from "bun:test";
import { backoffDelayMs, DEFAULT_BACKOFF } from "../../src/queue/rabbitmq/backoff.ts";
import { managementAddress, parseAmqpUrl, redactUrl } from "../../src/queue/rabbitmq/broker-address.ts";
import { RabbitQueueBackend, type RabbitQueueOptions } from "../../src/queue/rabbitmq/rabbitmq-queue.ts";
import { fallbackQueueList, rabbitSettingsProblems } from "../../src/queue/rabbitmq/settings.ts";
import type { Delivery } from "../../src/queue/task-queue.ts";
import {
  AMQP_URL,
  closeConnectionsNamed,
  CuttableRelay,
  deleteQueues,
  ensureRabbitMQ,
  MANAGEMENT_URL,
  peekAll,
  rabbitMQAvailable,
  readyCount,
  uniqueQueue,
  withChannel,
  withShortConsumerTimeout,
} from "../helpers/rabbitmq.ts";
import { queueConformance } from "./queue-conformance.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

const available = (await rabbitMQAvailable()) || !!process.env.CI;
if (!available) {
  console.error(
    "\n*** SKIPPING the RabbitMQ queue tests: no broker on 127.0.0.1:5672 and rabbitmq-server is not installed ***\n",
  );
}

/** Backends and queues of one test, closed and deleted afterwards; log lines collected. */
class Fixture {
  readonly queues = new Set<string>();
  readonly backends: RabbitQueueBackend[] = [];
  readonly lines: string[] = [];

  backend(options: Partial<RabbitQueueOptions> = {}): RabbitQueueBackend {
    const b = new RabbitQueueBackend({
      url: AMQP_URL,
      managementUrl: MANAGEMENT_URL,
      maxDeliveries: 3,
      pollIntervalMs: 200,
      log: { info: (m) => this.lines.push(`info ${m}`), warn: (m) => this.lines.push(`warn ${m}`) },
      ...options,
    });
    this.backends.push(b);
    return b;
  }

  queue(label: string): string {
    const q = uniqueQueue(label);
    for (const n of [q, `${q}_response`, `${q}_skip`]) this.queues.add(n);
    return q;
  }

  async cleanup() {
    for (const b of this.backends) await b.close();
    await deleteQueues(this.queues);
  }

  async waitForLine(pattern: RegExp, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.some((l) => pattern.test(l))) {
      if (Date.now() > deadline) throw new Error(`no log line matched ${pattern}:\n${this.lines.join("\n")}`);
      await Bun.sleep(50);
    }
  }
}

const withFixture = fixtureTest(() => new Fixture(), { timeoutMs: 60_000, skip: !available });

beforeAll(async () => {
  if (available) await ensureRabbitMQ();
}, 240_000);

if (available) {
  queueConformance("rabbitmq", async () => {
    await ensureRabbitMQ();
    const f = new Fixture();
    return {
      backend: async (o = {}) =>
        f.backend({ maxDeliveries: o.maxDeliveries ?? 3, match: o.match, mismatch: o.mismatch }),
      queueName: (suffix) => f.queue(suffix),
      cleanup: () => f.cleanup(),
    };
  });
}

describe("rabbitmq: addresses", () => {
  test("the management API defaults to http, the AMQP host and credentials, port + 10000", () => {
    const a = parseAmqpUrl("amqp://alice:pa%24s@broker.example:5673/prod");
    expect(a.vhost).toBe("prod");
    expect(a.connect.password).toBe("pa$s");
    const m = managementAddress(a);
    expect(m.baseUrl).toBe("http://broker.example:15673");
    expect(m.authorization).toBe(`Basic ${btoa("alice:pa$s")}`);
    expect(managementAddress(parseAmqpUrl("amqp://127.0.0.1")).baseUrl).toBe("http://127.0.0.1:15672");
    expect(parseAmqpUrl("amqp://127.0.0.1/%2f").vhost).toBe("/");
    const given = managementAddress(a, "https://ops:other@mgmt.example/rabbit/");
    expect(given.baseUrl).toBe("https://mgmt.example/rabbit");
    expect(given.authorization).toBe(`Basic ${btoa("ops:other")}`);
  });

  test("passwords never appear in the redacted forms", () => {
    const a = parseAmqpUrl("amqp://alice:topsecret@broker.example:5672/%2f");
    expect(a.redacted).toBe("amqp://alice:***@broker.example:5672/%2f");
    expect(managementAddress(a).redacted).not.toContain("topsecret");
    expect(redactUrl("http://u:topsecret@h:1/x")).not.toContain("topsecret");
    expect(() => parseAmqpUrl("http://h/")).toThrow(/amqp/);
    expect(() => parseAmqpUrl("not a url")).toThrow();
  });

  test(
    "settings: a bad --amqp-url or --amqp-mgt-url is a configuration problem that " + "does not echo the password",
    () => {
      expect(rabbitSettingsProblems({ "amqp-url": AMQP_URL })).toEqual([]);
      expect(rabbitSettingsProblems({})).toEqual([]);
      const bad = rabbitSettingsProblems({ "amqp-url": "https://u:hunter2@h/", "amqp-mgt-url": "x" });
      expect(bad).toEqual(["--amqp-url: must start with amqp:// or amqps://"]);
      expect(rabbitSettingsProblems({ "amqp-url": AMQP_URL, "amqp-mgt-url": "ftp://h" })).toEqual([
        "--amqp-mgt-url: must start with http:// or https://",
      ]);
      expect(rabbitSettingsProblems({ "amqp-queues": "rmq_a" })).toEqual([
        "--amqp-queues is set but --amqp-url is not",
      ]);
      expect(fallbackQueueList({ "amqp-queues": " rmq_a, ,rmq_b " })).toEqual(["rmq_a", "rmq_b"]);
    },
  );
});

describe("rabbitmq: reconnect back-off", () => {
  test("doubles from 0.5s, is capped at 30s, and is jittered within the upper half", () => {
    const low = (n: number) => backoffDelayMs(n, DEFAULT_BACKOFF, () => 0);
    const high = (n: number) => backoffDelayMs(n, DEFAULT_BACKOFF, () => 1);
    expect([1, 2, 3, 4].map(high)).toEqual([500, 1000, 2000, 4000]);
    expect([1, 2, 3].map(low)).toEqual([250, 500, 1000]);
    expect(high(7)).toBe(30_000);
    expect(high(100)).toBe(30_000);
    expect(low(100)).toBe(15_000);
  });
});

describe("rabbitmq: discovery", () => {
  withFixture("through the management API: queues bound to StudioML.topic only, filtered", async (f) => {
    const b = f.backend({ match: /^rmq_/ });
    const bound = f.queue("bound");
    await b.publish(bound, "{}");
    const unbound = f.queue("unbound");
    await withChannel((ch) => ch.assertQueue(unbound, { durable: true }));
    const names = await b.discover();
    expect(names).toContain(bound);
    expect(names).not.toContain(unbound);
    // The failed place is neither bound nor matched by the default --queue-match.
    const d = await b.open(bound).receive();
    await d!.reject("bad");
    expect((await peekAll(`studioml_failed.${bound}`)).length).toBe(1);
    expect(
      (await f.backend({ match: /^(rmq|sqs|local)(_.*)?$/ }).discover()).some((n) => n.startsWith("studioml_failed")),
    ).toBe(false);
  });

  withFixture("without the management API: the --amqp-queues list, filtered, said once", async (f) => {
    const q = f.queue("fallback");
    const b = f.backend({
      managementUrl: "http://127.0.0.1:9/",
      fallbackQueues: [q, `${q}_response`, "other_queue"],
      match: /^rmq_/,
      discoveryIntervalMs: 0,
    });
    expect(await b.discover()).toEqual([q]);
    expect(await b.discover()).toEqual([q]);
    expect(f.lines.filter((l) => /management API .*unreachable/.test(l)).length).toBe(1);
    expect(f.lines.join("\n")).toContain("--amqp-queues");
    // A listed queue that does not exist yet is simply empty.
    expect(await b.open(q).receive()).toBeUndefined();
    await b.publish(q, '{"n":1}');
    const d = await b.open(q).receive();
    expect(text(d!.body)).toBe('{"n":1}');
    await d!.ack();
  });

  withFixture("a wrong password is reported without the password", async (f) => {
    const b = f.backend({
      url: "amqp://guest:wr0ngSecret99@127.0.0.1:5672/%2f",
      managementUrl: "http://guest:wr0ngSecret99@127.0.0.1:15672",
      backoff: { initialMs: 50, maxMs: 100 },
    });
    await b.discover();
    await f.waitForLine(/cannot connect to RabbitMQ/);
    await f.waitForLine(/management API/);
    expect(f.lines.join("\n")).not.toContain("wr0ngSecret99");
    expect(f.lines.join("\n")).toContain("guest:***@");
  });
});

describe("rabbitmq: delivery counts", () => {
  withFixture(
    "quorum queue: x-delivery-count counts runners that died holding it; refusals and shutdown give-backs do not count",
    async (f) => {
      const a = f.backend({ queueType: "quorum", maxDeliveries: 5 });
      const q = f.queue("quorum");
      await a.publish(q, '{"q":1}');
      const info = (await withChannel((ch) => ch.checkQueue(q))) as { messageCount: number };
      expect(info.messageCount).toBe(1);
      // Refused three times: not a delivery.
      for (let i = 0; i < 3; i++) expect(await a.open(q).receive({ accept: () => false })).toBeUndefined();
      let d = await a.open(q).receive();
      expect(d!.deliveryCount).toBe(1);
      // A runner that holds it and dies (its connection closes without settling).
      const dying = f.backend();
      await d!.nack("shutdown", { countDelivery: false });
      d = await dying.open(q).receive();
      expect(d!.deliveryCount).toBe(1);
      await dying.close();
      d = await a.open(q).receive();
      expect(d!.deliveryCount).toBe(2);
      expect((d as unknown as { facts: { fromQuorumQueue: boolean } }).facts.fromQuorumQueue).toBe(true);
      expect(await d!.nack("storage down")).toBe("requeued");
      d = await a.open(q).receive();
      expect(d!.deliveryCount).toBe(3);
      await d!.ack();
      expect(await readyCount(q)).toBe(0);
    },
  );

  withFixture(
    "quorum queue: a message whose runners kept dying goes to the failed place when it comes back",
    async (f) => {
      const q = f.queue("quorumdie");
      const a = f.backend({ queueType: "quorum", maxDeliveries: 2 });
      await a.publish(q, '{"die":1}');
      for (let i = 0; i < 2; i++) {
        const dying = f.backend({ maxDeliveries: 2 });
        expect((await dying.open(q).receive())!.deliveryCount).toBe(i + 1);
        await dying.close();
      }
      expect(await a.open(q).receive()).toBeUndefined();
      const failed = await peekAll(`studioml_failed.${q}`);
      expect(failed.map((m) => m.body)).toEqual(['{"die":1}']);
      expect(String(failed[0]!.headers["x-studio-failed-because"])).toContain(
        "delivered 2 times without being settled",
      );
    },
  );

  withFixture("classic queue: the runner's own count travels with the message to other runners", async (f) => {
    const q = f.queue("classic");
    const [a, b] = [f.backend({ maxDeliveries: 5 }), f.backend({ maxDeliveries: 5 })];
    await a.publish(q, '{"c":1}');
    const d1 = await a.open(q).receive();
    expect(d1!.deliveryCount).toBe(1);
    expect(await d1!.nack("fault on a")).toBe("requeued");
    const peeked = await peekAll(q);
    expect(Number(peeked[0]!.headers["x-studio-deliveries"])).toBe(1);
    expect(peeked[0]!.properties.messageId).toBeString();
    const d2 = await b.open(q).receive();
    expect(d2!.deliveryCount).toBe(2);
    expect(text(d2!.body)).toBe('{"c":1}');
    // A runner dying while holding it is not counted on a classic queue (documented limitation).
    await b.close();
    const d3 = await a.open(q).receive();
    expect(d3!.deliveryCount).toBe(2);
    await d3!.ack();
  });
});

describe("rabbitmq: the failed place", () => {
  withFixture("keeps the body, every reason, the queue and the count; the work queue is empty", async (f) => {
    const q = f.queue("failed");
    const b = f.backend({ maxDeliveries: 2 });
    const body = '{"experiment":{"key":"k1"},"raw":"line\\nbreak"}';
    await b.publish(q, body);
    expect(await (await b.open(q).receive())!.nack("storage down")).toBe("requeued");
    expect(await (await b.open(q).receive())!.nack("storage still down")).toBe("failed");
    expect(await b.open(q).receive()).toBeUndefined();
    const [kept, ...more] = await peekAll(`studioml_failed.${q}`);
    expect(more).toEqual([]);
    expect(kept!.body).toBe(body);
    const reasons = JSON.parse(String(kept!.headers["x-studio-reasons"]));
    expect(reasons.map((r: { reason: string }) => r.reason)).toEqual(["storage down", "storage still down"]);
    expect(String(kept!.headers["x-studio-queue"])).toBe(q);
    expect(String(kept!.headers["x-studio-failed-deliveries"])).toBe("2");
    expect(String(kept!.headers["x-studio-failed-because"])).toContain("gave up after 2 deliveries");
    expect(kept!.properties.contentType).toBe("application/json");
    expect(kept!.properties.deliveryMode).toBe(2);
    // Not bound to StudioML.topic: a publish to the queue's routing key does not reach it.
    const bindings = (await (
      await fetch(`${MANAGEMENT_URL}/api/queues/%2f/studioml_failed.${q}/bindings`, {
        headers: { authorization: `Basic ${btoa("guest:guest")}` },
      })
    ).json()) as Array<{ source: string }>;
    expect(bindings.map((x) => x.source)).toEqual([""]);
  });

  withFixture("reject goes there at once with its reason", async (f) => {
    const q = f.queue("reject");
    const b = f.backend();
    await b.publish(q, '{"experiment": 5}');
    await (await b.open(q).receive())!.reject("bad request: experiment must be an object");
    const [kept] = await peekAll(`studioml_failed.${q}`);
    expect(kept!.body).toBe('{"experiment": 5}');
    expect(String(kept!.headers["x-studio-failed-because"])).toBe("bad request: experiment must be an object");
    expect(await readyCount(q)).toBe(0);
  });
});

describe("rabbitmq: holding and refusing", () => {
  withFixture(
    "a refused message is given back at once, keeps its place, and does not hide the ones behind it",
    async (f) => {
      const q = f.queue("starve");
      const b = f.backend();
      await b.publish(q, '{"size":"huge"}');
      await b.publish(q, '{"size":"small"}');
      expect(await b.open(q).receive({ accept: () => false })).toBeUndefined();
      expect(await readyCount(q)).toBe(2); // nothing held after a refusal
      const small = await b.open(q).receive({ accept: (body) => text(body).includes("small") });
      expect(text(small!.body)).toBe('{"size":"small"}');
      expect(await readyCount(q)).toBe(1); // exactly one held: the one taken
      await small!.ack();
      const huge = await b.open(q).receive();
      expect(text(huge!.body)).toBe('{"size":"huge"}');
      expect(huge!.deliveryCount).toBe(1);
      await huge!.ack();
    },
  );

  withFixture("waitForWork does not wake for messages this runner refused, and does for new ones", async (f) => {
    const q = f.queue("nospin");
    const b = f.backend();
    await b.publish(q, '{"big":1}');
    expect(await b.open(q).receive({ accept: () => false })).toBeUndefined();
    const started = Date.now();
    await b.waitForWork(1500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    const waiting = b.waitForWork(20_000);
    const publishedAt = Date.now();
    // Kept and awaited: the tap can wake the waiter before the broker confirms the publish, and the
    // fixture closing that publisher's channel first turned the pending confirm into a stray
    // rejection ("the broker refused a message") that failed this test now and then.
    let publishing: Promise<unknown> | undefined;
    // The point is a publish while waitForWork already waits: 100 ms after it began.
    setTimeout(() => (publishing = f.backend().publish(q, '{"small":1}')), 100);
    await waiting;
    expect(Date.now() - publishedAt).toBeLessThan(3000);
    await publishing;
  });
});

describe("rabbitmq: connections that break", () => {
  withFixture(
    "the broker closes the connection mid-hold: the runner reconnects, takes the " +
      "message back and acks it; nothing lost",
    async (f) => {
      const q = f.queue("cut");
      const connectionName = `studio-runner test ${q}`;
      const b = f.backend({ backoff: { initialMs: 100, maxMs: 1000 }, connectionName });
      await b.publish(q, '{"held":1}');
      await b.publish(q, '{"queued":1}');
      const d = await b.open(q).receive();
      expect(text(d!.body)).toBe('{"held":1}');
      expect(await closeConnectionsNamed(connectionName)).toBe(1);
      await f.waitForLine(/lost the hold on/);
      await f.waitForLine(/took .* back after losing its channel/);
      await d!.ack();
      const next = await b.open(q).receive();
      expect(text(next!.body)).toBe('{"queued":1}');
      await next!.ack();
      expect(await b.open(q).receive()).toBeUndefined();
      expect(await readyCount(q)).toBe(0);
    },
  );

  withFixture(
    "cut off for a while: another runner gets the message, the late ack does not throw, nothing is lost or kept twice",
    async (f) => {
      const relay = await new CuttableRelay().start();
      try {
        const q = f.queue("outage");
        const a = f.backend({ url: relay.url, backoff: { initialMs: 100, maxMs: 400 } });
        const other = f.backend();
        await other.publish(q, '{"job":1}');
        const d = await a.open(q).receive();
        expect(d).toBeDefined();
        relay.cut();
        await f.waitForLine(/lost the hold on/);
        let taken: Delivery | undefined;
        for (let i = 0; i < 50 && !taken; i++)
          taken = (await other.open(q).receive()) ?? (await Bun.sleep(100), undefined);
        expect(text(taken!.body)).toBe('{"job":1}');
        await d!.ack(); // the experiment finished on a: no throw, a warning
        expect(f.lines.some((l) => /cannot be acknowledged/.test(l))).toBe(true);
        await expect(d!.ack()).rejects.toThrow(/already settled/);
        await taken!.ack();
        relay.restore();
        await f.waitForLine(/connected to RabbitMQ .* after/);
        expect(await readyCount(q)).toBe(0);
        expect(await readyCount(`studioml_failed.${q}`)).toBeUndefined();
      } finally {
        await relay.close();
      }
    },
  );

  withFixture(
    "finished while cut off: when the message comes back to this runner it is acked without running again",
    async (f) => {
      const relay = await new CuttableRelay().start();
      try {
        const q = f.queue("lateack");
        const a = f.backend({ url: relay.url, backoff: { initialMs: 100, maxMs: 400 } });
        await a.publish(q, '{"job":2}');
        const d = await a.open(q).receive();
        relay.cut();
        await f.waitForLine(/lost the hold on/);
        await d!.ack();
        relay.restore();
        await f.waitForLine(/connected to RabbitMQ .* after/);
        let got: Delivery | undefined;
        for (let i = 0; i < 20; i++) {
          got = await a.open(q).receive();
          if (got || f.lines.some((l) => /acknowledged without running it again/.test(l))) break;
          await Bun.sleep(100);
        }
        expect(got).toBeUndefined();
        expect(f.lines.some((l) => /came back after this runner had finished it/.test(l))).toBe(true);
        expect(await readyCount(q)).toBe(0);
      } finally {
        await relay.close();
      }
    },
  );

  withFixture("a shutdown give-back while cut off does not throw; the message is back in the queue", async (f) => {
    const relay = await new CuttableRelay().start();
    try {
      const q = f.queue("latenack");
      const a = f.backend({ url: relay.url, backoff: { initialMs: 100, maxMs: 400 } });
      await a.publish(q, '{"job":3}');
      const d = await a.open(q).receive();
      relay.cut();
      await f.waitForLine(/lost the hold on/);
      expect(await d!.nack("runner shutting down", { countDelivery: false })).toBe("requeued");
      expect(await readyCount(q)).toBe(1);
    } finally {
      await relay.close();
    }
  });
});

describe("rabbitmq: consumer_timeout", () => {
  withFixture(
    "a message held longer than the broker's consumer_timeout (basic.get too) is taken back and acked as usual",
    async (f) => {
      const q = f.queue("ctimeout");
      const b = f.backend({ backoff: { initialMs: 100, maxMs: 1000 } });
      await b.publish(q, '{"long":"job"}');
      await withShortConsumerTimeout(1500, async () => {
        const d = await b.open(q).receive();
        await f.waitForLine(
          /lost the hold on .*PRECONDITION_FAILED - delivery acknowledgement on channel \d+ timed out/,
          20_000,
        );
        await f.waitForLine(/took .* back after losing its channel/);
        await d!.ack();
      });
      expect(await b.open(q).receive()).toBeUndefined();
      expect(await readyCount(q)).toBe(0);
    },
  );
});

describe("rabbitmq: deleted queues", () => {
  withFixture("deleting the queue revokes what this runner holds from it; settling is then quiet", async (f) => {
    const q = f.queue("deleted");
    const b = f.backend({ revocationCheckMs: 200 });
    await b.publish(q, '{"run":"long"}');
    const d = await b.open(q).receive();
    expect(d!.revoked?.aborted).toBe(false);
    let why = "";
    d!.revoked!.addEventListener("abort", () => (why = String((d!.revoked!.reason as Error).message)));
    await withChannel((ch) => ch.deleteQueue(q));
    await waitFor("the delivery to be revoked", () => d!.revoked!.aborted, 5_000, 50);
    expect(why).toContain(`queue ${q} was deleted`);
    await d!.ack();
    expect(f.lines.some((l) => l.includes(`queue ${q} was deleted`))).toBe(true);
  });
});
