// Covers src/task/job-env.ts buildJobEnv: runner secrets withheld, config.env with %NAME% expansion, studioml/GPU/thread variables.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { parseRequest } from "../../src/request/parse.ts";
import type { Request } from "../../src/request/model.ts";
import { buildJobEnv, isRunnerSecret, type JobEnvInput } from "../../src/task/job-env.ts";
import { SecretMasker } from "../../src/log/secret-mask.ts";

const FIXTURE_TEXT = readFileSync(
  new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname,
  "utf8",
);

function request(env?: Record<string, string>): Request {
  const r = parseRequest(FIXTURE_TEXT);
  if (env) r.config.env = env;
  return r;
}

const RUNNER_ENV: Record<string, string | undefined> = {
  PATH: "/usr/local/bin:/usr/bin:/bin",
  HOME: "/home/runner",
  LANG: "C.UTF-8",
  SHARED_DATA: "/data/shared",
  AWS_SECRET_ACCESS_KEY: "runnerAwsSecret000",
  AWS_ACCESS_KEY_ID: "AKIARUNNER",
  AWS_REGION: "eu-west-1",
  GOOGLE_APPLICATION_CREDENTIALS: "/secrets/sa.json",
  AMQP_URL: "amqp://admin:brokerPass1@rabbit:5672/%2f",
  MY_API_TOKEN: "runnerApiToken111",
  QUEUE_ROOT: "/var/queues",
  MAX_MEM: "16gib",
  SOME_DB: "postgres://u:dbPassword22@db/x",
  UNSET_ONE: undefined,
};

function input(overrides: Partial<JobEnvInput> = {}): JobEnvInput {
  return {
    runnerEnv: RUNNER_ENV,
    request: request(),
    attemptDir: "/work/attempts/exp-1/a1",
    mappingFile: "/work/attempts/exp-1/a1/artifacts.json",
    cpus: 1,
    gpuIds: [],
    allowEnvSecrets: false,
    ...overrides,
  };
}

describe("buildJobEnv: what of the runner's environment passes", () => {
  const { env } = buildJobEnv(input());

  test("runner secrets and runner-only settings are not passed", () => {
    for (const name of [
      "AWS_SECRET_ACCESS_KEY",
      "AWS_ACCESS_KEY_ID",
      "AWS_REGION",
      "GOOGLE_APPLICATION_CREDENTIALS",
      "AMQP_URL",
      "MY_API_TOKEN",
      "QUEUE_ROOT",
      "MAX_MEM",
      "SOME_DB",
    ]) {
      expect(env).not.toHaveProperty(name);
    }
    const all = Object.values(env).join("\n");
    for (const secret of ["runnerAwsSecret000", "brokerPass1", "runnerApiToken111", "dbPassword22"])
      expect(all).not.toContain(secret);
  });

  test("ordinary variables pass unchanged", () => {
    expect(env.PATH).toBe("/usr/local/bin:/usr/bin:/bin");
    expect(env.HOME).toBe("/home/runner");
    expect(env.LANG).toBe("C.UTF-8");
    expect(env.SHARED_DATA).toBe("/data/shared");
    expect(env).not.toHaveProperty("UNSET_ONE");
  });

  test("isRunnerSecret", () => {
    expect(isRunnerSecret("AMQP_URL", "amqp://localhost")).toBe(true);
    expect(isRunnerSecret("QUEUE_ROOT", "/q")).toBe(true);
    expect(isRunnerSecret("X", "https://u:p@host/")).toBe(true);
    expect(isRunnerSecret("PATH", "/usr/bin")).toBe(false);
  });
});

describe("buildJobEnv: config.env", () => {
  test("config.env from the fixture is exported", () => {
    expect(buildJobEnv(input()).env.ACC_FROM_CONFIG_ENV).toBe("yes");
  });

  test("config.env overrides a runner variable of the same name", () => {
    expect(buildJobEnv(input({ request: request({ LANG: "en_US.UTF-8" }) })).env.LANG).toBe("en_US.UTF-8");
  });

  test("%NAME% expands a normal runner variable; unknown names become empty", () => {
    const { env, warnings } = buildJobEnv(
      input({
        request: request({ DATA_DIR: "%SHARED_DATA%/train", HOME_COPY: "%HOME%", MISSING: "[%NOT_SET_ANYWHERE%]" }),
      }),
    );
    expect(env.DATA_DIR).toBe("/data/shared/train");
    expect(env.HOME_COPY).toBe("/home/runner");
    expect(env.MISSING).toBe("[]");
    expect(warnings).toEqual([]);
  });

  test("%NAME% of a runner secret is NOT expanded and a warning says so", () => {
    const { env, warnings } = buildJobEnv(
      input({ request: request({ AWS_KEY_FOR_JOB: "%AWS_SECRET_ACCESS_KEY%", BROKER: "%AMQP_URL%" }) }),
    );
    expect(env.AWS_KEY_FOR_JOB).toBe("");
    expect(env.BROKER).toBe("");
    expect(Object.values(env).join("\n")).not.toContain("runnerAwsSecret000");
    expect(warnings.length).toBe(2);
    expect(warnings.join("\n")).toContain("AWS_SECRET_ACCESS_KEY");
    expect(warnings.join("\n")).toContain("AMQP_URL");
    expect(warnings.join("\n")).toContain("--allow-env-secrets");
    expect(warnings.join("\n")).not.toContain("runnerAwsSecret000");
  });

  test("with allowEnvSecrets a secret reference is expanded, and the value is known as a secret", () => {
    const { env, warnings, secretValues } = buildJobEnv(
      input({ allowEnvSecrets: true, request: request({ AWS_SECRET_ACCESS_KEY: "%AWS_SECRET_ACCESS_KEY%" }) }),
    );
    expect(env.AWS_SECRET_ACCESS_KEY).toBe("runnerAwsSecret000");
    expect(warnings).toEqual([]);
    expect(secretValues).toContain("runnerAwsSecret000");
  });
});

