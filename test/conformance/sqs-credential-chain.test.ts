// --sqs-default-account: the SQS backend with no credentials of its own, so that the AWS SDK's
// default chain picks them. fauxqs does not check signatures, so a recording proxy in front of it
// shows which credentials signed each request (the Credential= of its Authorization header). Each
// case runs the backend in a child process with an environment of its own (the chain reads
// process.env): access keys in the environment; a named profile in shared files given by
// AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE; web identity (a token file and a role, exchanged
// at an STS stand-in on loopback, see aws-chain.ts). The instance role is not tested: metadata
// addresses are never contacted here (AWS_EC2_METADATA_DISABLED=true).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { RetryableError } from "../../src/errors.ts";
import { defaultAccountRegion } from "../../src/queue/sqs/default-account.ts";
import { sqsBackendFromSettings, SQS_OPTIONS, sqsSettingsProblems } from "../../src/queue/sqs/settings.ts";
import { sqsFault } from "../../src/queue/sqs/sqs-errors.ts";
import { chainEnv, signedCredential, startStsStandIn, type StsStandIn } from "../helpers/aws-chain.ts";
import { type ForwardingProxy, startForwardingProxy } from "../helpers/forwarding-proxy.ts";
import { startSqsServer, type SqsServer } from "../helpers/sqs-server.ts";

