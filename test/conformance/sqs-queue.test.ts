// The queue conformance suite on an SQS-compatible server (fauxqs on loopback), plus what only SQS
// has: counts from ApproximateReceiveCount, visibility renewal and its 12-hour ceiling, a holder
// that stops renewing, the failed place, accounts from --sqs-certs, and error classes.

import { fixtureTest } from "../helpers/fixture-test.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ChangeMessageVisibilityCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PermanentError, RetryableError } from "../../src/errors.ts";
import { DEFAULT_QUEUE_MATCH } from "../../src/config/options.ts";
import { parseIni } from "../../src/queue/sqs/accounts.ts";
import { failedQueueName } from "../../src/queue/sqs/conventions.ts";
import { VisibilityLease } from "../../src/queue/sqs/lease.ts";
import { sqsBackendFromSettings, SQS_OPTIONS, sqsSettingsProblems } from "../../src/queue/sqs/settings.ts";
import { QueueMissingError, sqsFault } from "../../src/queue/sqs/sqs-errors.ts";
import { SqsQueueBackend, type SqsQueueOptions } from "../../src/queue/sqs/sqs-queue.ts";
import { startSqsServer, type SqsServer } from "../helpers/sqs-server.ts";
import { queueConformance } from "./queue-conformance.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const CREDENTIALS = { accessKeyId: "test-key", secretAccessKey: "test-secret" };

let server: SqsServer;
let raw: SQSClient;
let counter = 0;

beforeAll(async () => {
  server = await startSqsServer();
  raw = new SQSClient({
    endpoint: server.endpoint,
    region: "us-east-1",
    credentials: CREDENTIALS,
    useQueueUrlAsEndpoint: false,
  });
}, 60_000);

afterAll(async () => {
  raw?.destroy();
  await server?.stop();
});

const uniqueQueue = (label: string) => `sqs_t${process.pid}_${Date.now().toString(36)}_${++counter}_${label}`;

/** Backends of one test, closed afterwards; log lines collected. */
class Fixture {
  readonly backends: SqsQueueBackend[] = [];
  readonly lines: string[] = [];

  backend(options: Partial<SqsQueueOptions> = {}): SqsQueueBackend {
    const b = new SqsQueueBackend({
      accounts: [{ name: "test", region: "us-east-1", credentials: CREDENTIALS }],
      endpoint: server.endpoint,
      maxDeliveries: 3,
      leaseMs: 30_000,
      discoveryIntervalMs: 0,
      log: { info: (m) => this.lines.push(`info ${m}`), warn: (m) => this.lines.push(`warn ${m}`) },
      ...options,
    });
    this.backends.push(b);
    return b;
  }

  async cleanup() {
    for (const b of this.backends) await b.close();
  }
}

const withFixture = fixtureTest(() => new Fixture(), { timeoutMs: 30_000 });

async function urlOf(queue: string): Promise<string> {
  return (await raw.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl!;
}

/** Every message now visible in a queue, taken with the raw client (left invisible for a minute). */
async function drain(queue: string) {
  const url = await urlOf(queue);
  const got = [];
  for (;;) {
    const r = await raw.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 60,
        MessageAttributeNames: ["All"],
      }),
    );
    if (!r.Messages?.length) return got;
    got.push(...r.Messages);
  }
}

queueConformance("sqs", async () => {
  const f = new Fixture();
  return {
    backend: async (o = {}) => f.backend({ maxDeliveries: o.maxDeliveries ?? 3, match: o.match, mismatch: o.mismatch }),
    queueName: (suffix) => uniqueQueue(suffix),
    cleanup: () => f.cleanup(),
  };
});

describe("sqs: delivery counts", () => {
  withFixture("ApproximateReceiveCount feeds the count: a receive elsewhere that was not settled counts", async (f) => {
    const b = f.backend();
    const q = uniqueQueue("arc");
    await b.publish(q, '{"arc":1}');
    const url = await urlOf(q);
    const other = await raw.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 1, VisibilityTimeout: 60 }),
    );
    await raw.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: url,
        ReceiptHandle: other.Messages![0]!.ReceiptHandle!,
        VisibilityTimeout: 0,
      }),
    );
    const d = await b.open(q).receive();
    expect(d!.deliveryCount).toBe(2);
    expect(text(d!.body)).toBe('{"arc":1}');
    await d!.ack();
  });

  withFixture("refusals do not count; the refused message stays for the next taker", async (f) => {
    const b = f.backend();
    const q = uniqueQueue("refuse");
    await b.publish(q, '{"big":1}');
    for (let i = 0; i < 3; i++) expect(await b.open(q).receive({ accept: () => false })).toBeUndefined();
    const d = await b.open(q).receive();
    expect(d!.deliveryCount).toBe(1);
    await d!.ack();
    expect(await b.open(q).receive()).toBeUndefined();
  });
});

