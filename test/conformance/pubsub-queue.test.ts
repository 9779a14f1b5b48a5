// The queue conformance suite on the Google Pub/Sub emulator, plus what only Pub/Sub has: the
// python client's `<queue>_sub` naming, ack deadlines renewed while a message is held, and the
// failed place `studioml_failed.<queue>` with the reasons in its attributes.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { waitFor } from "../helpers/wait-for.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { PubSub } from "@google-cloud/pubsub";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { queueOfSubscription } from "../../src/queue/pubsub/conventions.ts";
import { copyAttributes, messageFacts, newReason } from "../../src/queue/pubsub/message-facts.ts";
import type { PubsubDelivery } from "../../src/queue/pubsub/delivery.ts";
import { PubsubProjectSet } from "../../src/queue/pubsub/project-set.ts";
import { PubsubQueueBackend, type PubsubQueueOptions } from "../../src/queue/pubsub/pubsub-queue.ts";
import { scanProjects } from "../../src/queue/pubsub/service-accounts.ts";
import { PUBSUB_OPTIONS, pubsubBackendFromSettings, pubsubSettingsProblems } from "../../src/queue/pubsub/settings.ts";
import { startPubsubEmulator, type PubsubEmulator } from "../helpers/pubsub-emulator.ts";
import { queueConformance } from "./queue-conformance.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

let emulator: PubsubEmulator | undefined;
beforeAll(async () => {
  emulator = await startPubsubEmulator();
});
afterAll(async () => {
  await emulator?.stop();
});

/** Backends of one fresh emulator project, closed afterwards. */
class Fixture {
  readonly projectId = `studio-test-${randomUUID().slice(0, 8)}`;
  readonly backends: PubsubQueueBackend[] = [];
  readonly lines: string[] = [];
  private n = 0;

  backend(options: Partial<PubsubQueueOptions> = {}): PubsubQueueBackend {
    const b = new PubsubQueueBackend({
      projectId: this.projectId,
      maxDeliveries: 3,
      discoveryIntervalMs: 0,
      log: { info: (m) => this.lines.push(`info ${m}`), warn: (m) => this.lines.push(`warn ${m}`) },
      ...options,
    });
    this.backends.push(b);
    return b;
  }

  queue(label: string): string {
    return `ps_${label}_${this.n++}`;
  }

  async cleanup() {
    for (const b of this.backends) await b.close();
  }
}

queueConformance("pubsub", async () => {
  const f = new Fixture();
  return {
    backend: async (o = {}) => f.backend({ maxDeliveries: o.maxDeliveries ?? 3, match: o.match, mismatch: o.mismatch }),
    queueName: (suffix) => f.queue(suffix),
    cleanup: () => f.cleanup(),
  };
});

const withFixture = fixtureTest(() => new Fixture(), { timeoutMs: 30_000 });

describe("pubsub: naming", () => {
  test("a subscription `<queue>_sub` serves queue `<queue>`; other names are the queue", () => {
    expect(queueOfSubscription("rmq_a_sub")).toBe("rmq_a");
    expect(queueOfSubscription("gpu-jobs")).toBe("gpu-jobs");
    expect(queueOfSubscription("_sub")).toBe("_sub");
  });

  test("the runner's count rides on copies; reasons are trimmed to fit one 1024-byte attribute, newest kept", () => {
    expect(messageFacts("m1", {}).deliveryCount).toBe(1);
    expect(messageFacts("m2", { studio_deliveries: "2", studio_identity: "m1" })).toMatchObject({
      deliveryCount: 3,
      identity: "m1",
    });
    const reasons = Array.from({ length: 30 }, (_, i) => newReason(`fault ${i} ${"x".repeat(400)}`));
    const copy = copyAttributes({ keep: "me" }, { identity: "m1", deliveries: 2, reasons });
    expect(Buffer.byteLength(copy.studio_reasons!)).toBeLessThanOrEqual(1024);
    const kept = JSON.parse(copy.studio_reasons!) as Array<{ reason: string }>;
    expect(kept.at(-1)!.reason.startsWith("fault 29 ")).toBe(true);
    expect(copy).toMatchObject({ keep: "me", studio_deliveries: "2", studio_identity: "m1" });
  });

  withFixture(
    "discovery: the python client's names, a subscription named like its queue, never the failed place",
    async (f) => {
      const b = f.backend({ match: /.*/ });
      const q = f.queue("named");
      await b.publish(q, "{}");
      const admin = new PubSub({ projectId: f.projectId });
      try {
        await admin.createTopic("gorunner-topic");
        await admin.createSubscription("gorunner-topic", "gorunner_queue");
        await (await b.open(q).receive())!.reject("bad request");
        const names = await b.discover();
        expect(names).toContain(q);
        expect(names).toContain("gorunner_queue");
        expect(names.some((n) => n.startsWith("studioml_failed"))).toBe(false);
        // A copy in the failed place exists, but is never served as work.
        const [subs] = await admin.getSubscriptions();
        expect(subs.map((s) => s.name.split("/").pop())).toContain(`studioml_failed.${q}_sub`);
        // A subscription named like its queue is served under that name.
        await admin.topic("gorunner-topic").publishMessage({ data: Buffer.from('{"go":1}') });
        const d = await b.open("gorunner_queue").receive();
        expect(text(d!.body)).toBe('{"go":1}');
        await d!.ack();
      } finally {
        await admin.close();
      }
    },
  );
});