const REPO = resolve(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const PROBE = join(REPO, "test/helpers/sqs-chain-probe.ts");

let sqs: SqsServer;
let proxy: ForwardingProxy;
let sts: StsStandIn;
let dir: string;
let counter = 0;

beforeAll(async () => {
  sqs = await startSqsServer();
  proxy = startForwardingProxy(sqs.endpoint);
  sts = startStsStandIn({
    accessKeyId: "ASIASTSISSUEDKEY0001",
    secretAccessKey: "sts-issued-secret-value",
    sessionToken: "sts-issued-session-token-value",
  });
  dir = mkdtempSync(join(tmpdir(), "sqs-chain-"));
}, 60_000);
afterAll(async () => {
  await proxy?.stop();
  await sts?.stop();
  await sqs?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type ProbeResult = {
  problems: string[];
  logs: string[];
  names?: string[];
  body?: string;
  error?: string;
  kind?: string;
};

/** The backend made from these settings in a child with this environment: publish, list, receive, ack. */
async function probe(settings: Record<string, unknown>, env: Record<string, string>) {
  const queue = `sqs_chain_${Date.now()}_${++counter}`;
  const first = proxy.seen.length;
  const child = Bun.spawn(
    [BUN, PROBE, JSON.stringify({ "sqs-endpoint": proxy.endpoint, "queue-match": `^${queue}$`, ...settings }), queue],
    { cwd: REPO, env, stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`probe exited ${code}: ${err}`);
  const result = JSON.parse(out.trim().split("\n").at(-1)!) as ProbeResult;
  const requests = proxy.seen.slice(first);
  return { queue, result, requests, signed: requests.map((r) => signedCredential(r.headers)) };
}

const KEYS = { AWS_ACCESS_KEY_ID: "AKIAENVCHAINTEST0001", AWS_SECRET_ACCESS_KEY: "env-chain-secret-value" };

describe("sqs --sqs-default-account: the SDK's default credential chain", () => {
  test("the flag, its problems with --sqs-certs and --sqs-endpoint, and no backend without either", () => {
    expect(SQS_OPTIONS.find((o) => o.name === "sqs-default-account")).toMatchObject({
      type: "boolean",
      default: "false",
    });
    expect(sqsSettingsProblems({ "sqs-default-account": true }, {})).toEqual([]);
    expect(sqsSettingsProblems({ "sqs-default-account": true, "sqs-certs": dir }, {})[0]).toBe(
      "--sqs-certs and --sqs-default-account are both set: choose one " +
        "(the accounts of the directory, or the AWS SDK's default credential chain)",
    );
    expect(sqsSettingsProblems({ "sqs-endpoint": "http://127.0.0.1:1" }, {})).toEqual([
      "--sqs-endpoint is set but neither --sqs-certs nor --sqs-default-account is",
    ]);
    expect(sqsSettingsProblems({ "sqs-default-account": true, "sqs-endpoint": "ftp://x" }, {})).toEqual([
      'SQS endpoint "ftp://x" must start with http:// or https://',
    ]);
    const quiet = { info: () => undefined, warn: () => undefined };
    expect(sqsBackendFromSettings({ "sqs-default-account": false }, quiet, {})).toBeUndefined();
  });

  test("region: --aws-region, AWS_REGION, AWS_DEFAULT_REGION, the profile's, else us-east-1", () => {
    const config = join(dir, "region-config");
    const credentials = join(dir, "region-credentials");
    writeFileSync(config, "[default]\nregion = eu-west-3\n[profile other]\nregion = ap-south-1\n");
    writeFileSync(credentials, "[third]\nregion = sa-east-1\n");
    const files = { AWS_CONFIG_FILE: config, AWS_SHARED_CREDENTIALS_FILE: credentials };
    const all = { ...files, AWS_REGION: "us-west-2", AWS_DEFAULT_REGION: "eu-central-1" };
    expect(defaultAccountRegion("ca-central-1", all)).toEqual({
      region: "ca-central-1",
      from: "--aws-region or AWS_REGION",
    });
    expect(defaultAccountRegion(undefined, all)).toEqual({ region: "us-west-2", from: "AWS_REGION" });
    expect(defaultAccountRegion(" ", { ...files, AWS_DEFAULT_REGION: "eu-central-1" }).region).toBe("eu-central-1");
    expect(defaultAccountRegion(undefined, files)).toEqual({
      region: "eu-west-3",
      from: `profile default in ${config}`,
    });
    expect(defaultAccountRegion(undefined, { ...files, AWS_PROFILE: "other" }).region).toBe("ap-south-1");
    expect(defaultAccountRegion(undefined, { ...files, AWS_PROFILE: "third" }).region).toBe("sa-east-1");
    expect(defaultAccountRegion(undefined, { ...files, AWS_PROFILE: "none" })).toEqual({
      region: "us-east-1",
      from: "the default",
    });
    expect(defaultAccountRegion(undefined, { HOME: join(dir, "no-home") }).region).toBe("us-east-1");
  });

  test("(1) access keys in the environment sign every request; the account is named default", async () => {
    const { queue, result, requests, signed } = await probe(
      { "sqs-default-account": true, "aws-region": "eu-west-1" },
      chainEnv(dir, KEYS),
    );
    expect(result.error).toBeUndefined();
    expect(result.names).toEqual([queue]);
    expect(result.body).toBe(JSON.stringify({ probe: queue }));
    expect(requests.length).toBeGreaterThanOrEqual(4);
    for (const s of signed)
      expect(s).toEqual({ accessKeyId: KEYS.AWS_ACCESS_KEY_ID, region: "eu-west-1", service: "sqs" });
    const started = result.logs.join("\n");
    expect(started).toContain("SQS account default: credentials from the AWS SDK's default credential chain");
    expect(started).toContain("set here: AWS_ACCESS_KEY_ID");
    expect(started).toContain("region eu-west-1 (from --aws-region or AWS_REGION)");
    expect(started).not.toContain(KEYS.AWS_SECRET_ACCESS_KEY);
  });

  test("(2) a named profile from AWS_SHARED_CREDENTIALS_FILE, its region from AWS_CONFIG_FILE or --aws-region", async () => {
    const credentials = join(dir, "shared-credentials");
    const config = join(dir, "shared-config");
    writeFileSync(
      credentials,
      "[default]\naws_access_key_id = AKIANOTTHISONE000001\naws_secret_access_key = not-this-one\n" +
        "[someprofile]\naws_access_key_id = AKIAPROFILECHAIN0001\naws_secret_access_key = profile-secret-value\n",
    );
    writeFileSync(config, "[default]\nregion = us-west-1\n[profile someprofile]\nregion = eu-north-1\n");
    const env = chainEnv(dir, {
      AWS_SHARED_CREDENTIALS_FILE: credentials,
      AWS_CONFIG_FILE: config,
      AWS_PROFILE: "someprofile",
    });
    const fromProfile = await probe({ "sqs-default-account": true }, env);
    expect(fromProfile.result.error).toBeUndefined();
    expect(fromProfile.result.names).toEqual([fromProfile.queue]);
    expect(fromProfile.signed.length).toBeGreaterThanOrEqual(4);
    for (const s of fromProfile.signed)
      expect(s).toEqual({ accessKeyId: "AKIAPROFILECHAIN0001", region: "eu-north-1", service: "sqs" });
    expect(fromProfile.result.logs.join("\n")).toContain(`region eu-north-1 (from profile someprofile in ${config})`);

    const flagRegion = await probe({ "sqs-default-account": true, "aws-region": "ap-northeast-2" }, env);
    expect(flagRegion.result.error).toBeUndefined();
    for (const s of flagRegion.signed)
      expect(s).toEqual({ accessKeyId: "AKIAPROFILECHAIN0001", region: "ap-northeast-2", service: "sqs" });
  });

  test("(3) web identity: the token file is exchanged at STS and the issued session signs the requests", async () => {
    const token = join(dir, "web-identity-token");
    writeFileSync(token, "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig");
    const roleArn = "arn:aws:iam::123456789012:role/studio-runner";
    const before = sts.calls.length;
    const { queue, result, signed } = await probe(
      { "sqs-default-account": true },
      chainEnv(dir, {
        AWS_WEB_IDENTITY_TOKEN_FILE: token,
        AWS_ROLE_ARN: roleArn,
        AWS_ROLE_SESSION_NAME: "runner-session",
        AWS_REGION: "us-east-2",
        AWS_ENDPOINT_URL_STS: sts.endpoint,
      }),
    );
    expect(result.error).toBeUndefined();
    expect(result.names).toEqual([queue]);
    const calls = sts.calls.slice(before);
    expect(calls).toEqual([
      {
        action: "AssumeRoleWithWebIdentity",
        roleArn,
        roleSessionName: "runner-session",
        webIdentityToken: "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig",
      },
    ]);
    expect(signed.length).toBeGreaterThanOrEqual(4);
    for (const s of signed)
      expect(s).toEqual({
        accessKeyId: sts.issued.accessKeyId,
        region: "us-east-2",
        service: "sqs",
        securityToken: sts.issued.sessionToken,
      });
    expect(result.logs.join("\n")).toContain("set here: web identity; region us-east-2 (from AWS_REGION)");
  });

  test("no credentials anywhere: a retryable fault that names the chain's sources, nothing sent", async () => {
    const { result, requests } = await probe({ "sqs-default-account": true }, chainEnv(dir));
    expect(result.kind).toBe("retryable");
    expect(result.error).toContain("no credentials found; the AWS SDK's default chain looks at AWS_ACCESS_KEY_ID");
    expect(requests).toEqual([]);
    const fault = sqsFault(
      Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" }),
      "ListQueues",
      "all queues in SQS account default (us-east-1)",
    );
    expect(fault).toBeInstanceOf(RetryableError);
  });
});
