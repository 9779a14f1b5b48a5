// One experiment at a time through a warm runner (its python environment and workspace already
// cached, the runner idle and waiting when each is published): the clock readings from which
// dispatch and completion latency are taken. Shared by bench/dispatch.ts and bench/completion.ts,
// and made once per backend when both run.

import { rmSync } from "node:fs";
import { enqueue, makeSandbox, type Sandbox } from "../../test/helpers/e2e.ts";
import {
  AMQP_URL,
  deleteQueues,
  ensureRabbitMQ,
  publishLikeClient,
  rabbitMQAvailable,
  uniqueQueue,
} from "../../test/helpers/rabbitmq.ts";
import { experimentLog, scriptClock, trivialMessages } from "./experiments.ts";
import { BenchRunner } from "./runner.ts";

export type QueueKind = "local" | "rabbitmq";

export type Sample = {
  /** Date.now() just before the message was published. */
  publishMs: number;
  /** The script's clock at its first output line. */
  firstLineMs: number;
  /** The script's clock at its last line, just before it exits. */
  scriptEndMs: number;
  /** The runner's timestamp of "experiment … finished", logged right after the ack. */
  ackedMs: number;
};

export type SequentialResult = { kind: QueueKind; samples: Sample[]; skipped?: string };

/** How the runner isolates the experiments it times: the default bubblewrap sandbox, or --sandbox none. */
export type SandboxMode = "bwrap" | "none";

/** Idle time before each publish, so the runner is waiting for work, not finishing the last one. */
const IDLE_BEFORE_PUBLISH_MIN_MS = 300;
const IDLE_BEFORE_PUBLISH_SPREAD_MS = 400;

const cache = new Map<string, Promise<SequentialResult>>();

export function sequentialSamples(
  kind: QueueKind,
  runs: number,
  sandbox: SandboxMode = "bwrap",
): Promise<SequentialResult> {
  const id = `${kind}:${runs}:${sandbox}`;
  let p = cache.get(id);
  if (!p) cache.set(id, (p = measure(kind, runs, sandbox)));
  return p;
}

type Publisher = {
  args: (sb: Sandbox) => string[];
  publish: (sb: Sandbox, body: object) => Promise<void>;
  cleanup: () => Promise<void>;
};

async function publisherFor(kind: QueueKind): Promise<Publisher | string> {
  if (kind === "local") {
    const queue = "local_bench";
    return {
      args: (sb) => ["--file-storage-roots", sb.storageRoot],
      publish: async (sb, body) => void enqueue(sb.queueRoot, queue, body),
      cleanup: async () => undefined,
    };
  }
  if (!(await rabbitMQAvailable())) return "RabbitMQ is not installed (apt-get install rabbitmq-server)";
  await ensureRabbitMQ();
  const queue = uniqueQueue("bench");
  await publishLikeClient(queue, []); // declares and binds the queue, so discovery finds it at start
  return {
    args: (sb) => ["--amqp-url", AMQP_URL, "--queue-match", `^${queue}$`, "--file-storage-roots", sb.storageRoot],
    publish: (_sb, body) => publishLikeClient(queue, [body]),
    cleanup: () => deleteQueues([queue]),
  };
}

async function measure(kind: QueueKind, runs: number, sandbox: SandboxMode): Promise<SequentialResult> {
  const publisher = await publisherFor(kind);
  if (typeof publisher === "string") return { kind, samples: [], skipped: publisher };
  const sb = await makeSandbox(`bench-seq-${kind}-${sandbox}`);
  const messages = trivialMessages(sb.storageRoot, runs + 1);
  const runner = new BenchRunner(sb, [...publisher.args(sb), "--max-cores", "2", "--sandbox", sandbox]);
  const samples: Sample[] = [];
  try {
    // Warm-up: builds the (empty) python environment and caches the workspace.
    await publisher.publish(sb, messages[0]!.message);
    await runner.waitFor(new RegExp(`experiment ${messages[0]!.key} finished`), 300_000);
    for (const m of messages.slice(1)) {
      await Bun.sleep(IDLE_BEFORE_PUBLISH_MIN_MS + Math.random() * IDLE_BEFORE_PUBLISH_SPREAD_MS);
      const publishMs = Date.now();
      await publisher.publish(sb, m.message);
      const done = await runner.waitFor(new RegExp(`experiment ${m.key} finished`), 60_000);
      const clock = scriptClock(experimentLog(m));
      samples.push({ publishMs, firstLineMs: clock.firstMs, scriptEndMs: clock.endMs, ackedMs: done.timeMs });
    }
  } finally {
    await runner.stop();
    await publisher.cleanup().catch(() => undefined);
    rmSync(sb.dir, { recursive: true, force: true });
  }
  return { kind, samples };
}
