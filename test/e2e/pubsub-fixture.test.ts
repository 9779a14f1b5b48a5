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
import { configureGcs } from "../../src/storage/gcs/gcs-clients.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import { FIXTURE, fixtureOnFileStorage, makeSandbox, makeTar, RunnerProcess, SHARED_CACHE, sha256File, tarMember, tarNames } from "../helpers/e2e.ts";
import { startGcsServer, type GcsTestServer } from "../helpers/gcs-server.ts";
import { pubsubEmulatorInstalled, startPubsubEmulator, type PubsubEmulator } from "../helpers/pubsub-emulator.ts";

const available = pubsubEmulatorInstalled() || !!process.env.CI;
if (!pubsubEmulatorInstalled()) console.warn("!!! the Pub/Sub emulator is not installed: the Pub/Sub e2e test cannot run here");
let emulator: PubsubEmulator;
let gcs: GcsTestServer;
const BUCKET = "studioml-artifacts";
beforeAll(async () => {
  if (available) emulator = await startPubsubEmulator();
  gcs = await startGcsServer({ buckets: [BUCKET] });
  configureGcs({ apiEndpoint: gcs.endpoint });
}, 120_000);
afterAll(async () => {
  await emulator?.stop();
  await gcs?.stop();
  configureGcs({});
});

describe("Google Pub/Sub", () => {
  test.skipIf(!available)("the captured client message runs from a Pub/Sub topic through the compiled binary", async () => {
    const sb = await makeSandbox("pubsub", { cacheDir: SHARED_CACHE });
    const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
    const queue = `pubsub_fixture_${Date.now()}`;
    const train = "import json, sys\nprint('argv:', json.dumps(sys.argv[1:]))\nprint('data:', open('data/input.txt').read().strip())\n";
    const { message, key, experimentDir } = fixtureOnFileStorage(sb.storageRoot, { "train.py": train, "data/input.txt": "from pubsub\n" }, (m) => {
      m.experiment.pythonenv = [];
    });
    const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
    await producer.publish(queue, JSON.stringify(message)); // topic <queue>, subscription <queue>_sub
    await producer.close();
    const runner = new RunnerProcess(sb, ["--pubsub-project", project, "--queue-match", `^${queue}$`, "--limit-tasks", "1"], {
      PUBSUB_EMULATOR_HOST: emulator.host,
    });
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
  }, 300_000);
});

describe("Google Pub/Sub + GCS", () => {
  test.skipIf(!available)("the captured client message runs from Pub/Sub with its artifacts in GCS", async () => {
    const sb = await makeSandbox("pubsub-gcs", { cacheDir: SHARED_CACHE });
    const project = `studio-e2e-${randomUUID().slice(0, 8)}`;
    const queue = `pubsub_gcs_${Date.now()}`;
    const train =
      "import json, os, sys\nprint('argv:', json.dumps(sys.argv[1:]))\nprint('data:', open('data/input.txt').read().strip())\n" +
      "m = json.load(open(os.environ['STUDIOML_ARTIFACT_MAPPING']))\nopen(os.path.join(m['modeldir'], 'weights.txt'), 'w').write('w=3\\n')\n";
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
    const store = new GcsStore();
    await store.put(exp.artifacts.workspace.qualified, Readable.from([readFileSync(tarPath)]));

    const producer = new PubsubQueueBackend({ projectId: project, maxDeliveries: 3 });
    await producer.publish(queue, JSON.stringify(message));
    await producer.close();
    const runner = new RunnerProcess(sb, ["--pubsub-project", project, "--gcs-endpoint", gcs.endpoint, "--queue-match", `^${queue}$`, "--limit-tasks", "1"], {
      PUBSUB_EMULATOR_HOST: emulator.host,
    });
    expect(await runner.exited).toBe(0);
    const out = join(sb.dir, "output.tar");
    await pipeline(await store.get(`gs://${BUCKET}/experiments/${exp.key}/output.tar`), createWriteStream(out));
    const log = tarMember(out);
    expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
    expect(log).toContain("data: from gcs");
    expect(log).toContain("exited with code 0");
    const modeldir = join(sb.dir, "modeldir.tar");
    await pipeline(await store.get(`gs://${BUCKET}/experiments/${exp.key}/modeldir.tar`), createWriteStream(modeldir));
    expect(tarNames(modeldir)).toContain("weights.txt");
    // The wire: the runner downloaded with alt=media and uploaded with resumable sessions.
    expect(gcs.requests.some((r) => r.method === "GET" && r.query.alt === "media" && r.path.includes("blobstore"))).toBe(true);
    expect(gcs.requests.some((r) => r.method === "POST" && r.query.uploadType === "resumable" && r.query.name?.endsWith("modeldir.tar"))).toBe(true);
  }, 300_000);
});