describe("pubsub: the failed place", () => {
  withFixture("keeps the body, every reason, the queue and the count; the work queue is empty", async (f) => {
    const q = f.queue("failed");
    const b = f.backend({ maxDeliveries: 2 });
    const body = '{"experiment":{"key":"k1"},"raw":"line\\nbreak"}';
    await b.publish(q, body);
    expect(await (await b.open(q).receive())!.nack("storage down")).toBe("requeued");
    expect(await (await b.open(q).receive())!.nack("storage still down")).toBe("failed");
    expect(await b.open(q).receive()).toBeUndefined();
    const kept = (await b.open(`studioml_failed.${q}`).receive()) as PubsubDelivery;
    expect(text(kept.body)).toBe(body);
    const attributes = kept.message.attributes;
    expect(JSON.parse(attributes.studio_reasons!).map((r: { reason: string }) => r.reason)).toEqual([
      "storage down",
      "storage still down",
    ]);
    expect(attributes.studio_queue).toBe(q);
    expect(attributes.studio_failed_deliveries).toBe("2");
    expect(attributes.studio_failed_because).toContain("gave up after 2 deliveries: storage still down");
    await kept.ack();
  });

  withFixture("reject goes there at once with its reason", async (f) => {
    const q = f.queue("reject");
    const b = f.backend();
    await b.publish(q, '{"experiment": 5}');
    await (await b.open(q).receive())!.reject("bad request: experiment must be an object");
    const kept = (await b.open(`studioml_failed.${q}`).receive()) as PubsubDelivery;
    expect(text(kept.body)).toBe('{"experiment": 5}');
    expect(kept.message.attributes.studio_failed_because).toBe("bad request: experiment must be an object");
    await kept.ack();
    expect(await b.open(q).receive()).toBeUndefined();
  });
});

describe("pubsub: ack deadlines", () => {
  withFixture(
    "a message held longer than three ack deadlines is not redelivered while the " +
      "holder renews; after the holder stops it is",
    async (f) => {
      const q = f.queue("long");
      const holder = f.backend({ ackDeadlineS: 10 });
      const other = f.backend({ ackDeadlineS: 10 });
      await holder.publish(q, '{"long":"job"}');
      const d = await holder.open(q).receive();
      expect(d).toBeDefined();
      const heldUntil = Date.now() + 35_000;
      while (Date.now() < heldUntil) {
        expect(await other.open(q).receive()).toBeUndefined();
        await Bun.sleep(1000); // a negative check over 35 s (3.5 ack deadlines): a fixed time is the point
      }
      await holder.close();
      expect(f.lines.some((l) => /closing with 1 unsettled Pub\/Sub message/.test(l))).toBe(true);
      let again: PubsubDelivery | undefined;
      for (let i = 0; i < 150 && !again; i++)
        again = ((await other.open(q).receive()) as PubsubDelivery | undefined) ?? (await Bun.sleep(100), undefined);
      expect(text(again!.body)).toBe('{"long":"job"}');
      expect(again!.deliveryCount).toBe(1);
      await again!.ack();
    },
    70_000,
  );

  withFixture(
    "control: a held message whose deadline is not renewed goes to another consumer once it runs out",
    async (f) => {
      const q = f.queue("expire");
      const holder = f.backend({ ackDeadlineS: 10 });
      const other = f.backend({ ackDeadlineS: 10 });
      await holder.publish(q, '{"n":1}');
      const d = (await holder.open(q).receive()) as PubsubDelivery;
      d.lease.stop();
      const stoppedAt = Date.now();
      let again: PubsubDelivery | undefined;
      while (!again && Date.now() - stoppedAt < 20_000)
        again = ((await other.open(q).receive()) as PubsubDelivery | undefined) ?? (await Bun.sleep(250), undefined);
      expect(again).toBeDefined();
      expect(Date.now() - stoppedAt).toBeGreaterThan(5_000);
      await again!.ack();
      await d.ack(); // late: logged by the emulator's refusal or accepted, never thrown
    },
    30_000,
  );
});

describe("pubsub: deleted subscriptions", () => {
  withFixture("deleting the subscription revokes what this runner holds from it; settling is then quiet", async (f) => {
    const q = f.queue("deleted");
    const b = f.backend({ ackDeadlineS: 10 });
    await b.publish(q, '{"run":"long"}');
    const d = await b.open(q).receive();
    expect(d!.revoked?.aborted).toBe(false);
    const admin = new PubSub({ projectId: f.projectId });
    try {
      await admin.subscription(`${q}_sub`).delete();
    } finally {
      await admin.close();
    }
    await waitFor("the delivery to be revoked", () => d!.revoked!.aborted, 10_000, 50);
    expect(String((d!.revoked!.reason as Error).message)).toContain(`subscription ${q}_sub of queue ${q} was deleted`);
    await d!.ack();
    expect(f.lines.filter((l) => l.startsWith("warn")).join("\n")).not.toContain("acknowledgement");
    expect(await b.discover()).not.toContain(q);
  });
});

