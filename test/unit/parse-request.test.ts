// Covers src/request/parse.ts parseRequest: the real client fixture, tolerant reading, and field-naming errors.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { PermanentError, RequestError } from "../../src/errors.ts";
import { parseRequest } from "../../src/request/parse.ts";

const FIXTURE_PATH = new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname;
const FIXTURE_TEXT = readFileSync(FIXTURE_PATH, "utf8");
const GiB = 2 ** 30;

type Json = Record<string, any>;
/** A fresh, mutable copy of the fixture. */
const fixture = (): Json => JSON.parse(FIXTURE_TEXT);

/** A minimal plain request, derived from the fixture, with experiment fields overridden. */
function minimal(experiment: Json = {}, config: Json | undefined = undefined): Json {
  const f = fixture();
  return {
    experiment: {
      key: "exp-1",
      filename: "train.py",
      artifacts: { workspace: f.experiment.artifacts.workspace },
      ...experiment,
    },
    ...(config === undefined ? {} : { config }),
  };
}

/** Run parseRequest expecting a fault; returns it after checking its class. */
function fault(body: string | Uint8Array): PermanentError {
  let caught: unknown;
  try {
    parseRequest(body);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeDefined();
  expect(caught instanceof RequestError || caught instanceof PermanentError).toBe(true);
  expect((caught as PermanentError).retryable).toBe(false);
  return caught as PermanentError;
}

describe("parseRequest on the real client fixture", () => {
  const request = parseRequest(FIXTURE_TEXT);
  const e = request.experiment;

  test("experiment identity and script", () => {
    expect(e.key).toBe("1795881848_78bc9b0b-d826-4f48-b506-cc1c44343247");
    expect(e.filename).toBe("train.py");
    expect(e.pythonver).toBe("3.11");
  });

  test("args are shell-split: the quoted argument becomes one word without quotes", () => {
    expect(e.args).toEqual(["--tag", "alpha", "--msg", "arg with space", "--lr", "0.1"]);
  });

  test("pythonenv keeps the client's pip freeze (about a hundred pins)", () => {
    expect(e.pythonenv.length).toBeGreaterThanOrEqual(95);
    expect(e.pythonenv.length).toBeLessThanOrEqual(110);
    expect(e.pythonenv).toContain("annotated-types==0.7.0");
    expect(e.pythonenv).toContain("typing_extensions==4.15.0");
  });

  test("resources: sizes in bytes, cpus and gpus as numbers", () => {
    expect(e.resources.ramBytes).toBe(2 * GiB);
    expect(e.resources.hddBytes).toBe(3 * GiB);
    expect(e.resources.cpus).toBe(1);
    expect(e.resources.gpus).toBe(0);
    expect(e.resources.gpuMemBytes).toBe(0);
  });

  test("durations and times", () => {
    expect(e.maxDurationMs).toBe(20 * 60_000);
    expect(e.timeAddedMs).toBeCloseTo(1795881848938.5347, 0);
    expect(request.config.experimentLifetimeMs).toBe(30 * 60_000);
    expect(request.config.saveWorkspaceFrequencyMs).toBe(60_000);
  });

  test("artifacts: workspace immutable, outputs mutable, all unpacked", () => {
    expect(Object.keys(e.artifacts).sort()).toEqual([
      "_metadata",
      "_metrics",
      "modeldir",
      "output",
      "retval",
      "tb",
      "workspace",
    ]);
    const ws = e.artifacts.workspace!;
    expect(ws.label).toBe("workspace");
    expect(ws.mutable).toBe(false);
    expect(ws.unpack).toBe(true);
    expect(ws.bucket).toBe("studioml-artifacts");
    expect(ws.key).toBe("blobstore/0338b68b1fa6b00339923e7a33532311ad986e7ae90c97a3eda8e06545225efe.tar");
    expect(ws.qualified).toStartWith("s3://127.0.0.1:33504/studioml-artifacts/blobstore/");
    const modeldir = e.artifacts.modeldir!;
    expect(modeldir.mutable).toBe(true);
    expect(modeldir.key).toBe("experiments/1795881848_78bc9b0b-d826-4f48-b506-cc1c44343247/modeldir.tar");
    for (const label of ["output", "retval", "tb", "_metrics", "_metadata"])
      expect(e.artifacts[label]!.mutable).toBe(true);
  });

  test("credentials are parsed on artifacts and storage", () => {
    expect(e.artifacts.workspace!.credentials).toEqual({
      aws: {
        accessKey: "AKIAEXAMPLEKEY",
        secretAccessKey: "exampleSecretKey123",
        region: "us-west-2",
        sessionToken: undefined,
      },
    });
    expect(request.config.storageCredentials?.aws?.secretAccessKey).toBe("exampleSecretKey123");
    expect(request.config.storageEndpoint).toBe("http://127.0.0.1:33504");
  });

  test("config.env is read; the raw experiment and config are kept", () => {
    expect(request.config.env).toEqual({ ACC_FROM_CONFIG_ENV: "yes" });
    expect(request.config.pip).toEqual([]);
    expect(e.raw.owner).toBe("guest");
    expect((request.config.raw as Json).queue).toBe("local");
  });

  test("bytes (Uint8Array) parse the same as text", () => {
    const fromBytes = parseRequest(new TextEncoder().encode(FIXTURE_TEXT));
    expect(fromBytes.experiment.args).toEqual(e.args);
    expect(fromBytes.experiment.key).toBe(e.key);
  });

  test("a UTF-8 byte-order mark is tolerated", () => {
    expect(parseRequest("\uFEFF" + FIXTURE_TEXT).experiment.key).toBe(e.key);
  });
});

describe("tolerance", () => {
  test("nulls for most fields", () => {
    const f = fixture();
    const x = f.experiment;
    for (const k of [
      "args",
      "pythonenv",
      "pythonver",
      "resources_needed",
      "max_duration",
      "time_added",
      "project",
      "git",
      "metric",
      "info",
      "owner",
      "status",
    ])
      x[k] = null;
    x.artifacts.modeldir = null;
    x.artifacts.workspace.credentials = null;
    x.artifacts.workspace.mutable = null;
    x.artifacts.workspace.unpack = null;
    x.artifacts.workspace.bucket = null;
    x.artifacts.workspace.key = null;
    f.config = { env: null, pip: null, storage: null, saveWorkspaceFrequency: null, experimentLifetime: null };
    const r = parseRequest(JSON.stringify(f));
    expect(r.experiment.args).toEqual([]);
    expect(r.experiment.pythonenv).toEqual([]);
    expect(r.experiment.pythonver).toBe("3");
    expect(r.experiment.resources).toEqual({ cpus: 0, ramBytes: 0, hddBytes: 0, gpus: 0, gpuMemBytes: 0 });
    expect(r.experiment.maxDurationMs).toBeUndefined();
    expect(r.experiment.timeAddedMs).toBeUndefined();
    expect(r.experiment.artifacts.modeldir).toBeUndefined();
    const ws = r.experiment.artifacts.workspace!;
    expect(ws.mutable).toBe(false);
    expect(ws.unpack).toBe(true);
    expect(ws.credentials).toBeUndefined();
    expect(ws.key).toBeUndefined();
    expect(r.config.env).toEqual({});
    expect(r.config.pip).toEqual([]);
    expect(r.config.experimentLifetimeMs).toBeUndefined();
  });

  test("config may be absent or null", () => {
    expect(parseRequest(JSON.stringify(minimal())).config.env).toEqual({});
    expect(parseRequest(JSON.stringify(minimal({}, null as unknown as Json))).config.env).toEqual({});
  });

  test("numbers as strings", () => {
    const body = minimal({
      resources_needed: { gpuCount: "1", cpus: "2", ram: "512mb", hdd: 1024, gpuMem: "8gib" },
      time_added: "1700000000.5",
    });
    const r = parseRequest(JSON.stringify(body));
    expect(r.experiment.resources.gpus).toBe(1);
    expect(r.experiment.resources.cpus).toBe(2);
    expect(r.experiment.resources.ramBytes).toBe(512e6);
    expect(r.experiment.resources.hddBytes).toBe(1024);
    expect(r.experiment.resources.gpuMemBytes).toBe(8 * GiB);
    expect(r.experiment.timeAddedMs).toBe(1700000000500);
  });

  test("gpus and gpuCount: the larger wins", () => {
    const r = parseRequest(JSON.stringify(minimal({ resources_needed: { gpus: "2", gpuCount: 1 } })));
    expect(r.experiment.resources.gpus).toBe(2);
  });

  test("booleans as strings and numbers for mutable/unpack", () => {
    const f = fixture();
    f.experiment.artifacts.workspace.mutable = "false";
    f.experiment.artifacts.workspace.unpack = "True";
    f.experiment.artifacts.modeldir.mutable = 1;
    f.experiment.artifacts.modeldir.unpack = 0;
    const r = parseRequest(JSON.stringify(f));
    expect(r.experiment.artifacts.workspace!.mutable).toBe(false);
    expect(r.experiment.artifacts.workspace!.unpack).toBe(true);
    expect(r.experiment.artifacts.modeldir!.mutable).toBe(true);
    expect(r.experiment.artifacts.modeldir!.unpack).toBe(false);
  });

  test("numeric args and pythonver are accepted as strings", () => {
    const r = parseRequest(JSON.stringify(minimal({ args: ["--epochs", 5, true], pythonver: 3.6 })));
    expect(r.experiment.args).toEqual(["--epochs", "5", "true"]);
    expect(r.experiment.pythonver).toBe("3.6");
  });

  test("unknown keys are ignored at every level", () => {
    const f = fixture();
    f.surprise = { deeply: ["nested"] };
    f.experiment.brand_new_field = 42;
    f.experiment.resources_needed.tpus = 8;
    f.experiment.artifacts.workspace.checksum_algo = "blake3";
    f.experiment.artifacts.workspace.credentials.aws.extra = "x";
    f.config.whatever = [1, 2, 3];
    const r = parseRequest(JSON.stringify(f));
    expect(r.experiment.key).toBe("1795881848_78bc9b0b-d826-4f48-b506-cc1c44343247");
    expect(r.experiment.artifacts.workspace!.credentials?.aws?.accessKey).toBe("AKIAEXAMPLEKEY");
  });

  test("secret_key is accepted as an alias of secret_access_key", () => {
    const f = fixture();
    const aws = f.experiment.artifacts.workspace.credentials.aws;
    delete aws.secret_access_key;
    aws.secret_key = "aliasSecret456";
    aws.session_token = "sess-tok-789";
    f.config.storage.credentials.aws = { access_key: "AK2", secret_key: "storageAlias" };
    const r = parseRequest(JSON.stringify(f));
    expect(r.experiment.artifacts.workspace!.credentials?.aws).toEqual({
      accessKey: "AKIAEXAMPLEKEY",
      secretAccessKey: "aliasSecret456",
      sessionToken: "sess-tok-789",
      region: "us-west-2",
    });
    expect(r.config.storageCredentials?.aws?.secretAccessKey).toBe("storageAlias");
  });

  test("raw newlines and tabs inside JSON strings are accepted", () => {
    const body = JSON.stringify(minimal({ args: ["--msg", "'PLACEHOLDER'"] }), null, 1).replace(
      "PLACEHOLDER",
      "line one\nline\ttwo",
    );
    expect(() => JSON.parse(body)).toThrow(); // really not strict JSON
    const r = parseRequest(body);
    expect(r.experiment.args).toEqual(["--msg", "line one\nline\ttwo"]);
  });

  test("raw CRLF inside a config.env string is accepted", () => {
    const body = JSON.stringify(minimal({}, { env: { NOTE: "PLACEHOLDER" } })).replace("PLACEHOLDER", "a\r\nb");
    expect(parseRequest(body).config.env.NOTE).toBe("a\r\nb");
  });

  test("a string pythonenv is split by newlines, blanks and comments dropped", () => {
    const r = parseRequest(
      JSON.stringify(minimal({ pythonenv: "numpy==1.26.4\r\n\n# comment\n  scipy==1.11.0  \nrequests" })),
    );
    expect(r.experiment.pythonenv).toEqual(["numpy==1.26.4", "scipy==1.11.0", "requests"]);
  });

  test("pkg-resources==0.0.0 in pythonenv still parses (it is skipped later)", () => {
    const r = parseRequest(JSON.stringify(minimal({ pythonenv: ["pkg-resources==0.0.0", "numpy==1.26.4"] })));
    expect(r.experiment.pythonenv).toContain("numpy==1.26.4");
  });

  test("config.pip as a list or a string", () => {
    expect(parseRequest(JSON.stringify(minimal({}, { pip: ["six", "", "  tqdm "] }))).config.pip).toEqual([
      "six",
      "tqdm",
    ]);
    expect(parseRequest(JSON.stringify(minimal({}, { pip: "six\ntqdm" }))).config.pip).toEqual(["six", "tqdm"]);
  });

  test("module runs (-m) and container-only jobs (null filename)", () => {
    expect(
      parseRequest(JSON.stringify(minimal({ filename: "-m", args: ["pkg.main", "--x"] }))).experiment.filename,
    ).toBe("-m");
    const container = parseRequest(JSON.stringify({ experiment: { key: "c1", filename: null, artifacts: {} } }));
    expect(container.experiment.filename).toBeNull();
    expect(container.experiment.artifacts).toEqual({});
  });

  test("url artifacts and artifacts with only a local path", () => {
    const r = parseRequest(
      JSON.stringify(
        minimal({
          artifacts: {
            ...minimal().experiment.artifacts,
            data: { url: "https://example.com/data.tar", mutable: false },
            clientonly: { local: "/home/me/stuff", mutable: true },
          },
        }),
      ),
    );
    expect(r.experiment.artifacts.data?.qualified).toBe("https://example.com/data.tar");
    expect(r.experiment.artifacts.clientonly).toBeUndefined();
  });

  test("file: qualified artifacts without bucket or credentials", () => {
    const r = parseRequest(
      JSON.stringify(
        minimal({ artifacts: { workspace: { qualified: "file://tmp/store/bucket/blobstore/x.tar", mutable: false } } }),
      ),
    );
    expect(r.experiment.artifacts.workspace?.qualified).toBe("file://tmp/store/bucket/blobstore/x.tar");
    expect(r.experiment.artifacts.workspace?.credentials).toBeUndefined();
    expect(r.experiment.artifacts.workspace?.bucket).toBeUndefined();
  });

  test("saveFrequency in seconds becomes milliseconds", () => {
    const f = fixture();
    f.experiment.artifacts.modeldir.saveFrequency = 30;
    f.experiment.artifacts.tb.saveFrequency = "2m";
    const r = parseRequest(JSON.stringify(f));
    expect(r.experiment.artifacts.modeldir!.saveFrequencyMs).toBe(30_000);
    expect(r.experiment.artifacts.tb!.saveFrequencyMs).toBe(120_000);
  });
});

describe("errors name the field and the value", () => {
  test("not JSON", () => {
    const err = fault("this is {not json");
    expect(err).toBeInstanceOf(RequestError);
    expect(err.message).toContain("(message)");
    expect(err.message).toContain("this is {not json");
    expect(err.message).toContain("not valid JSON");
  });

  test("empty body", () => {
    const err = fault("   \n ");
    expect(err.message).toContain("(message)");
    expect(err.message).toContain("empty");
  });

  test("JSON that is not an object", () => {
    const err = fault("[1,2,3]");
    expect(err.message).toContain("(message)");
    expect(err.message).toContain("[1,2,3]");
  });

  test("missing experiment", () => {
    const err = fault(JSON.stringify({ config: {} }));
    expect(err).toBeInstanceOf(RequestError);
    expect(err.message).toContain("experiment");
    expect(err.message).toContain("(missing)");
    expect(err.context.field).toBe("experiment");
  });

  test("experiment that is not an object", () => {
    const err = fault(JSON.stringify({ experiment: "exp-1" }));
    expect(err.message).toContain("experiment");
    expect(err.message).toContain('"exp-1"');
  });

  test("missing key", () => {
    const body = minimal();
    delete body.experiment.key;
    const err = fault(JSON.stringify(body));
    expect(err.message).toContain("experiment.key");
    expect(err.message).toContain("(missing)");
    expect(err.context.field).toBe("experiment.key");
  });

  test("empty or null key", () => {
    expect(fault(JSON.stringify(minimal({ key: "" }))).message).toContain("experiment.key");
    expect(fault(JSON.stringify(minimal({ key: null }))).message).toContain("experiment.key");
  });

  test("key with a slash", () => {
    const err = fault(JSON.stringify(minimal({ key: "../etc/passwd" })));
    expect(err.message).toContain("experiment.key");
    expect(err.message).toContain('"../etc/passwd"');
    const err2 = fault(JSON.stringify(minimal({ key: "a/b" })));
    expect(err2.message).toContain('"a/b"');
    expect(err2.message).toContain("slash");
  });

  test('ram "lots"', () => {
    const err = fault(JSON.stringify(minimal({ resources_needed: { ram: "lots" } })));
    expect(err.message).toContain("experiment.resources_needed.ram");
    expect(err.message).toContain('"lots"');
  });

  test("cpus that are not a number", () => {
    const err = fault(JSON.stringify(minimal({ resources_needed: { cpus: "many" } })));
    expect(err.message).toContain("experiment.resources_needed.cpus");
    expect(err.message).toContain('"many"');
  });

  test('max_duration "soon"', () => {
    const err = fault(JSON.stringify(minimal({ max_duration: "soon" })));
    expect(err.message).toContain("experiment.max_duration");
    expect(err.message).toContain('"soon"');
  });

  test("args not a list", () => {
    const err = fault(JSON.stringify(minimal({ args: "--lr 0.1" })));
    expect(err.message).toContain("experiment.args");
    expect(err.message).toContain('"--lr 0.1"');
    expect(err.message).toContain("list");
  });

  test("an arg with an unterminated quote", () => {
    const err = fault(JSON.stringify(minimal({ args: ["ok", "'broken"] })));
    expect(err.message).toContain("experiment.args[1]");
    expect(err.message).toContain("'broken");
  });

  test("an arg that is an object", () => {
    const err = fault(JSON.stringify(minimal({ args: ["ok", { a: 1 }] })));
    expect(err.message).toContain("experiment.args[1]");
    expect(err.message).toContain('{"a":1}');
  });

  test("encrypted {message: {...}} form is a PermanentError mentioning encryption", () => {
    const err = fault(
      JSON.stringify({
        message: {
          experiment: { status: "waiting", pythonver: "3.6" },
          payload: "abc,def",
          signature: "sig",
          fingerprint: "SHA256:x",
        },
      }),
    );
    expect(err).toBeInstanceOf(PermanentError);
    expect(err.message).toContain("message");
    expect(err.message).toContain("encrypted");
  });

  test("filename with ..", () => {
    const err = fault(JSON.stringify(minimal({ filename: "../outside.py" })));
    expect(err.message).toContain("experiment.filename");
    expect(err.message).toContain('"../outside.py"');
    expect(fault(JSON.stringify(minimal({ filename: "sub/../../x.py" }))).message).toContain('"sub/../../x.py"');
  });

  test("absolute filename", () => {
    const err = fault(JSON.stringify(minimal({ filename: "/etc/passwd" })));
    expect(err.message).toContain("experiment.filename");
    expect(err.message).toContain('"/etc/passwd"');
  });

  test("a script without a workspace artifact", () => {
    const err = fault(JSON.stringify(minimal({ artifacts: {} })));
    expect(err.message).toContain("experiment.artifacts.workspace");
  });

  test("bad pythonver", () => {
    const err = fault(JSON.stringify(minimal({ pythonver: "python3" })));
    expect(err.message).toContain("experiment.pythonver");
    expect(err.message).toContain('"python3"');
  });

  test("bad artifact label", () => {
    const body = minimal();
    body.experiment.artifacts["../up"] = { qualified: "s3://h/b/k", mutable: true };
    const err = fault(JSON.stringify(body));
    expect(err.message).toContain("experiment.artifacts.../up");
    expect(err.message).toContain('"../up"');
  });

  test("bad mutable flag", () => {
    const body = minimal();
    body.experiment.artifacts.workspace.mutable = "perhaps";
    const err = fault(JSON.stringify(body));
    expect(err.message).toContain("experiment.artifacts.workspace.mutable");
    expect(err.message).toContain('"perhaps"');
  });

  test("half credentials name the field and do not print the secret", () => {
    const body = minimal();
    body.experiment.artifacts.workspace.credentials = { aws: { secret_access_key: "topSecretValue" } };
    const err = fault(JSON.stringify(body));
    expect(err.message).toContain("experiment.artifacts.workspace.credentials.aws");
    expect(err.message).not.toContain("topSecretValue");
  });

  test("bad config.env name and bad experimentLifetime", () => {
    const e1 = fault(JSON.stringify(minimal({}, { env: { "BAD-NAME": "x" } })));
    expect(e1.message).toContain("config.env.BAD-NAME");
    const e2 = fault(JSON.stringify(minimal({}, { experimentLifetime: "forever" })));
    expect(e2.message).toContain("config.experimentLifetime");
    expect(e2.message).toContain('"forever"');
  });
});
