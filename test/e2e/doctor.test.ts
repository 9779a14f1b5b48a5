// `studio-runner doctor` from the compiled binary: all green on this machine for a local queue
// (and for a real RabbitMQ and a signature-checking S3 server given the right credentials), and
// each broken setup shows its own red line and exits non-zero: no python, an unwritable cache dir,
// an unreachable RabbitMQ, a wrong S3 secret, bwrap missing (and, with the stand-in NVML, a line
// per card and no usable card). The broken setups are made on the
// host (a read-only mount, a hidden bwrap, a PATH without python), never inside the runner.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateQueueCommand, SQSClient } from "@aws-sdk/client-sqs";
import { buildFakeNvml } from "../helpers/fake-nvml/build.ts";
import { pubsubEmulatorInstalled, startPubsubEmulator } from "../helpers/pubsub-emulator.ts";
import { startSqsServer } from "../helpers/sqs-server.ts";
import { BINARY, ensureBinary, makeSandbox, type Sandbox, testEnv } from "../helpers/e2e.ts";
import { AMQP_URL, ensureRabbitMQ, rabbitMQAvailable } from "../helpers/rabbitmq.ts";
import { freePort, motoAvailable, type S3Server, startMoto } from "../helpers/s3-server.ts";

type Check = { name: string; status: "ok" | "warn" | "fail"; detail: string; fix?: string };
type Outcome = { code: number | null; out: string; err: string; checks: Check[] };

const rabbitAvailable = (await rabbitMQAvailable()) || !!process.env.CI;
const haveMoto = motoAvailable() || !!process.env.CI;
const pubsubAvailable = pubsubEmulatorInstalled() || !!process.env.CI;
const BUCKET = "doctor-bucket";
/** The uid and gid of `nobody`, as a service user that is not root. */
const NOBODY = 65534;

let box: Sandbox;
let moto: S3Server | undefined;
const cleanup: string[] = [];

beforeAll(async () => {
  ensureBinary();
  box = await makeSandbox("doctor");
  if (haveMoto) moto = await startMoto({ verifySignatures: true, buckets: [BUCKET] });
  if (rabbitAvailable) await ensureRabbitMQ();
}, 240_000);

afterAll(async () => {
  await moto?.stop();
  if (box) rmSync(box.dir, { recursive: true, force: true });
  for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
});

/** The local-queue settings of this test's sandbox. */
const localFlags = () => [
  "--queue-root",
  box.queueRoot,
  "--working-dir",
  box.workDir,
  "--cache-dir",
  box.cacheDir,
  "--storage",
  `file://${box.storageRoot}`,
];

/**
 * Runs `doctor` twice with the same setup: the table (what an operator reads) and --json (what
 * the assertions read). `wrap` runs the binary under another command (unshare …).
 */
function doctor(
  args: string[],
  o: { env?: Record<string, string | undefined>; wrap?: (argv: string[]) => string[] } = {},
): Outcome {
  const env = { ...testEnv(), ...(o.env ?? {}) };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const run = (extra: string[]) => {
    const argv = [BINARY, "doctor", ...args, ...extra];
    const full = o.wrap ? o.wrap(argv) : argv;
    return spawnSync(full[0]!, full.slice(1), { env: env as NodeJS.ProcessEnv, encoding: "utf8", timeout: 180_000 });
  };
  const table = run([]);
  const json = run(["--json"]);
  let checks: Check[] = [];
  try {
    checks = JSON.parse(json.stdout).checks;
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${json.status}):\n${json.stdout}\n${json.stderr}`);
  }
  expect(json.status).toBe(table.status);
  return { code: table.status, out: table.stdout, err: table.stderr, checks };
}

const line = (o: Outcome, name: string) => {
  const found = o.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no "${name}" line in:\n${o.out}`);
  return found;
};

/** The table line of `name`, as printed. */
const printed = (o: Outcome, name: string) => o.out.split("\n").find((l) => l.trimStart().startsWith(`${name} `)) ?? "";

/** argv run in a private mount namespace after `setup` (shell text) ran there. */
const inMountNamespace = (setup: string) => (argv: string[]) => [
  "unshare",
  "-m",
  "--propagation",
  "private",
  "sh",
  "-c",
  `${setup} && exec "$@"`,
  "sh",
  ...argv,
];

