// Real S3 servers for tests, on a free 127.0.0.1 port, stopped by pid: s3rver (objects on disk,
// accepts any signature of a known access key, and unsigned requests) and moto_server (which can
// verify SigV4 signatures against IAM users).

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";

const REPO = resolve(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const READY_TIMEOUT_MS = 30_000;

/** Cloud SDKs must never look for metadata servers in tests. */
export const NO_METADATA_ENV = {
  METADATA_SERVER_DETECTION: "none",
  GCE_METADATA_HOST: "127.0.0.1:9",
  GCE_METADATA_IP: "127.0.0.1:9",
  AWS_EC2_METADATA_DISABLED: "true",
} as const;
Object.assign(process.env, NO_METADATA_ENV);

export type KeyPair = { accessKey: string; secretAccessKey: string };

export type S3Server = {
  kind: "s3rver" | "moto";
  /** "127.0.0.1:PORT", as it appears in s3:// locations. */
  host: string;
  port: number;
  /** "http://127.0.0.1:PORT", as in config.storage.endpoint. */
  endpoint: string;
  pid: number;
  /** Where s3rver keeps the objects (survives stop, so a restart on the same port sees them). */
  dataDir?: string;
  /** Signs as this user (moto with verified signatures); anything else is refused there. */
  user?: KeyPair;
  createBucket(name: string): Promise<void>;
  stop(options?: { keepData?: boolean }): Promise<void>;
};

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  return (async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      process.kill(child.pid, "SIGTERM");
      const killed = await Promise.race([exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
      if (!killed && child.exitCode === null) process.kill(child.pid, "SIGKILL");
    }
    await exited;
  })();
}

async function bucketMaker(endpoint: string, keys: KeyPair) {
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: keys.accessKey, secretAccessKey: keys.secretAccessKey },
  });
  return async (name: string) => {
    try {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    } catch (err) {
      if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test((err as Error).name)) throw err;
    }
  };
}

// Runs inside the s3rver child: extra key pairs, then the server; prints the port when listening.
const S3RVER_LAUNCHER = `
const [repo, dir, port, keys] = process.argv.slice(-4);
const S3rver = require(repo + "/node_modules/s3rver");
const Account = require(repo + "/node_modules/s3rver/lib/models/account");
for (const [id, secret] of JSON.parse(keys)) Account.DUMMY_ACCOUNT.createKeyPair(id, secret);
new S3rver({ address: "127.0.0.1", port: Number(port), silent: true, directory: dir })
  .run()
  .then((a) => console.log("S3RVER_READY " + a.port), (e) => { console.error(e); process.exit(1); });
`;

/**
 * s3rver in a child process. It checks only that a signed request's access key is known (its own
 * S3RVER/S3RVER plus `keys`), not the signature; unsigned requests are always allowed.
 */
export async function startS3rver(
  options: { keys?: KeyPair[]; buckets?: string[]; port?: number; dataDir?: string } = {},
): Promise<S3Server> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "s3rver-"));
  const keys = options.keys ?? [];
  const child = spawn(
    BUN,
    [
      "-e",
      S3RVER_LAUNCHER,
      REPO,
      dataDir,
      String(options.port ?? 0),
      JSON.stringify(keys.map((k) => [k.accessKey, k.secretAccessKey])),
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...NO_METADATA_ENV },
    },
  );
  const exited = new Promise((r) => child.once("exit", r));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const port = await new Promise<number>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`s3rver did not start: ${stderr}`)), READY_TIMEOUT_MS);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /S3RVER_READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    void exited.then(() => fail(new Error(`s3rver exited: ${stderr}`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const createBucket = await bucketMaker(endpoint, keys[0] ?? { accessKey: "S3RVER", secretAccessKey: "S3RVER" });
  try {
    for (const b of options.buckets ?? []) await createBucket(b);
  } catch (err) {
    await stopChild(child, exited);
    throw err;
  }
  return {
    kind: "s3rver",
    host: `127.0.0.1:${port}`,
    port,
    endpoint,
    pid: child.pid!,
    dataDir,
    createBucket,
    async stop(stopOptions = {}) {
      await stopChild(child, exited);
      if (!stopOptions.keepData && !options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** True when this machine has moto_server (the pyenv python's moto) and boto3 to set it up. */
export function motoAvailable(): boolean {
  return (
    spawnSync("moto_server", ["--help"], { stdio: "ignore" }).status === 0 &&
    spawnSync("python3", ["-c", "import boto3"], { stdio: "ignore" }).status === 0
  );
}

// Creates an IAM user allowed s3:* and prints its access key (moto accepts any caller until
// authentication is switched on).
const MOTO_IAM_SETUP = `
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="runner")
iam.put_user_policy(UserName="runner", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="runner")["AccessKey"]
print(json.dumps({"accessKey": k["AccessKeyId"], "secretAccessKey": k["SecretAccessKey"]}))
`;

/**
 * moto_server. With `verifySignatures`, an IAM user is created and every request after set-up must
 * be signed with its key (`server.user`): wrong keys and wrong secrets are refused with 403.
 */
export async function startMoto(options: { verifySignatures?: boolean; buckets?: string[] } = {}): Promise<S3Server> {
  const port = await freePort();
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...NO_METADATA_ENV },
  });
  const exited = new Promise((r) => child.once("exit", r));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const ok = await fetch(`${endpoint}/moto-api/`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(`moto_server did not start: ${stderr}`);
    }
    await Bun.sleep(100);
  }
  let user: KeyPair | undefined;
  let createBucket: (name: string) => Promise<void>;
  try {
    if (options.verifySignatures) {
      const r = spawnSync("python3", ["-c", MOTO_IAM_SETUP, endpoint], {
        encoding: "utf8",
        env: { ...process.env, ...NO_METADATA_ENV },
      });
      if (r.status !== 0) throw new Error(`moto IAM set-up failed: ${r.stderr}`);
      user = JSON.parse(r.stdout.trim().split("\n").pop()!) as KeyPair;
    }
    createBucket = await bucketMaker(endpoint, user ?? { accessKey: "test", secretAccessKey: "test" });
    for (const b of options.buckets ?? []) await createBucket(b);
    if (options.verifySignatures) {
      // From now on every request is authenticated and authorised against IAM.
      const r = await fetch(`${endpoint}/moto-api/reset-auth`, { method: "POST", body: "0" });
      if (!r.ok) throw new Error(`moto reset-auth failed: HTTP ${r.status}`);
    }
  } catch (err) {
    await stopChild(child, exited);
    throw err;
  }
  return {
    kind: "moto",
    host: `127.0.0.1:${port}`,
    port,
    endpoint,
    pid: child.pid!,
    user,
    createBucket,
    stop: () => stopChild(child, exited),
  };
}
