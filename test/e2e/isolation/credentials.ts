// Whose identity serves a request's storage, from the compiled binary (issue #14, holes 6 and 12):
// the runner holds AWS keys for bucket B in its environment, on a moto server that verifies every
// signature. A request without credentials is refused (kept in the failed place, the flag named)
// and B is listed unchanged; with --storage-identity runner only the allow-listed prefix of the
// allowed queues is served; a request's own wrong keys are never replaced by the runner's; the
// experiment record in B holds no secret; gs:// with the runner's GCS access is refused by default.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  type Sandbox,
} from "../../helpers/e2e.ts";
import { startGcsServer, type GcsTestServer } from "../../helpers/gcs-server.ts";
import { motoAvailable, startMoto, type S3Server } from "../../helpers/s3-server.ts";

const B = "team-bucket";
const HAVE_MOTO = motoAvailable();
if (!HAVE_MOTO)
  console.warn("\n*** moto_server or boto3 is missing: the storage-identity isolation tests are SKIPPED ***\n");

const SCRIPT = "print('the script ran', flush=True)\nopen('ran.txt', 'w').write('ran')\n";

let moto: S3Server;
let s3: S3Client;

/** Every object under `prefix` in B with its ETag, read with the runner's (valid) keys. */
async function listing(prefix: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  // Listed by the first path segment and filtered here: moto checks signatures of a Prefix holding "/" its own way.
  const r = await s3.send(new ListObjectsV2Command({ Bucket: B, Prefix: prefix.split("/")[0] }));
  for (const o of r.Contents ?? []) if (o.Key!.startsWith(prefix)) out[o.Key!] = o.ETag ?? "";
  return out;
}

async function objectText(key: string): Promise<string | undefined> {
  try {
    const r = await s3.send(new GetObjectCommand({ Bucket: B, Key: key }));
    return await r.Body!.transformToString();
  } catch {
    return undefined;
  }
}

/**
 * A simple experiment whose artifacts live in B under `prefix` on moto, its workspace uploaded
 * there; `keys`: the credentials the request carries on every artifact (none by default).
 */
async function experimentInB(
  sb: Sandbox,
  prefix: string,
  keys?: { accessKey: string; secretAccessKey: string },
  edit?: (m: Record<string, any>) => void,
) {
  const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
    delete m.config.database;
    for (const a of Object.values<any>(m.experiment.artifacts)) {
      a.qualified = `s3://${moto.host}/${B}/${prefix}/${a.key}`;
      a.bucket = B;
      if (keys)
        a.credentials = {
          aws: { access_key: keys.accessKey, secret_access_key: keys.secretAccessKey, region: "us-east-1" },
        };
    }
    m.config.storage = { type: "s3", endpoint: moto.endpoint, bucket: B };
    edit?.(m);
  });
  const ws = exp.message.experiment.artifacts.workspace;
  const tar = readFileSync(join(sb.storageRoot, "studioml-artifacts", ws.key));
  await s3.send(new PutObjectCommand({ Bucket: B, Key: `${prefix}/${ws.key}`, Body: tar }));
  return { ...exp, outputKey: `${prefix}/experiments/${exp.key}/output.tar` };
}

/** The reason the runner kept beside a refused request in the failed place. */
const reasonOf = (sb: Sandbox, queue: string, id: string): string =>
  JSON.parse(readFileSync(join(sb.queueRoot, ".failed", queue, `${id}.reason.json`), "utf8")).summary;