describe("doctor", () => {
  test("all green for the local queue on this machine: exit 0, a table with every check", () => {
    const o = doctor(localFlags());
    console.log(o.out);
    expect(o.code).toBe(0);
    expect(o.checks.filter((c) => c.status === "fail")).toEqual([]);
    for (const name of [
      "python",
      "venv and pip",
      "cgroups",
      "sandbox",
      "apptainer",
      "gpus",
      "dir working-dir",
      "dir cache-dir",
      "dir queue-root",
      "disk working-dir",
      "disk cache-dir",
      "clock",
      "queue local",
      "storage",
    ])
      line(o, name);
    expect(o.checks.some((c) => c.name.startsWith("pip ") && c.status === "ok")).toBe(true);
    expect(line(o, "sandbox").status).toBe("ok");
    expect(o.out).toContain("all passed");
    // Nothing was created by looking: no probe left in the directories.
    const left = spawnSync("find", [box.dir, "-name", ".studio-runner-doctor-*", "-o", "-name", ".doctor-*"], {
      encoding: "utf8",
    });
    expect(left.stdout).toBe("");
  }, 180_000);

  test("no python: the python line is red, exit 1", () => {
    // A PATH with bwrap (so the sandbox still works) and no interpreter; no pyenv.
    const bin = mkdtempSync(join(tmpdir(), "doctor-bin-"));
    chmodSync(bin, 0o755); // the sandbox probe runs bwrap as the job user
    cleanup.push(bin);
    symlinkSync("/usr/bin/bwrap", join(bin, "bwrap"));
    const o = doctor(localFlags(), { env: { PATH: bin, PYENV_ROOT: join(box.dir, "no-pyenv") } });
    console.log(o.out);
    expect(o.code).toBe(1);
    expect(line(o, "python").status).toBe("fail");
    expect(line(o, "python").fix).toContain("python3-venv");
    expect(printed(o, "python")).toContain("FAIL");
  }, 180_000);

  test("unwritable cache dir (a read-only mount): the cache-dir line is red, exit 1", () => {
    const cache = join(box.dir, "ro-cache");
    mkdirSync(cache, { recursive: true });
    const flags = localFlags();
    flags[flags.indexOf("--cache-dir") + 1] = cache;
    const o = doctor(flags, { wrap: inMountNamespace(`mount -t tmpfs -o ro tmpfs '${cache}'`) });
    console.log(o.out);
    expect(o.code).toBe(1);
    const dir = line(o, "dir cache-dir");
    expect(dir.status).toBe("fail");
    expect(dir.detail).toContain("EROFS");
    expect(dir.fix).toContain("--cache-dir");
    expect(line(o, "dir working-dir").status).toBe("ok");
  }, 180_000);

  test("as a service user (not root): a cache dir it does not own is red, exit 1", () => {
    // Directories as an install makes them: the service user's own, and one left to root (0755).
    const base = mkdtempSync(join(tmpdir(), "doctor-user-"));
    cleanup.push(base);
    chmodSync(base, 0o755);
    for (const d of ["work", "queue", "storage", "home"]) {
      mkdirSync(join(base, d));
      chownSync(join(base, d), NOBODY, NOBODY);
    }
    mkdirSync(join(base, "cache"), { mode: 0o755 });
    const flags = [
      "--queue-root",
      join(base, "queue"),
      "--working-dir",
      join(base, "work"),
      "--cache-dir",
      join(base, "cache"),
      "--storage",
      `file://${join(base, "storage")}`,
    ];
    const asNobody = (argv: string[]) => [
      "setpriv",
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      ...argv,
    ];
    const o = doctor(flags, { wrap: asNobody, env: { HOME: join(base, "home") } });
    console.log(o.out);
    expect(o.code).toBe(1);
    const cache = line(o, "dir cache-dir");
    expect(cache.status).toBe("fail");
    expect(cache.detail).toContain(`not writable by uid ${NOBODY} (EACCES)`);
    expect(line(o, "dir working-dir").status).toBe("ok");
    expect(line(o, "dir queue-root").status).toBe("ok");
    expect(line(o, "python").status).toBe("ok");
  }, 180_000);

  test.skipIf(!rabbitAvailable)(
    "RabbitMQ: reachable is green; unreachable is red, exit 1, password never shown",
    async () => {
      const good = doctor([...localFlags(), "--amqp-url", AMQP_URL]);
      console.log(good.out);
      expect(line(good, "queue rabbitmq").status).toBe("ok");
      expect(good.code).toBe(0);

      const port = await freePort(); // nothing listens there
      const url = `amqp://runner:doctor-pw-1234@127.0.0.1:${port}/%2f`;
      const o = doctor([...localFlags(), "--amqp-url", url, "--timeout", "3s"]);
      console.log(o.out);
      expect(o.code).toBe(1);
      const q = line(o, "queue rabbitmq");
      expect(q.status).toBe("fail");
      expect(q.detail).toContain(`127.0.0.1:${port}`);
      expect(q.fix).toContain("--amqp-url");
      expect(o.out + o.err).not.toContain("doctor-pw-1234");
    },
    180_000,
  );

  test.skipIf(!haveMoto)(
    "S3 storage: the right secret is green; a wrong secret is red, exit 1, never shown",
    () => {
      const flags = [...localFlags()];
      flags[flags.indexOf("--storage") + 1] = `s3://${moto!.host}/${BUCKET}`;
      flags.push("--s3-endpoint", moto!.endpoint);
      const user = moto!.user!;
      const good = doctor(flags, {
        env: {
          AWS_ACCESS_KEY_ID: user.accessKey,
          AWS_SECRET_ACCESS_KEY: user.secretAccessKey,
          AWS_REGION: "us-east-1",
        },
      });
      console.log(good.out);
      expect(line(good, "storage").status).toBe("ok");
      expect(good.code).toBe(0);

      const wrong = "wrongSecretDoctor0000";
      const o = doctor(flags, {
        env: { AWS_ACCESS_KEY_ID: user.accessKey, AWS_SECRET_ACCESS_KEY: wrong, AWS_REGION: "us-east-1" },
      });
      console.log(o.out);
      expect(o.code).toBe(1);
      const s = line(o, "storage");
      expect(s.status).toBe("fail");
      expect(s.detail).toMatch(/403|SignatureDoesNotMatch|denied|refused/i);
      expect(o.out + o.err).not.toContain(wrong);
      expect(o.out + o.err).not.toContain(user.secretAccessKey);
    },
    180_000,
  );

  test.skipIf(!pubsubAvailable)(
    "SQS and Pub/Sub: reached with their own credentials, queues listed; an unreachable SQS is red",
    async () => {
      const sqs = await startSqsServer();
      const emulator = await startPubsubEmulator();
      try {
        const keys = { accessKeyId: "doctor-sqs-key", secretAccessKey: "doctor-sqs-secret-0000" };
        const client = new SQSClient({ endpoint: sqs.endpoint, region: "us-east-1", credentials: keys });
        await client.send(new CreateQueueCommand({ QueueName: "sqs_doctor_listed" }));
        client.destroy();
        const env = {
          AWS_ACCESS_KEY_ID: keys.accessKeyId,
          AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
          AWS_REGION: "us-east-1",
          PUBSUB_EMULATOR_HOST: emulator.host,
        };
        const flags = [...localFlags(), "--sqs-default-account", "--pubsub-project", "doctor-project"];
        const o = doctor([...flags, "--sqs-endpoint", sqs.endpoint], { env });
        console.log(o.out);
        expect(o.code).toBe(0);
        expect(line(o, "queue sqs").status).toBe("ok");
        expect(line(o, "queue sqs").detail).toContain("sqs_doctor_listed");
        expect(line(o, "queue pubsub").status).toBe("ok");
        expect(line(o, "queue pubsub").detail).toContain("doctor-project");

        const port = await freePort(); // nothing listens there
        const bad = doctor([...flags, "--sqs-endpoint", `http://127.0.0.1:${port}`, "--timeout", "5s"], { env });
        console.log(bad.out);
        expect(bad.code).toBe(1);
        expect(line(bad, "queue sqs").status).toBe("fail");
        expect(line(bad, "queue sqs").fix).toContain("--sqs-endpoint");
        expect(bad.out + bad.err).not.toContain(keys.secretAccessKey);
      } finally {
        await sqs.stop();
        await emulator.stop();
      }
    },
    180_000,
  );

  const fakeNvml = buildFakeNvml();
  // The stand-in NVML checks the inventory's wiring only; on a GPU machine the cards are real.
  test.skipIf(!fakeNvml)(
    "NVML and each card: a line per card; no usable card left is red",
    () => {
      const o = doctor(localFlags(), { env: { STUDIO_RUNNER_NVML_LIBRARY: fakeNvml! } });
      console.log(o.out);
      expect(o.code).toBe(0);
      expect(line(o, "gpus").status).toBe("ok");
      expect(line(o, "gpu 0")).toMatchObject({ status: "ok" });
      expect(line(o, "gpu 0").detail).toContain("GPU-11111111-2222-3333-4444-555555555555");
      expect(line(o, "gpu 1").status).toBe("warn");
      expect(line(o, "gpu 1").detail).toContain("uncorrected ECC");
      // Only the card with ECC errors visible: the runner would refuse to start, so doctor is red.
      const bad = doctor(localFlags(), {
        env: {
          STUDIO_RUNNER_NVML_LIBRARY: fakeNvml!,
          CUDA_VISIBLE_DEVICES: "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        },
      });
      expect(bad.code).toBe(1);
      expect(line(bad, "gpus").status).toBe("fail");
      expect(line(bad, "gpus").fix).toContain("--cpu-only");
    },
    180_000,
  );

  test("bwrap missing (hidden by a mount): the sandbox line is red, exit 1", () => {
    const o = doctor(localFlags(), { wrap: inMountNamespace("mount --bind /dev/null /usr/bin/bwrap") });
    console.log(o.out);
    expect(o.code).toBe(1);
    const s = line(o, "sandbox");
    expect(s.status).toBe("fail");
    expect(s.detail).toContain("not on the PATH");
    expect(s.fix).toContain("bubblewrap");
    // Everything else still passes: the red line is the sandbox's alone.
    expect(o.checks.filter((c) => c.status === "fail").map((c) => c.name)).toEqual(["sandbox"]);
  }, 180_000);
});