describe("pubsub: settings and projects", () => {
  const withCerts = async (fn: (dir: string) => Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), "gcerts-"));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const writeKey = (dir: string, file: string, projectId: string | undefined) =>
    writeFileSync(
      join(dir, file),
      JSON.stringify({
        type: "service_account",
        project_id: projectId,
        client_email: `runner@${projectId}.iam.gserviceaccount.com`,
      }),
    );

  test("the options, and the problems found in them", async () => {
    expect(PUBSUB_OPTIONS.map((o) => o.name)).toEqual(["google-certs", "pubsub-project", "pubsub-ack-deadline"]);
    expect(pubsubSettingsProblems({})).toEqual([]);
    expect(pubsubSettingsProblems({ "pubsub-project": "bad project!" })[0]).toContain("--pubsub-project");
    expect(pubsubSettingsProblems({ "google-certs": "/nonexistent/certs" })[0]).toContain("/nonexistent/certs");
    expect(pubsubSettingsProblems({ "pubsub-ack-deadline": 5_000 })).toEqual([
      "--pubsub-ack-deadline must be between 10s and 10m",
    ]);
    expect(pubsubSettingsProblems({ "pubsub-ack-deadline": 30_000 })).toEqual([]);
    await withCerts(async (dir) => {
      writeKey(dir, "a.json", "proj-a");
      writeFileSync(join(dir, "broken.json"), "{");
      writeKey(dir, "noproject.json", undefined);
      const problems = pubsubSettingsProblems({ "google-certs": dir });
      expect(problems.length).toBe(2);
      expect(problems.join("\n")).toContain("broken.json");
      expect(problems.join("\n")).toContain("noproject.json: has no project_id");
    });
  });

  test(
    "no Pub/Sub settings: no backend; --pubsub-project alone serves that project " + "(here the emulator's)",
    async () => {
      const saved = process.env.GOOGLE_APPLICATION_CREDENTIALS;
      delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
      const log = { info: () => undefined, warn: () => undefined };
      try {
        expect(pubsubBackendFromSettings({ "max-deliveries": 3 }, log)).toBeUndefined();
        const projectId = `studio-test-${randomUUID().slice(0, 8)}`;
        const b = pubsubBackendFromSettings(
          { "max-deliveries": 3, "pubsub-project": projectId, "queue-match": /^ps_/ },
          log,
        )!;
        try {
          expect(b.kind).toBe("pubsub");
          await b.publish("ps_settings", '{"s":1}');
          await b.publish("other_settings", "{}");
          expect(await b.discover()).toEqual(["ps_settings"]);
          const d = await b.open("ps_settings").receive();
          expect(text(d!.body)).toBe('{"s":1}');
          await d!.ack();
        } finally {
          await b.close();
        }
      } finally {
        if (saved !== undefined) process.env.GOOGLE_APPLICATION_CREDENTIALS = saved;
      }
    },
  );

  test(
    "--google-certs: one project per file, rescanned; a queue name in two projects " + "is served from the first",
    async () => {
      await withCerts(async (dir) => {
        const [p1, p2] = [`studio-a-${randomUUID().slice(0, 6)}`, `studio-b-${randomUUID().slice(0, 6)}`];
        writeKey(dir, "1.json", p1);
        const lines: string[] = [];
        const set = new PubsubProjectSet({
          scan: () => scanProjects({ certsDir: dir }),
          rescanIntervalMs: 0,
          maxDeliveries: 3,
          match: /^ps_/,
          log: { info: (m) => lines.push(m), warn: (m) => lines.push(m) },
        });
        const admin2 = new PubsubQueueBackend({ projectId: p2, maxDeliveries: 3 });
        try {
          await set.publish("ps_one", '{"p":1}');
          await set.publish("ps_both", '{"p":1}');
          await admin2.publish("ps_two", '{"p":2}');
          await admin2.publish("ps_both", '{"p":2}');
          expect(set.projects()).toEqual([p1]);
          expect(await set.discover()).toEqual(["ps_both", "ps_one"]);
          writeKey(dir, "2.json", p2);
          expect(await set.discover()).toEqual(["ps_both", "ps_one", "ps_two"]);
          expect(lines.some((l) => l.includes(`ps_both exists in projects ${p1} and ${p2}`))).toBe(true);
          const two = await set.open("ps_two").receive();
          expect(text(two!.body)).toBe('{"p":2}');
          await two!.ack();
          const both = await set.open("ps_both").receive();
          expect(text(both!.body)).toBe('{"p":1}');
          await both!.ack();
        } finally {
          await set.close();
          await admin2.close();
        }
      });
    },
  );
});
