// The captured studioml client message, with its S3 locations pointed at a real local S3 server
// (only host:port, the workspace key and time_added change), runs through the compiled binary:
// the workspace comes from S3, the results land at experiments/<key>/<label>.tar in S3, and the
// message is acked only once they are there.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createWriteStream, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { enqueue, filesIn, makeSandbox, RunnerProcess, SHARED_CACHE, tarMember, tarNames } from "../helpers/e2e.ts";
import { CLIENT_KEYS, clientStore, FIXTURE_BUCKET, fixtureOnS3, RESULT_LABELS } from "../helpers/fixture-s3.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";

const TRAIN = `
import json, os, sys
print("argv:", json.dumps(sys.argv[1:]))
print("data:", open("data/input.txt").read().strip())
print("env ACC_FROM_CONFIG_ENV =", os.environ.get("ACC_FROM_CONFIG_ENV"))
print("aws secret visible:", "exampleSecretKey123" in json.dumps(dict(os.environ)))
mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
open(os.path.join(mapping["modeldir"], "weights.txt"), "w").write("w=42\\n")
`;

let server: S3Server;
beforeAll(async () => {
  server = await startS3rver({ keys: [CLIENT_KEYS], buckets: [FIXTURE_BUCKET] });
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

const store = () => clientStore(server);

async function download(location: string, dest: string): Promise<string> {
  await pipeline(await store().get(location), createWriteStream(dest));
  return dest;
}

describe("captured studioml client message on S3 storage", () => {
  test("runs through the compiled binary: workspace from S3, results to S3, acked after the upload", async () => {
    const sb = await makeSandbox("s3-fixture", { cacheDir: SHARED_CACHE });
    const {
      message,
      key,
      location: loc,
    } = await fixtureOnS3(server, sb, { "train.py": TRAIN, "data/input.txt": "hello from s3\n" });
    const queue = "local_s3fixture";
    const id = enqueue(sb.queueRoot, queue, message);
    // Idle for a while after the ack, so the moment of the ack is observed while the runner lives.
    const runner = new RunnerProcess(sb, ["--limit-idle-duration", "3s"]);

    // Whenever the claim is gone (acked), every result must already be in S3.
    let ackedWithResults: boolean | undefined;
    const inflight = join(sb.queueRoot, ".inflight", queue);
    let claimed = false;
    while (runner.child.exitCode === null) {
      const held = filesIn(inflight).some((n) => n.startsWith(id));
      if (held) claimed = true;
      if (claimed && !held && !existsSync(join(sb.queueRoot, queue, id))) {
        const heads = await Promise.all(RESULT_LABELS.map((l) => store().head(loc(l))));
        ackedWithResults = heads.every((h) => h !== undefined);
        break;
      }
      await Bun.sleep(20);
    }
    expect(await runner.exited).toBe(0);
    expect(claimed).toBe(true);
    expect(ackedWithResults).toBe(true);

    const log = tarMember(await download(loc("output"), join(sb.dir, "output.tar")));
    expect(log).toContain('argv: ["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]');
    expect(log).toContain("data: hello from s3");
    expect(log).toContain("env ACC_FROM_CONFIG_ENV = yes");
    expect(log).toContain("aws secret visible: False");
    expect(log).toContain("exited with code 0");
    expect(log).not.toContain(CLIENT_KEYS.secretAccessKey);
    const modeldir = await download(loc("modeldir"), join(sb.dir, "modeldir.tar"));
    expect(tarNames(modeldir)).toContain("weights.txt");
    expect(tarMember(modeldir, "weights.txt")).toBe("w=42\n");
    for (const label of RESULT_LABELS) expect(await store().head(loc(label))).toBeDefined();

    // Acked: nothing queued, in flight or failed; the runner did not write to local storage.
    expect(filesIn(join(sb.queueRoot, queue))).toEqual([]);
    expect(filesIn(inflight)).toEqual([]);
    expect(filesIn(join(sb.queueRoot, ".failed", queue))).toEqual([]);
    expect(readdirSync(sb.storageRoot)).toEqual([]);
    expect(runner.stderr).toContain(`experiment ${key} finished`);
  }, 600_000);
});
