// The compiled binary serving SQS with --sqs-default-account (the AWS SDK's default credential
// chain) against fauxqs, through a recording proxy: fauxqs does not check signatures, so the
// Credential= of each request's Authorization header shows which credentials the chain picked.
// (1) access keys in the environment: an experiment goes from an sqs_… queue to completion, its
// report is sent with the same keys, the job sees none of them; (2) a named profile from shared
// files (SQS_DEFAULT_ACCOUNT=true): discovery and receives are signed with the profile's key in
// its region; (3) web identity (the YAML key): the token is exchanged at an STS stand-in (AWS STS
// has no emulator here, see aws-chain.ts) and an experiment runs on the issued session. The
// instance role is not tested: metadata addresses are never contacted (AWS_EC2_METADATA_DISABLED).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { SqsQueueBackend } from "../../src/queue/sqs/sqs-queue.ts";
import { chainEnv, signedCredential, startStsStandIn, type StsStandIn } from "../helpers/aws-chain.ts";
import {
  makeSandbox,
  RunnerProcess,
  runBinaryAsync,
  SHARED_CACHE,
  simpleExperiment,
  type Sandbox,
  tarMember,
} from "../helpers/e2e.ts";
import { type ForwardingProxy, startForwardingProxy } from "../helpers/forwarding-proxy.ts";
import { startSqsServer, type SqsServer } from "../helpers/sqs-server.ts";

let sqs: SqsServer;
let proxy: ForwardingProxy;
let sts: StsStandIn;
beforeAll(async () => {
  sqs = await startSqsServer();
  proxy = startForwardingProxy(sqs.endpoint);
  sts = startStsStandIn({
    accessKeyId: "ASIAE2ESTSISSUED0001",
    secretAccessKey: "e2e-sts-issued-secret",
    sessionToken: "e2e-sts-issued-session-token",
  });
}, 60_000);
afterAll(async () => {
  await proxy?.stop();
  await sts?.stop();
  await sqs?.stop();
});

// The test's own client goes straight to fauxqs, so the proxy sees only the runner's requests. It
// uses the runner's region: fauxqs keeps queues by the region a request is signed for.
const TEST_KEYS = { accessKeyId: "AKIATESTPRODUCER0001", secretAccessKey: "producer-secret" };
const producer = (region: string) =>
  new SqsQueueBackend({
    accounts: [{ name: "producer", credentials: TEST_KEYS, region }],
    endpoint: sqs.endpoint,
    maxDeliveries: 3,
  });

const SCRIPT =
  "import os\nprint('key in job:', os.environ.get('AWS_ACCESS_KEY_ID'), os.environ.get('AWS_SECRET_ACCESS_KEY'), " +
  "os.environ.get('AWS_WEB_IDENTITY_TOKEN_FILE'), flush=True)\nprint('chain job done', flush=True)\n";

function experiment(sb: Sandbox) {
  return simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
    m.experiment.pythonver = "3.11";
    delete m.config.database;
  });
}

/** The runner's requests from `first` on, each with the credential it was signed with. */
const signedSince = (first: number) =>
  proxy.seen.slice(first).map((r) => ({ target: r.headers.get("x-amz-target"), ...signedCredential(r.headers) }));

/** The bodies waiting in a queue, deleted as read. */
async function drain(client: SQSClient, url: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const r = await client.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
    if (!r.Messages?.length) return bodies;
    for (const m of r.Messages) {
      bodies.push(m.Body!);
      await client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle! }));
    }
  }
}

