// `submit` with S3 storage against a real local S3 server: the bucket is created, the workspace
// goes to blobstore/<sha256>.tar, the submitter's AWS credentials travel in the request like the
// python client's, `--wait` reads the log and results back from S3, and credentials that S3
// refuses fail clearly (at submit, and in the runner as a kept request).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { S3Store } from "../../src/storage/s3/s3-store.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  runBinary,
  RunnerProcess,
  SHARED_CACHE,
  tarNames,
} from "../helpers/e2e.ts";
import { startS3rver, type S3Server } from "../helpers/s3-server.ts";

const KEYS = { accessKey: "AKIASUBMITTER001", secretAccessKey: "submitter-secret-value" };
const BUCKET = "submit-bucket";

let server: S3Server;
beforeAll(async () => {
  server = await startS3rver({ keys: [KEYS] });
}, 60_000);
afterAll(async () => {
  await server?.stop();
});

const submitterEnv = (keys = KEYS) => ({
  AWS_ACCESS_KEY_ID: keys.accessKey,
  AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
  AWS_REGION: "us-west-2",
});

describe("submit with S3 storage", () => {
  test("--storage s3://host:port/bucket --s3-endpoint http://… --wait runs the example; credentials travel like the python client's", async () => {
    const sb = await makeSandbox("s3-submit", { cacheDir: SHARED_CACHE });
    const runner = new RunnerProcess(sb, ["--limit-tasks", "2"]);
    try {
      const storageFlags = ["--storage", `s3://${server.host}/${BUCKET}`, "--s3-endpoint", server.endpoint];
      const common = [
        "submit",
        "--queue-root",
        sb.queueRoot,
        ...storageFlags,
        "--pythonver",
        "3.11",
        "--workspace",
        join(REPO, "examples/hello"),
      ];

      const ok = runBinary([...common, "--wait", "--wait-timeout", "5m", "train.py", "--steps", "2"], {
        env: submitterEnv(),
      });
      expect(ok.stderr).toBe("");
      expect(ok.code).toBe(0);
      const key = ok.stdout.split("\n")[0]!;
      expect(ok.stdout).toContain("step 2: loss=");

      const store = new S3Store({ credentials: { aws: KEYS }, endpoint: server.endpoint });
      const modeldir = join(sb.dir, "modeldir.tar");
      await pipeline(
        await store.get(`s3://${server.host}/${BUCKET}/experiments/${key}/modeldir.tar`),
        createWriteStream(modeldir),
      );
      expect(tarNames(modeldir)).toContain("model.json");
      expect(await store.head(`s3://${server.host}/${BUCKET}/experiments/${key}/_results.tar`)).toBeDefined();
      expect(readdirSync(sb.storageRoot)).toEqual([]);

      // The request as queued (on a queue no runner serves), in the python client's format.
      const held = runBinary([...common, "--queue", "held_s3", "train.py"], { env: submitterEnv() });
      expect(held.code).toBe(0);
      const [file] = filesIn(join(sb.queueRoot, "held_s3"));
      const msg = JSON.parse(readFileSync(join(sb.queueRoot, "held_s3", file!), "utf8"));
      const ws = msg.experiment.artifacts.workspace;
      expect(ws.qualified).toMatch(new RegExp(`^s3://${server.host}/${BUCKET}/blobstore/[0-9a-f]{64}\\.tar$`));
      expect(ws.bucket).toBe(BUCKET);
      expect(ws.credentials).toEqual({
        aws: { access_key: KEYS.accessKey, secret_access_key: KEYS.secretAccessKey, region: "us-west-2" },
      });
      expect(msg.experiment.artifacts.modeldir.credentials.aws.access_key).toBe(KEYS.accessKey);
      expect(msg.config.storage).toMatchObject({ type: "s3", endpoint: server.endpoint, bucket: BUCKET });

      // The same request with credentials S3 refuses: kept in the failed place, saying why.
      const wrong = JSON.parse(JSON.stringify(msg));
      for (const a of Object.values<any>(wrong.experiment.artifacts)) a.credentials.aws.access_key = "AKIAUNKNOWN00000";
      wrong.config.storage.credentials.aws.access_key = "AKIAUNKNOWN00000";
      const id = enqueue(sb.queueRoot, "local_s3wrong", wrong);
      expect(await runner.exited).toBe(0);
      const reason = JSON.parse(
        readFileSync(join(sb.queueRoot, ".failed", "local_s3wrong", `${id}.reason.json`), "utf8"),
      );
      const text = JSON.stringify(reason);
      expect(text).toContain("refused the request's credentials");
      expect(text).toContain(`bucket \\"${BUCKET}\\"`);
      expect(text).not.toContain(KEYS.secretAccessKey);
    } finally {
      await runner.stop();
    }
  }, 600_000);

  test("submit with credentials S3 refuses exits 1 with a clear message", async () => {
    const sb = await makeSandbox("s3-submit-refused");
    const r = runBinary(
      [
        "submit",
        "--queue-root",
        sb.queueRoot,
        "--storage",
        `s3://${server.host}/${BUCKET}`,
        "--s3-endpoint",
        server.endpoint,
        "--workspace",
        join(REPO, "examples/hello"),
        "train.py",
      ],
      { env: submitterEnv({ accessKey: "AKIANOBODY000000", secretAccessKey: "nobody-secret" }) },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot store the workspace");
    expect(r.stderr).toContain(`refused the request's credentials`);
    expect(r.stderr).not.toContain("nobody-secret");
    expect(filesIn(join(sb.queueRoot, "local"))).toEqual([]);
  }, 120_000);
});