describe("buildJobEnv: studioml, GPU and thread variables", () => {
  test("studioml variables", () => {
    const { env } = buildJobEnv(input());
    expect(env.STUDIOML_EXPERIMENT).toBe("1795881848_78bc9b0b-d826-4f48-b506-cc1c44343247");
    expect(env.STUDIOML_HOME).toBe("/work/attempts/exp-1/a1");
    expect(env.STUDIOML_ARTIFACT_MAPPING).toBe("/work/attempts/exp-1/a1/artifacts.json");
    expect(env.PYTHONUNBUFFERED).toBe("TRUE");
  });

  test("no GPUs → -1; device order by PCI bus", () => {
    const { env } = buildJobEnv(input());
    expect(env.CUDA_VISIBLE_DEVICES).toBe("-1");
    expect(env.NVIDIA_VISIBLE_DEVICES).toBe("-1");
    expect(env.CUDA_DEVICE_ORDER).toBe("PCI_BUS_ID");
  });

  test("GPU UUIDs are comma-joined", () => {
    const { env } = buildJobEnv(input({ gpuIds: ["GPU-aaaa", "GPU-bbbb"] }));
    expect(env.CUDA_VISIBLE_DEVICES).toBe("GPU-aaaa,GPU-bbbb");
    expect(env.NVIDIA_VISIBLE_DEVICES).toBe("GPU-aaaa,GPU-bbbb");
  });

  test("studioml variables win over config.env and the runner", () => {
    const { env } = buildJobEnv(
      input({ request: request({ STUDIOML_EXPERIMENT: "spoof", CUDA_VISIBLE_DEVICES: "0" }) }),
    );
    expect(env.STUDIOML_EXPERIMENT).toBe("1795881848_78bc9b0b-d826-4f48-b506-cc1c44343247");
    expect(env.CUDA_VISIBLE_DEVICES).toBe("-1");
  });

  test("thread counts from cpus (at least one, fractions rounded up)", () => {
    expect(buildJobEnv(input({ cpus: 4 })).env.OMP_NUM_THREADS).toBe("4");
    expect(buildJobEnv(input({ cpus: 4 })).env.MKL_NUM_THREADS).toBe("4");
    expect(buildJobEnv(input({ cpus: 0 })).env.OMP_NUM_THREADS).toBe("1");
    expect(buildJobEnv(input({ cpus: 2.5 })).env.MKL_NUM_THREADS).toBe("3");
  });

  test("a venv goes first on PATH and sets VIRTUAL_ENV", () => {
    const { env } = buildJobEnv(input({ venvDir: "/cache/venvs/abc" }));
    expect(env.VIRTUAL_ENV).toBe("/cache/venvs/abc");
    expect(env.PATH).toBe("/cache/venvs/abc/bin:/usr/local/bin:/usr/bin:/bin");
  });

  test("a runner's own VIRTUAL_ENV does not leak without a venv", () => {
    const { env } = buildJobEnv(
      input({ runnerEnv: { ...RUNNER_ENV, VIRTUAL_ENV: "/runner/venv", PYTHONPATH: "/runner/lib" } }),
    );
    expect(env).not.toHaveProperty("VIRTUAL_ENV");
    expect(env).not.toHaveProperty("PYTHONPATH");
  });
});

describe("buildJobEnv: secretValues for log masking", () => {
  test("includes the artifact secret_access_key from the fixture and the runner's secrets", () => {
    const { secretValues } = buildJobEnv(input());
    expect(secretValues).toContain("exampleSecretKey123");
    expect(secretValues).toContain("runnerAwsSecret000");
    expect(secretValues).toContain("runnerApiToken111");
  });

  test("includes session tokens and secret-looking config.env values", () => {
    const r = request({ HF_TOKEN: "hfTokenValue42" });
    r.experiment.artifacts.workspace!.credentials!.aws!.sessionToken = "sessionTok777";
    const { secretValues } = buildJobEnv(input({ request: r }));
    expect(secretValues).toContain("sessionTok777");
    expect(secretValues).toContain("hfTokenValue42");
  });
});