describe("run --sqs-default-account", () => {
  test("(1) keys in the environment: an experiment runs from SQS to completion and reports", async () => {
    const sb = await makeSandbox("sqs-chain-env", { cacheDir: SHARED_CACHE });
    const queue = `sqs_chain_env_${Date.now()}`;
    const client = new SQSClient({ region: "eu-west-1", endpoint: sqs.endpoint, credentials: TEST_KEYS });
    const responseUrl = (await client.send(new CreateQueueCommand({ QueueName: `${queue}_response` }))).QueueUrl!;
    const exp = experiment(sb);
    const q = producer("eu-west-1");
    await q.publish(queue, JSON.stringify(exp.message));
    await q.close();
    const keys = { AWS_ACCESS_KEY_ID: "AKIAE2EENVCHAIN00001", AWS_SECRET_ACCESS_KEY: "e2e-env-chain-secret" };
    const first = proxy.seen.length;
    const runner = new RunnerProcess(
      sb,
      ["--sqs-default-account", "--sqs-endpoint", proxy.endpoint, "--queue-match", `^${queue}$`, "--limit-tasks", "1"],
      chainEnv(sb.dir, { ...keys, AWS_REGION: "eu-west-1" }),
    );
    expect(await runner.exited).toBe(0);
    expect(runner.stderr).toContain(`experiment ${exp.key} finished`);
    expect(runner.stderr).toContain("SQS account default: credentials from the AWS SDK's default credential chain");
    expect(runner.stderr).toContain("region eu-west-1 (from --aws-region or AWS_REGION)");
    expect(runner.stderr).not.toContain(keys.AWS_SECRET_ACCESS_KEY);
    const log = tarMember(join(exp.experimentDir, "output.tar"));
    expect(log).toContain("chain job done");
    expect(log).toContain("key in job: None None None");

    const requests = signedSince(first);
    const targets = new Set(requests.map((r) => r.target));
    for (const op of ["ListQueues", "ReceiveMessage", "DeleteMessage", "SendMessage"])
      expect(targets).toContain(`AmazonSQS.${op}`);
    for (const r of requests)
      expect({ ...r, target: undefined }).toEqual({
        target: undefined,
        accessKeyId: keys.AWS_ACCESS_KEY_ID,
        region: "eu-west-1",
        service: "sqs",
      });
    // The reports went out on the same identity (their SendMessage is among the requests above).
    const reports = (await drain(client, responseUrl)).map((b) => JSON.parse(b));
    expect(reports.some((r) => r.progress?.state === "Success" && r.experiment_id === exp.key)).toBe(true);
    client.destroy();
    const q2 = producer("eu-west-1");
    expect(await q2.open(queue).receive()).toBeUndefined();
    await q2.close();
  }, 300_000);

  test("(2) SQS_DEFAULT_ACCOUNT=true with AWS_PROFILE in shared files: the profile's key and region", async () => {
    const sb = await makeSandbox("sqs-chain-profile");
    const queue = `sqs_chain_profile_${Date.now()}`;
    const q = producer("eu-north-1");
    // An empty queue to find and poll: the runner must list it and ask it for work.
    await q.publish(queue, "{}");
    const held = await q.open(queue).receive();
    await held!.ack();
    await q.close();
    const credentials = join(sb.dir, "credentials");
    const config = join(sb.dir, "config");
    writeFileSync(
      credentials,
      "[default]\naws_access_key_id = AKIAWRONGDEFAULT0001\naws_secret_access_key = wrong\n" +
        "[someprofile]\naws_access_key_id = AKIAE2EPROFILE000001\naws_secret_access_key = e2e-profile-secret\n",
    );
    writeFileSync(config, "[default]\nregion = us-west-1\n[profile someprofile]\nregion = eu-north-1\n");
    const first = proxy.seen.length;
    const runner = new RunnerProcess(
      sb,
      ["--sqs-endpoint", proxy.endpoint, "--queue-match", `^${queue}$`, "--limit-idle-duration", "4s"],
      chainEnv(sb.dir, {
        SQS_DEFAULT_ACCOUNT: "true",
        AWS_PROFILE: "someprofile",
        AWS_SHARED_CREDENTIALS_FILE: credentials,
        AWS_CONFIG_FILE: config,
      }),
    );
    expect(await runner.exited).toBe(0);
    expect(runner.stderr).toContain(`region eu-north-1 (from profile someprofile in ${config})`);
    expect(runner.stderr).not.toContain("e2e-profile-secret");
    const requests = signedSince(first);
    const targets = new Set(requests.map((r) => r.target));
    expect(targets).toContain("AmazonSQS.ListQueues");
    expect(targets).toContain("AmazonSQS.ReceiveMessage");
    for (const r of requests)
      expect({ accessKeyId: r.accessKeyId, region: r.region }).toEqual({
        accessKeyId: "AKIAE2EPROFILE000001",
        region: "eu-north-1",
      });
  }, 120_000);

  test("(3) sqs-default-account in the YAML file, web identity: an experiment runs on the STS session", async () => {
    const sb = await makeSandbox("sqs-chain-webid", { cacheDir: SHARED_CACHE });
    const queue = `sqs_chain_webid_${Date.now()}`;
    const exp = experiment(sb);
    const q = producer("ap-southeast-2");
    await q.publish(queue, JSON.stringify(exp.message));
    await q.close();
    const token = join(sb.dir, "token");
    writeFileSync(token, "e2e.projected.token");
    const configFile = join(sb.dir, "runner.yaml");
    writeFileSync(configFile, `sqs-default-account: true\naws-region: ap-southeast-2\n`);
    const before = sts.calls.length;
    const first = proxy.seen.length;
    const runner = new RunnerProcess(
      sb,
      ["--config", configFile, "--sqs-endpoint", proxy.endpoint, "--queue-match", `^${queue}$`, "--limit-tasks", "1"],
      chainEnv(sb.dir, {
        AWS_WEB_IDENTITY_TOKEN_FILE: token,
        AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/studio-runner",
        AWS_ENDPOINT_URL_STS: sts.endpoint,
      }),
    );
    expect(await runner.exited).toBe(0);
    expect(runner.stderr).toContain(`experiment ${exp.key} finished`);
    expect(runner.stderr).toContain("set here: web identity; region ap-southeast-2 (from --aws-region or AWS_REGION)");
    expect(runner.stderr).not.toContain(sts.issued.secretAccessKey);
    expect(runner.stderr).not.toContain(sts.issued.sessionToken);
    expect(tarMember(join(exp.experimentDir, "output.tar"))).toContain("key in job: None None None");
    const calls = sts.calls.slice(before);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    for (const c of calls)
      expect({ action: c.action, roleArn: c.roleArn, token: c.webIdentityToken }).toEqual({
        action: "AssumeRoleWithWebIdentity",
        roleArn: "arn:aws:iam::123456789012:role/studio-runner",
        token: "e2e.projected.token",
      });
    const requests = signedSince(first);
    expect(new Set(requests.map((r) => r.target))).toContain("AmazonSQS.DeleteMessage");
    for (const r of requests)
      expect({ accessKeyId: r.accessKeyId, region: r.region, token: r.securityToken }).toEqual({
        accessKeyId: sts.issued.accessKeyId,
        region: "ap-southeast-2",
        token: sts.issued.sessionToken,
      });
  }, 300_000);

  test("submit --sqs-default-account sends the request signed with the chain's key", async () => {
    const sb = await makeSandbox("sqs-chain-submit");
    const queue = `sqs_chain_submit_${Date.now()}`;
    const keys = { AWS_ACCESS_KEY_ID: "AKIAE2ESUBMITCHAIN01", AWS_SECRET_ACCESS_KEY: "e2e-submit-chain-secret" };
    const ws = join(sb.dir, "ws");
    mkdirSync(ws);
    writeFileSync(join(ws, "train.py"), "print('hi')\n");
    const first = proxy.seen.length;
    const r = await runBinaryAsync(
      [
        "submit",
        "--sqs-default-account",
        "--sqs-endpoint",
        proxy.endpoint,
        "--queue",
        queue,
        "--storage",
        `file://${sb.storageRoot}`,
        "--workspace",
        ws,
        "train.py",
      ],
      { env: chainEnv(sb.dir, { ...keys, AWS_REGION: "eu-west-1" }), timeoutMs: 60_000 },
    );
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(keys.AWS_SECRET_ACCESS_KEY);
    const sent = signedSince(first).filter((x) => x.target === "AmazonSQS.SendMessage");
    expect(sent.length).toBe(1);
    expect(sent[0]).toMatchObject({ accessKeyId: keys.AWS_ACCESS_KEY_ID, region: "eu-west-1", service: "sqs" });
    const q = producer("eu-west-1");
    const delivery = await q.open(queue).receive();
    expect(delivery).toBeDefined();
    expect(JSON.parse(new TextDecoder().decode(delivery!.body)).experiment.key).toBe(r.stdout.split("\n")[0]);
    await delivery!.ack();
    await q.close();
  }, 120_000);

  test("--sqs-certs with --sqs-default-account, and --sqs-endpoint alone, are refused naming both flags", async () => {
    const sb = await makeSandbox("sqs-chain-refused");
    const both = await runBinaryAsync(
      [
        "run",
        "--queue-root",
        sb.queueRoot,
        "--sqs-default-account",
        "--sqs-certs",
        sb.dir,
        "--working-dir",
        sb.workDir,
      ],
      { env: chainEnv(sb.dir), timeoutMs: 60_000 },
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--sqs-certs and --sqs-default-account are both set: choose one");
    const endpointOnly = await runBinaryAsync(
      ["run", "--queue-root", sb.queueRoot, "--sqs-endpoint", proxy.endpoint, "--working-dir", sb.workDir],
      { env: chainEnv(sb.dir), timeoutMs: 60_000 },
    );
    expect(endpointOnly.code).toBe(2);
    expect(endpointOnly.stderr).toContain("--sqs-endpoint is set but neither --sqs-certs nor --sqs-default-account is");
  }, 120_000);
});
