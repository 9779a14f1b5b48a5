// With S3 storage the runner acks only after the results are in S3: when the S3 server goes away
// while the experiment runs, the final upload fails and the request is requeued, not acked; once
// the server is back (same port, same data) the next delivery finishes and is acked.

import { afterAll, describe, expect, test } from "bun:test";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  makeTar,
  RunnerProcess,
  SHARED_CACHE,
  sha256File,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";

const BUCKET = "studioml-artifacts";
const KEYS = { accessKey: "AKIAACKTEST0001", secretAccessKey: "ack-test-secret" };

const MAIN = `
import json, os, time
open(os.environ["RUNNING_FLAG"], "w").write("running")
deadline = time.time() + 120
while not os.path.exists(os.environ["RELEASE_FLAG"]) and time.time() < deadline:
    time.sleep(0.1)
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "weights.txt"), "w").write("trained\\n")
print("experiment done")
`;
import { waitFor } from "../helpers/wait-for.ts";

const dataDir = mkdtempSync(join(tmpdir(), "s3-ack-"));
let server: S3Server | undefined;
afterAll(async () => {
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("S3 storage: ack only after the final upload", () => {
  test("S3 down at the end of the run: requeued, not acked; S3 back: finished and acked with the results in S3", async () => {
    server = await startS3rver({ keys: [KEYS], buckets: [BUCKET], dataDir });
    const port = server.port;
    const sb = await makeSandbox("s3-ack", { cacheDir: SHARED_CACHE });
    const store = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
    const running = join(sb.dir, "running");
    const release = join(sb.dir, "release");

    // A small experiment from the fixture, moved onto this S3 server.
    const exp = simpleExperiment(sb.storageRoot, { "main.py": MAIN }, (m) => {
      m.config.env = { RUNNING_FLAG: running, RELEASE_FLAG: release };
      m.config.storage = {
        type: "s3",
        endpoint: server!.endpoint,
        bucket: BUCKET,
        credentials: { aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey } },
      };
      m.config.saveWorkspaceFrequency = "1h";
    });
    const msg = exp.message;
    const tarPath = join(sb.dir, "ws.tar");
    makeTar(tarPath, { "main.py": MAIN });
    const wsKey = `blobstore/${sha256File(tarPath)}.tar`;
    for (const [label, a] of Object.entries<any>(msg.experiment.artifacts)) {
      if (label === "workspace") a.key = wsKey;
      a.qualified = `s3://${server.host}/${BUCKET}/${a.key}`;
      a.bucket = BUCKET;
    }
    await store.put(msg.experiment.artifacts.workspace.qualified, Readable.from([readFileSync(tarPath)]));
    const key = msg.experiment.key as string;
    const loc = (label: string) => `s3://${server!.host}/${BUCKET}/experiments/${key}/${label}.tar`;

    const queue = "local_s3ack";
    const id = enqueue(sb.queueRoot, queue, msg);
    // --sandbox none on purpose: the job and the test signal each other through two files outside
    // the job's directory (RUNNING_FLAG, RELEASE_FLAG), which the sandbox rightly keeps from it.
    const runner = new RunnerProcess(sb, ["--sandbox", "none", "--max-deliveries", "200"]);
    try {
      await waitFor("the experiment to run", () => existsSync(running));
      await server.stop({ keepData: true });
      writeFileSync(release, "go");

      await runner.waitForLog(/final upload failed.*requeued|requeued/, 120_000);
      expect(runner.stderr).not.toContain(`experiment ${key} finished`);
      // Not acked: the request is back in the queue or held again, never gone.
      expect(
        filesIn(join(sb.queueRoot, queue)).includes(id) ||
          filesIn(join(sb.queueRoot, ".inflight", queue)).some((n) => n.startsWith(id)),
      ).toBe(true);
      expect(filesIn(join(sb.queueRoot, ".failed", queue))).toEqual([]);

      server = await startS3rver({ keys: [KEYS], dataDir, port });
      await runner.waitForLog(new RegExp(`experiment ${key} finished`), 180_000);
      await waitFor("the ack", () => filesIn(join(sb.queueRoot, ".inflight", queue)).length === 0);

      const modeldir = join(sb.dir, "modeldir.tar");
      await pipeline(await store.get(loc("modeldir")), createWriteStream(modeldir));
      expect(tarMember(modeldir, "weights.txt")).toBe("trained\n");
      const output = join(sb.dir, "output.tar");
      await pipeline(await store.get(loc("output")), createWriteStream(output));
      expect(tarMember(output)).toContain("experiment done");
      expect(filesIn(join(sb.queueRoot, queue))).toEqual([]);
      expect(filesIn(join(sb.queueRoot, ".failed", queue))).toEqual([]);
      expect(runner.stderr).toMatch(/final upload failed/);
    } finally {
      await runner.stop();
    }
  }, 600_000);
});