describe("sqs: visibility", () => {
  withFixture(
    "renewal keeps a message held past three leases away from a second consumer; " +
      "when the holder stops, it is redelivered and counted",
    async (f) => {
      const holder = f.backend({ leaseMs: 2_000 });
      const second = f.backend({ leaseMs: 2_000 });
      const q = uniqueQueue("lease");
      await holder.publish(q, '{"long":1}');
      const d = await holder.open(q).receive();
      expect(d).toBeDefined();
      const until = Date.now() + 7_000;
      while (Date.now() < until) expect(await second.open(q).receive()).toBeUndefined();
      // The runner dies: it stops renewing without settling.
      await holder.close();
      let again;
      for (let i = 0; i < 10 && !again; i++) again = await second.open(q).receive();
      expect(text(again!.body)).toBe('{"long":1}');
      expect(again!.deliveryCount).toBe(2);
      expect(again!.id).toBe(d!.id);
      await again!.ack();
    },
    30_000,
  );

  withFixture("a message whose holders kept dying goes to the failed place when it comes back", async (f) => {
    const q = uniqueQueue("dying");
    const dying = f.backend({ leaseMs: 2_000, maxDeliveries: 1 });
    await dying.publish(q, '{"die":1}');
    expect((await dying.open(q).receive())!.deliveryCount).toBe(1);
    await dying.close();
    const next = f.backend({ leaseMs: 2_000, maxDeliveries: 1 });
    // Timing is the point: the broker's 2 s visibility timeout must run out before the one receive
    // (an earlier receive sees nothing either, but moves nothing), and no event says it did.
    await Bun.sleep(2_100);
    expect(await next.open(q).receive()).toBeUndefined();
    const [kept] = await drain(failedQueueName(q));
    expect(kept!.Body).toBe('{"die":1}');
    expect(kept!.MessageAttributes!.studio_failed_because!.StringValue).toContain(
      "delivered 2 times without being settled",
    );
  });

  test("the lease stops before the 12-hour ceiling with one last, shorter renewal and a warning", async () => {
    const renewals: number[] = [];
    let ceilingAt = 0;
    const lease = new VisibilityLease({
      leaseMs: 2_000,
      receivedAtMs: Date.now(),
      ceilingMs: 2_500,
      renew: async (seconds) => void renewals.push(seconds),
      onCeiling: (atMs) => (ceilingAt = atMs),
      onRenewFailed: () => undefined,
    });
    // A test of the lease's own timers: a fixed time is the point.
    await Bun.sleep(1_600); // 1 s: 1.5 s were left before the ceiling, so one 1 s renewal, then stop
    await lease.stop();
    expect(renewals).toEqual([1]);
    expect(ceilingAt).toBeGreaterThan(0);
  });

  test("a failed renewal is retried sooner than half a lease", async () => {
    let calls = 0;
    const failures: string[] = [];
    const lease = new VisibilityLease({
      leaseMs: 1_200,
      receivedAtMs: Date.now(),
      renew: async () => {
        calls++;
        if (calls === 1) throw new Error("throttled");
      },
      onCeiling: () => undefined,
      onRenewFailed: (m) => failures.push(m),
    });
    // A test of the lease's own timers (its retry delay): a fixed time is the point.
    await Bun.sleep(1_100); // 600 ms: fails; 800 ms: retried; the next would be at 1400 ms
    await lease.stop();
    expect(failures).toEqual(["throttled"]);
    expect(calls).toBe(2);
  });
});

describe("sqs: the failed place", () => {
  withFixture(
    "keeps the body, the reasons it carries and the final one; the work queue is " +
      "empty; the default --queue-match never serves it",
    async (f) => {
      const b = f.backend({ maxDeliveries: 2 });
      const q = uniqueQueue("failed");
      const body = '{"experiment":{"key":"k1"},"raw":"line\\nbreak"}';
      await b.publish(q, body);
      expect(await (await b.open(q).receive())!.nack("storage down")).toBe("requeued");
      const d2 = await b.open(q).receive();
      expect(await d2!.nack("shutdown", { countDelivery: false })).toBe("requeued");
      expect(await (await b.open(q).receive())!.nack("storage still down")).toBe("failed");
      expect(await b.open(q).receive()).toBeUndefined();
      const failed = failedQueueName(q);
      expect(failed).toBe(`studioml_failed_${q}`);
      const [kept, ...more] = await drain(failed);
      expect(more).toEqual([]);
      expect(kept!.Body).toBe(body);
      const attrs = kept!.MessageAttributes!;
      expect(attrs.studio_queue!.StringValue).toBe(q);
      expect(attrs.studio_failed_deliveries!.StringValue).toBe("2");
      expect(attrs.studio_failed_because!.StringValue).toContain("gave up after 2 deliveries: storage still down");
      const reasons = JSON.parse(attrs.studio_reasons!.StringValue!) as Array<{ reason: string }>;
      expect(reasons.map((r) => r.reason)).toContain("storage still down");
      const served = await f.backend({ match: new RegExp(DEFAULT_QUEUE_MATCH) }).discover();
      expect(served).toContain(q);
      expect(served.some((n) => n.startsWith("studioml_failed"))).toBe(false);
    },
  );

  withFixture("reject goes there at once with its reason", async (f) => {
    const b = f.backend();
    const q = uniqueQueue("reject");
    await b.publish(q, '{"experiment": 5}');
    await (await b.open(q).receive())!.reject("bad request: experiment must be an object");
    const [kept] = await drain(failedQueueName(q));
    expect(kept!.Body).toBe('{"experiment": 5}');
    expect(kept!.MessageAttributes!.studio_failed_because!.StringValue).toBe(
      "bad request: experiment must be an object",
    );
    expect(await b.open(q).receive()).toBeUndefined();
  });

  test("long queue names get a failed place within SQS's 80 characters", () => {
    const long = `sqs_${"x".repeat(76)}`;
    const name = failedQueueName(long);
    expect(name.length).toBeLessThanOrEqual(80);
    expect(name.startsWith("studioml_failed_sqs_")).toBe(true);
    expect(failedQueueName(`${long}y`)).not.toBe(name);
  });
});