describe("buildJobEnv: runner secrets withheld by name, prefix and value shape (issue #14, hole 12)", () => {
  // name → value: every one is the runner's and must neither reach the job nor (where secret) the logs.
  const CANARIES: Record<string, string> = {
    AZURE_STORAGE_CONNECTION_STRING:
      "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=azureCanaryKey0001==;EndpointSuffix=core.windows.net",
    AZURE_CLIENT_ID: "azureClientCanary0002",
    MY_SERVICE_CONNECTION_STRING: "Server=db;Database=x;User Id=u;Password=connCanary0003;",
    SSH_AUTH_SOCK: "/tmp/ssh-canary/agent.4242",
    SSH_AGENT_PID: "4242",
    DOCKER_HOST: "unix:///var/run/docker.sock",
    DOCKER_AUTH_CONFIG: '{"auths":{"r":{"auth":"dockerCanary0004"}}}',
    KUBECONFIG: "/etc/kubernetes/admin.conf",
    VAULT_ADDR: "https://vault:8200",
    VAULT_TOKEN: "s.vaultCanary0005",
    GITHUB_TOKEN: "githubCanary0006",
    GH_TOKEN: "ghCanary0007",
    NPM_TOKEN: "npmCanary0008",
    HF_TOKEN: "hfCanary0009",
    HUGGING_FACE_HUB_TOKEN: "hfHubCanary0010",
    WANDB_API_KEY: "wandbCanary0011",
    OPENAI_API_KEY: "openaiCanary0012",
    SIGNING_KEY: "signingCanary0013",
    DB_PASSWORD: "dbPassCanary0014",
    PGPASSWORD: "pgPassCanary0015",
    CLIENT_SECRET: "clientSecretCanary0016",
    APP_SECRET_KEY_BASE: "secretBaseCanary0017",
    DATABASE_URL: "postgres://app:dbUrlCanary0018@db:5432/app",
    SENTRY_DSN: "https://sentryCanary0019@o1.ingest.sentry.io/1",
    CACHE_URL: "redis://:redisCanary0020@cache:6379/0",
    BLOB_SAS_URL: "https://acct.blob.core.windows.net/c?sv=2022&sig=sasCanary0021",
    SOME_HARMLESS_NAME: "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    GPG_AGENT_INFO: "/run/user/0/gnupg/S.gpg-agent:0:1",
    DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/0/bus",
    KRB5CCNAME: "FILE:/tmp/krb5cc_0",
    STUDIO_RUNNER_AMQP_URL: "amqp://u:optCanary0022@rabbit/",
  };
  const NOT_SECRET_VALUES = new Set([
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "KUBECONFIG",
    "GPG_AGENT_INFO",
    "DBUS_SESSION_BUS_ADDRESS",
    "KRB5CCNAME",
    "DOCKER_HOST",
    "VAULT_ADDR",
  ]);
  const { env, secretValues } = buildJobEnv(input({ runnerEnv: { ...RUNNER_ENV, ...CANARIES } }));

  for (const [name, value] of Object.entries(CANARIES)) {
    test(`${name} is withheld${NOT_SECRET_VALUES.has(name) ? "" : " and its value masked"}`, () => {
      expect(isRunnerSecret(name, value)).toBe(true);
      expect(env).not.toHaveProperty(name);
      expect(Object.values(env).join("\n")).not.toContain(value);
      if (!NOT_SECRET_VALUES.has(name)) expect(secretValues).toContain(value);
    });
  }

  test("masked values never appear in a log line", () => {
    const masker = new SecretMasker(secretValues);
    for (const [name, value] of Object.entries(CANARIES)) {
      if (NOT_SECRET_VALUES.has(name)) continue;
      expect(masker.mask(`printing ${value} here`)).not.toContain(value);
    }
  });

  test("ordinary variables of similar names still pass", () => {
    const { env } = buildJobEnv(
      input({
        runnerEnv: {
          ...RUNNER_ENV,
          KEYBOARD_LAYOUT_DIR: "/x",
          TZ: "UTC",
          SSH_CLIENT_NAME_OK: "no",
          HTTP_PROXY: "http://proxy:3128",
          LD_LIBRARY_PATH: "/usr/local/cuda/lib64",
          DATA_URL: "https://example.org/data",
        },
      }),
    );
    expect(env.TZ).toBe("UTC");
    expect(env.HTTP_PROXY).toBe("http://proxy:3128");
    expect(env.LD_LIBRARY_PATH).toBe("/usr/local/cuda/lib64");
    expect(env.DATA_URL).toBe("https://example.org/data");
    // KEY as a substring is withheld (the name rule errs on the side of the secret).
    expect(env).not.toHaveProperty("KEYBOARD_LAYOUT_DIR");
  });

  test("a request's own secret-shaped config.env value is masked in its logs, and still reaches its job", () => {
    const { env, secretValues } = buildJobEnv(
      input({ request: request({ REPO: "https://user:reqCanary0030@git.example/x.git" }) }),
    );
    expect(env.REPO).toBe("https://user:reqCanary0030@git.example/x.git");
    expect(secretValues).toContain("https://user:reqCanary0030@git.example/x.git");
  });
});
