// The captured client message published to Google Pub/Sub (the real emulator), with the
// python client's topic/subscription naming, runs from the compiled binary: once with file:
// storage, and once with its artifacts in GCS (the wire-level JSON API server of test/helpers).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { createWriteStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { PubsubQueueBackend } from "../../src/queue/pubsub/pubsub-queue.ts";
import { GcsClients } from "../../src/storage/gcs/gcs-clients.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import {
  FIXTURE,
  fixtureOnFileStorage,
  jobPrinted,
  makeSandbox,
  makeTar,
  REPO,
  runBinaryAsync,
  RunnerProcess,
  sha256File,
  SHARED_CACHE,
  tarMember,
  tarNames,
  withFreshKey,
} from "../helpers/e2e.ts";
import { waitFor } from "../helpers/wait-for.ts";
import { startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { pubsubEmulatorInstalled, startPubsubEmulator, type PubsubEmulator } from "../helpers/pubsub-emulator.ts";

const available = pubsubEmulatorInstalled() || !!process.env.CI;
if (!pubsubEmulatorInstalled())
  console.warn("!!! the Pub/Sub emulator is not installed: the Pub/Sub e2e test cannot run here");
let emulator: PubsubEmulator;
let gcs: GcsTestServer;
let gcsClients: GcsClients;
const BUCKET = "studioml-artifacts";
beforeAll(async () => {
  if (available) emulator = await startPubsubEmulator();
  gcs = await startGcsServer({ buckets: [BUCKET] });
  gcsClients = new GcsClients({ apiEndpoint: gcs.endpoint });
}, 120_000);
afterAll(async () => {
  await emulator?.stop();
  await gcs?.stop();
});

describe("Google Pub/Sub", () => {
  test.skipIf(!available)(
    "the captured client message runs from a Pub/Sub topic through the compiled binary",
    async () => {
      const sb = await makeSandbox("pubsub", { cacheDir: SHARED_CACHE });
      const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
      const queue = `pubsub_fixture_${Date.now()}`;
      const train =
        "import json, sys\nprint('argv:', json.dumps(sys.argv[1:]))\n" +
        "print('data:', open('data/input.txt').read().strip())\n";
      const { message, key, experimentDir } = fixtureOnFileStorage(
        sb.storageRoot,
        { "train.py": train, "data/input.txt": "from pubsub\n" },
        (m) => {
          m.experiment.pythonenv = [];
        },
      );
      const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
      await producer.publish(queue, JSON.stringify(message)); // topic <queue>, subscription <queue>_sub
      await producer.close();
      const runner = new RunnerProcess(
        sb,
        [
          "--pubsub-project",
          project,
          "--queue-match",
          `^${queue}$`,
          "--limit-tasks",
          "1",
          "--file-storage-roots",
          sb.storageRoot,
        ],
        {
          PUBSUB_EMULATOR_HOST: emulator.host,
        },
      );
      expect(await runner.exited).toBe(0);
      const log = tarMember(join(experimentDir, "output.tar"));
      expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
      expect(log).toContain("data: from pubsub");
      expect(log).toContain(`from queue ${queue}`);
      expect(log).toContain("exited with code 0");
      expect(runner.stderr).toContain(`experiment ${key} finished`);
      const after = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
      expect(await after.open(queue).receive()).toBeUndefined();
      await after.close();
    },
    300_000,
  );
});

describe("Google Pub/Sub + GCS", () => {
  test.skipIf(!available)(
    "the captured client message runs from Pub/Sub with its artifacts in GCS",
    async () => {
      const sb = await makeSandbox("pubsub-gcs", { cacheDir: SHARED_CACHE });
      const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
      const queue = `pubsub_gcs_${Date.now()}`;
      const train =
        "import json, os, sys\nprint('argv:', json.dumps(sys.argv[1:]))\n" +
        "print('data:', open('data/input.txt').read().strip())\n" +
        "m = json.load(open(os.environ['STUDIOML_ARTIFACT_MAPPING']))\n" +
        "open(os.path.join(m['modeldir'], 'weights.txt'), 'w').write('w=3\\n')\n";
      // The fixture, its locations moved to gs://<bucket>/<key>: only the storage changes.
      const message = JSON.parse(readFileSync(FIXTURE, "utf8"));
      const tarPath = join(sb.dir, "workspace.tar");
      makeTar(tarPath, { "train.py": train, "data/input.txt": "from gcs\n" });
      const exp = message.experiment;
      exp.artifacts.workspace.key = `blobstore/${sha256File(tarPath)}.tar`;
      for (const a of Object.values<any>(exp.artifacts)) {
        a.qualified = `gs://${BUCKET}/${a.key}`;
        delete a.credentials;
      }
      exp.time_added = Date.now() / 1000;
      exp.pythonenv = [];
      message.config.storage = { type: "gcs", bucket: BUCKET };
      const store = new GcsStore(process.env, {}, gcsClients);
      await store.put(exp.artifacts.workspace.qualified, Readable.from([readFileSync(tarPath)]));

      const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
      await producer.publish(queue, JSON.stringify(message));
      await producer.close();
      // gs:// is always the runner's identity: lent to this queue for the bucket explicitly.
      const runner = new RunnerProcess(
        sb,
        [
          "--pubsub-project",
          project,
          "--gcs-endpoint",
          gcs.endpoint,
          "--storage-identity",
          "runner",
          "--storage-identity-allow",
          `pubsub:${queue}=gs://${BUCKET}/`,
          "--queue-match",
          `^${queue}$`,
          "--limit-tasks",
          "1",
        ],
        {
          PUBSUB_EMULATOR_HOST: emulator.host,
        },
      );
      expect(await runner.exited).toBe(0);
      const out = join(sb.dir, "output.tar");
      await pipeline(await store.get(`gs://${BUCKET}/experiments/${exp.key}/output.tar`), createWriteStream(out));
      const log = tarMember(out);
      expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
      expect(log).toContain("data: from gcs");
      expect(log).toContain("exited with code 0");
      const modeldir = join(sb.dir, "modeldir.tar");
      await pipeline(
        await store.get(`gs://${BUCKET}/experiments/${exp.key}/modeldir.tar`),
        createWriteStream(modeldir),
      );
      expect(tarNames(modeldir)).toContain("weights.txt");
      // The wire: the runner downloaded with alt=media and uploaded with resumable sessions.
      expect(
        gcs.requests.some((r) => r.method === "GET" && r.query.alt === "media" && r.path.includes("blobstore")),
      ).toBe(true);
      expect(
        gcs.requests.some(
          (r) => r.method === "POST" && r.query.uploadType === "resumable" && r.query.name?.endsWith("modeldir.tar"),
        ),
      ).toBe(true);
    },
    300_000,
  );
});

describe("Google Pub/Sub: ack deadlines and crashes, from the binary", () => {
  test.skipIf(!available)(
    "a job longer than three ack deadlines is not redelivered while the runner " +
      "lives; after SIGKILL it is, and completes",
    async () => {
      const sb = await makeSandbox("pubsub-long", { cacheDir: SHARED_CACHE });
      const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
      const queue = `pubsub_long_${Date.now()}`;
      const script =
        "import os, time\nprint('attempt', flush=True)\ntime.sleep(float(os.environ['SLEEP_S']))\n" +
        "print('complete', flush=True)\n";
      const env = { PUBSUB_EMULATOR_HOST: emulator.host };
      const args = (q: string, extra: string[]) => [
        "--pubsub-project",
        project,
        "--queue-match",
        `^${q}$`,
        "--pubsub-ack-deadline",
        "10s",
        "--file-storage-roots",
        sb.storageRoot,
        ...extra,
      ];
      const publish = async (q: string, sleepS: number) => {
        // A key of its own each time: the second run of one key would be refused as a replay.
        const exp = withFreshKey(
          fixtureOnFileStorage(sb.storageRoot, { "train.py": script, "data/input.txt": "x\n" }, (m) => {
            m.experiment.pythonenv = [];
            m.config.env = { SLEEP_S: String(sleepS) };
          }),
        );
        const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
        await producer.publish(q, JSON.stringify(exp.message));
        await producer.close();
        return exp;
      };

      // 32 s of work against a 10 s deadline: a second runner must get nothing meanwhile.
      const long = await publish(queue, 32);
      const a = new RunnerProcess(sb, args(queue, ["--limit-tasks", "1"]), env);
      await a.waitForLog(/starting experiment/);
      const b = new RunnerProcess(sb, args(queue, ["--limit-idle-duration", "36s"]), env);
      expect(await a.exited).toBe(0);
      expect(await b.exited).toBe(0);
      expect(b.stderr).not.toContain("starting experiment");
      const log = tarMember(join(long.experimentDir, "output.tar"));
      expect(log).toContain("delivery 1 from queue");
      expect(log).toContain("complete");

      // Again, but the runner is SIGKILLed mid-job: the message comes back once its deadline runs out.
      const queue2 = `${queue}_k`;
      const again = await publish(queue2, 6);
      const killed = new RunnerProcess(sb, args(queue2, []), env);
      await killed.waitForLog(/starting experiment/);
      await waitFor('the job\'s "attempt" in its live output', () => jobPrinted(sb.workDir, "attempt"));
      killed.child.kill("SIGKILL");
      await killed.exited;
      const rescuer = new RunnerProcess(sb, args(queue2, ["--limit-tasks", "1"]), env);
      expect(await rescuer.exited).toBe(0);
      const log2 = tarMember(join(again.experimentDir, "output.tar"));
      expect(log2).toContain("complete");
      expect(log2).toContain("exited with code 0");
      const after = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
      expect(await after.open(queue2).receive()).toBeUndefined();
      await after.close();
    },
    300_000,
  );
});

describe("submit to Pub/Sub with GCS storage", () => {
  test.skipIf(!available)(
    "submit --pubsub-project --storage gs://bucket --wait runs the example through a runner",
    async () => {
      const sb = await makeSandbox("pubsub-submit", { cacheDir: SHARED_CACHE });
      const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
      const queue = `pubsub_submit_${Date.now()}`;
      const env = { PUBSUB_EMULATOR_HOST: emulator.host };
      const runner = new RunnerProcess(
        sb,
        [
          "--pubsub-project",
          project,
          "--gcs-endpoint",
          gcs.endpoint,
          "--storage-identity",
          "runner",
          "--storage-identity-allow",
          `pubsub:${queue}=gs://${BUCKET}/`,
          "--queue-match",
          `^${queue}$`,
          "--limit-tasks",
          "1",
        ],
        env,
      );
      try {
        // Not spawnSync: the GCS server lives in this process and must keep answering.
        const r = await runBinaryAsync(
          [
            "submit",
            "--pubsub-project",
            project,
            "--queue",
            queue,
            "--storage",
            `gs://${BUCKET}`,
            "--gcs-endpoint",
            gcs.endpoint,
            "--pythonver",
            "3.11",
            "--workspace",
            join(REPO, "examples/hello"),
            "--wait",
            "--wait-timeout",
            "5m",
            "train.py",
            "--steps",
            "2",
          ],
          { env, timeoutMs: 240_000 },
        );
        if (r.code !== 0) console.log(`submit: ${r.code}\n${r.stdout}\n${r.stderr}\nrunner:\n${runner.stderr}`);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        const key = r.stdout.split("\n")[0]!;
        expect(r.stdout).toContain("step 2: loss=");
        expect(await runner.exited).toBe(0);
        expect(
          gcs.objects.has(`${BUCKET}/experiments/${key}/modeldir.tar`) ||
            [...gcs.objects.keys()].some((k) => k.includes(`experiments/${key}/modeldir.tar`)),
        ).toBe(true);
        expect([...gcs.objects.keys()].some((k) => /blobstore\/[0-9a-f]{64}\.tar$/.test(k))).toBe(true);
      } finally {
        await runner.stop();
      }
    },
    300_000,
  );
});