describe("sqs: settings, accounts and errors", () => {
  test("--sqs-certs accounts make a backend that serves the server; problems are listed without secrets", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sqs-certs-"));
    try {
      expect(SQS_OPTIONS.map((o) => o.name)).toEqual([
        "sqs-certs",
        "sqs-default-account",
        "aws-region",
        "sqs-endpoint",
        "sqs-visibility",
      ]);
      expect(sqsSettingsProblems({})).toEqual([]);
      expect(sqsBackendFromSettings({}, { info: () => undefined, warn: () => undefined })).toBeUndefined();
      expect(sqsSettingsProblems({ "sqs-endpoint": server.endpoint }, {})).toEqual([
        "--sqs-endpoint is set but neither --sqs-certs nor --sqs-default-account is",
      ]);
      expect(sqsSettingsProblems({ "sqs-certs": dir }, {})[0]).toContain("no account sub-directories");
      mkdirSync(join(dir, "acct1"));
      writeFileSync(join(dir, "acct1", "credentials"), "[default]\naws_access_key_id = AKIDTEST\n");
      const bad = sqsSettingsProblems({ "sqs-certs": dir }, {});
      expect(bad[0]).toContain("aws_secret_access_key");
      writeFileSync(
        join(dir, "acct1", "credentials"),
        "[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = s3cr3tValue\n",
      );
      writeFileSync(join(dir, "acct1", "config"), "[default]\nregion = eu-west-1\n");
      expect(
        sqsSettingsProblems({ "sqs-certs": dir, "sqs-visibility": 500 }, { AWS_ENDPOINT_URL_SQS: "ftp://x" }),
      ).toEqual([
        'SQS endpoint "ftp://x" must start with http:// or https://',
        "--sqs-visibility must be between 2s and 12h",
      ]);
      const settings = {
        "sqs-certs": dir,
        "max-deliveries": 3,
        "queue-match": new RegExp(DEFAULT_QUEUE_MATCH),
        "sqs-visibility": 60_000,
      };
      expect(sqsSettingsProblems(settings, { AWS_ENDPOINT_URL: server.endpoint })).toEqual([]);
      const b = sqsBackendFromSettings(
        settings,
        { info: () => undefined, warn: () => undefined },
        { AWS_ENDPOINT_URL: server.endpoint },
      )!;
      try {
        const q = uniqueQueue("certs");
        await b.publish(q, '{"via":"certs"}');
        expect(await b.discover()).toContain(q);
        const d = await b.open(q).receive();
        expect(text(d!.body)).toBe('{"via":"certs"}');
        await d!.ack();
      } finally {
        await b.close();
      }
      expect(parseIni("[profile x]\nregion=us-west-2\n").get("x")!.get("region")).toBe("us-west-2");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("refused credentials are permanent and say so; throttling and network faults are retryable", () => {
    const denied = Object.assign(new Error("Access to the resource is denied."), {
      name: "AccessDenied",
      $metadata: { httpStatusCode: 403 },
    });
    const fault = sqsFault(denied, "ReceiveMessage", "sqs_a in SQS account prod (us-east-1)");
    expect(fault).toBeInstanceOf(PermanentError);
    expect(fault.message).toContain("credentials were refused");
    expect(fault.message).toContain("ReceiveMessage on sqs_a");
    expect(
      sqsFault(Object.assign(new Error("slow down"), { name: "ThrottlingException" }), "SendMessage", "q"),
    ).toBeInstanceOf(RetryableError);
    expect(
      sqsFault(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), "ListQueues", "q"),
    ).toBeInstanceOf(RetryableError);
    expect(
      sqsFault(Object.assign(new Error("gone"), { name: "QueueDoesNotExist" }), "GetQueueUrl", "q"),
    ).toBeInstanceOf(QueueMissingError);
  });

  withFixture("an unreachable endpoint is a retryable error naming the endpoint", async (f) => {
    const b = f.backend({ endpoint: "http://127.0.0.1:9" });
    const err = await b.publish(uniqueQueue("down"), "{}").catch((e) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect(String(err.message)).toContain("127.0.0.1:9");
    expect(String(err.message)).not.toContain("test-secret");
  });

  withFixture("a queue that does not exist is simply empty", async (f) => {
    expect(await f.backend().open(uniqueQueue("nothere")).receive()).toBeUndefined();
  });
});