describe.skipIf(!HAVE_MOTO)(
  "isolation: whose identity serves a request's storage (s3 on moto, signatures verified)",
  () => {
    let runnerEnv: Record<string, string>;
    beforeAll(async () => {
      moto = await startMoto({ verifySignatures: true, buckets: [B] });
      const user = moto.user!;
      s3 = new S3Client({
        endpoint: moto.endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        credentials: { accessKeyId: user.accessKey, secretAccessKey: user.secretAccessKey },
      });
      // The runner's own identity: valid keys for B, in its environment.
      runnerEnv = {
        AWS_ACCESS_KEY_ID: user.accessKey,
        AWS_SECRET_ACCESS_KEY: user.secretAccessKey,
        AWS_REGION: "us-east-1",
      };
    }, 60_000);
    afterAll(async () => {
      s3?.destroy();
      await moto?.stop();
    });

    test("by default a request without credentials is refused, naming artifact, location and flag; B is unchanged", async () => {
      const sb = await makeSandbox("iso-cred-default", { cacheDir: SHARED_CACHE });
      const prefix = `default-${Date.now()}`;
      const exp = await experimentInB(sb, prefix);
      const before = await listing(prefix);
      const id = enqueue(sb.queueRoot, "local_cred", exp.message);
      const runner = new RunnerProcess(sb, ["--allow-private-endpoints", "--limit-idle-duration", "3s"], runnerEnv);
      expect(await runner.exited).toBe(0);
      const reason = reasonOf(sb, "local_cred", id);
      expect(reason).toMatch(/experiment\.artifacts\.\w+\.qualified/);
      expect(reason).toContain(`s3://${moto.host}/${B}/${prefix}/`);
      expect(reason).toContain("brings no credentials");
      expect(reason).toContain("--storage-identity");
      expect(filesIn(join(sb.queueRoot, "local_cred"))).toEqual([]);
      expect(runner.stderr).not.toContain("the script ran");
      // Checked on the server: nothing written or replaced under the experiment's prefix, the attempt fence included.
      expect(await listing(prefix)).toEqual(before);
      expect(await objectText(`${prefix}/experiments/${exp.key}/_studio_runner_attempt.json`)).toBeUndefined();
    }, 120_000);

    test("--storage-identity runner: the allow-listed prefix is served for the allowed queues only; elsewhere refused, B unchanged there", async () => {
      const sb = await makeSandbox("iso-cred-runner", { cacheDir: SHARED_CACHE });
      const run = `runner-${Date.now()}`;
      const allowed = await experimentInB(sb, `${run}/allowed`);
      const other = await experimentInB(sb, `${run}/other`);
      const wrongQueue = await experimentInB(sb, `${run}/allowed`);
      const beforeOther = await listing(`${run}/other`);
      const a = enqueue(sb.queueRoot, "local_team_a", allowed.message);
      const o = enqueue(sb.queueRoot, "local_team_a", other.message);
      const w = enqueue(sb.queueRoot, "local_team_b", wrongQueue.message);
      const runner = new RunnerProcess(
        sb,
        [
          "--allow-private-endpoints",
          "--storage-identity",
          "runner",
          "--storage-identity-allow",
          `local_team_a=s3://${moto.host}/${B}/${run}/allowed/`,
          "--limit-idle-duration",
          "3s",
        ],
        runnerEnv,
      );
      expect(await runner.exited).toBe(0);
      // Served as the runner: the allowed request ran and its output is in B.
      expect(runner.stderr).toContain(`experiment ${allowed.key} finished`);
      expect(await objectText(allowed.outputKey)).toBeDefined();
      expect(filesIn(join(sb.queueRoot, ".failed", "local_team_a"))).not.toContain(a);
      // Outside the allow-list (another prefix; another queue): refused with the flag named.
      expect(reasonOf(sb, "local_team_a", o)).toContain("outside --storage-identity-allow");
      expect(reasonOf(sb, "local_team_a", o)).toContain(`s3://${moto.host}/${B}/${run}/other/`);
      expect(reasonOf(sb, "local_team_b", w)).toContain('outside --storage-identity-allow for queue "local_team_b"');
      expect(await listing(`${run}/other`)).toEqual(beforeOther);
      expect(await objectText(wrongQueue.outputKey)).toBeUndefined();
    }, 180_000);

    test("a request's own keys are the only ones used (wrong keys are not rescued by the runner's); the record in B holds no secret", async () => {
      const sb = await makeSandbox("iso-cred-own", { cacheDir: SHARED_CACHE });
      const run = `own-${Date.now()}`;
      const user = moto.user!;
      const wrong = { accessKey: user.accessKey, secretAccessKey: `wrong-${crypto.randomUUID()}` };
      const bad = await experimentInB(sb, `${run}/bad`, wrong);
      const good = await experimentInB(sb, `${run}/good`, user, (m) => {
        // The experiment record in B, written with the request's own keys (as the studioml client sets it up).
        m.config.database = {
          type: "s3",
          endpoint: moto.endpoint,
          bucket: B,
          credentials: { aws: { access_key: user.accessKey, secret_access_key: user.secretAccessKey } },
        };
      });
      const beforeBad = await listing(`${run}/bad`);
      const b = enqueue(sb.queueRoot, "local_own", bad.message);
      enqueue(sb.queueRoot, "local_own", good.message);
      // Even with the runner's identity allowed for the whole bucket, a request with keys uses only those.
      const runner = new RunnerProcess(
        sb,
        [
          "--allow-private-endpoints",
          "--storage-identity",
          "runner",
          "--storage-identity-allow",
          `local_=s3://${moto.host}/${B}/`,
          "--limit-idle-duration",
          "3s",
        ],
        runnerEnv,
      );
      expect(await runner.exited).toBe(0);
      const reason = reasonOf(sb, "local_own", b);
      expect(reason).toMatch(/SignatureDoesNotMatch|refused the request's credentials/);
      expect(reason).not.toContain(wrong.secretAccessKey);
      expect(await listing(`${run}/bad`)).toEqual(beforeBad);
      expect(runner.stderr).toContain(`experiment ${good.key} finished`);
      // The record as stored in B: the experiment, its status, and no key material.
      const record = await objectText(`experiments/${good.key}`);
      expect(record).toBeDefined();
      expect(JSON.parse(record!).status).toBe("finished");
      expect(record).not.toContain(user.secretAccessKey);
      expect(record).not.toContain("secret_access_key");
      expect(JSON.parse(record!).artifacts.workspace.qualified).toContain(`${run}/good/`);
    }, 180_000);
  },
);

describe("isolation: gs:// is always the runner's identity, refused by default", () => {
  let gcs: GcsTestServer;
  beforeAll(async () => {
    gcs = await startGcsServer({ buckets: ["team-gcs"] });
  });
  afterAll(async () => {
    await gcs?.stop();
  });

  test("a gs:// request without (possible) credentials is refused naming the flag; the GCS server sees no request for it", async () => {
    const sb = await makeSandbox("iso-cred-gcs", { cacheDir: SHARED_CACHE });
    const prefix = `gcs-${Date.now()}`;
    const exp = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      delete m.config.database;
      for (const a of Object.values<any>(m.experiment.artifacts)) a.qualified = `gs://team-gcs/${prefix}/${a.key}`;
      m.config.storage = { type: "gcs", bucket: "team-gcs" };
    });
    const id = enqueue(sb.queueRoot, "local_gcs", exp.message);
    const runner = new RunnerProcess(sb, [
      "--allow-private-endpoints",
      "--gcs-endpoint",
      gcs.endpoint,
      "--limit-idle-duration",
      "3s",
    ]);
    expect(await runner.exited).toBe(0);
    const reason = reasonOf(sb, "local_gcs", id);
    expect(reason).toContain(`gs://team-gcs/${prefix}/`);
    expect(reason).toContain("--storage-identity");
    expect(runner.stderr).not.toContain("the script ran");
    expect(gcs.requests.filter((r) => r.path.includes(prefix) || r.query.name?.includes(prefix))).toEqual([]);
    expect([...gcs.objects.keys()].filter((k) => k.includes(prefix))).toEqual([]);
  }, 120_000);
});
