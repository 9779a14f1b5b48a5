// Covers src/config/load.ts loadSettings with RUN_OPTIONS: defaults, flag > env > YAML precedence, unit conversion, problem reporting.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadSettings } from "../../src/config/load.ts";
import { DEFAULT_QUEUE_MATCH, envName, RUN_OPTIONS } from "../../src/config/options.ts";

const GiB = 2 ** 30;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "studio-runner-config-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function yamlFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("envName", () => {
  test("flag name → upper-case env name", () => {
    expect(envName("queue-root")).toBe("QUEUE_ROOT");
    expect(envName("max-mem")).toBe("MAX_MEM");
  });
});

describe("defaults", () => {
  const s = loadSettings(RUN_OPTIONS, {}, {});

  test("every option has a key; computed defaults are left undefined", () => {
    for (const spec of RUN_OPTIONS) expect(Object.keys(s)).toContain(spec.name);
    expect(s["queue-root"]).toBeUndefined();
    expect(s["working-dir"]).toBeUndefined();
    expect(s.config).toBeUndefined();
    expect(s["queue-mismatch"]).toBeUndefined();
  });

  test("typed defaults", () => {
    expect(s["queue-match"]).toBeInstanceOf(RegExp);
    expect((s["queue-match"] as RegExp).source).toBe(DEFAULT_QUEUE_MATCH);
    expect((s["queue-match"] as RegExp).test("rmq_work")).toBe(true);
    expect((s["queue-match"] as RegExp).test("pubsub_work")).toBe(false);
    expect(s["cache-size"]).toBe(10 * GiB);
    expect(s["venv-cache-size"]).toBe(20 * GiB);
    expect(s["venv-max-age"]).toBe(168 * 3_600_000);
    expect(s["shutdown-grace"]).toBe(10 * 60_000);
    expect(s["max-mem"]).toBe(0);
    expect(s["max-cores"]).toBe(0);
    expect(s["max-deliveries"]).toBe(3);
    expect(s["max-duration"]).toBe(0);
    expect(s["allow-env-secrets"]).toBe(false);
    expect(s.debug).toBe(false);
    expect(s["log-format"]).toBe("human");
  });
});

describe("precedence: flag > environment > YAML file > default", () => {
  test("YAML file keys (dashes or underscores) are read", () => {
    const path = yamlFile("a.yaml", "queue-root: /from/yaml\nmax_mem: 8gib\nmax-cores: 3\ndebug: true\n");
    const s = loadSettings(RUN_OPTIONS, { config: path }, {});
    expect(s["queue-root"]).toBe("/from/yaml");
    expect(s["max-mem"]).toBe(8 * GiB);
    expect(s["max-cores"]).toBe(3);
    expect(s.debug).toBe(true);
    expect(s.config).toBe(path);
  });

  test("the config file path may come from the CONFIG environment variable", () => {
    const path = yamlFile("b.yaml", "queue-root: /from/yaml\n");
    expect(loadSettings(RUN_OPTIONS, {}, { CONFIG: path })["queue-root"]).toBe("/from/yaml");
  });

  test("environment beats YAML", () => {
    const path = yamlFile("c.yaml", "queue-root: /from/yaml\nmax_mem: 8gib\n");
    const s = loadSettings(RUN_OPTIONS, { config: path }, { QUEUE_ROOT: "/from/env", MAX_MEM: "4g" });
    expect(s["queue-root"]).toBe("/from/env");
    expect(s["max-mem"]).toBe(4 * GiB);
  });

  test("flag beats environment and YAML", () => {
    const path = yamlFile("d.yaml", "queue-root: /from/yaml\nmax_mem: 8gib\n");
    const s = loadSettings(
      RUN_OPTIONS,
      { config: path, "queue-root": "/from/flag", "max-mem": "2gib" },
      { QUEUE_ROOT: "/from/env", MAX_MEM: "4g" },
    );
    expect(s["queue-root"]).toBe("/from/flag");
    expect(s["max-mem"]).toBe(2 * GiB);
  });

  test("empty flag or env values fall through to the next source", () => {
    const path = yamlFile("e.yaml", "queue-root: /from/yaml\n");
    const s = loadSettings(RUN_OPTIONS, { config: path, "queue-root": "" }, { QUEUE_ROOT: "" });
    expect(s["queue-root"]).toBe("/from/yaml");
  });

  test("null YAML values fall back to the default", () => {
    const path = yamlFile("f.yaml", "cache-size:\nmax_mem: ~\n");
    const s = loadSettings(RUN_OPTIONS, { config: path }, {});
    expect(s["cache-size"]).toBe(10 * GiB);
    expect(s["max-mem"]).toBe(0);
  });

  test("an empty YAML file is fine", () => {
    const path = yamlFile("empty.yaml", "");
    expect(loadSettings(RUN_OPTIONS, { config: path }, {})["max-deliveries"]).toBe(3);
  });
});

describe("conversion", () => {
  test("sizes and durations become bytes and milliseconds", () => {
    const s = loadSettings(
      RUN_OPTIONS,
      { "max-mem": "16gib", "cache-size": "512mb", "max-duration": "1h30m", "limit-idle-duration": "300s" },
      { MAX_DISK: "3g", SHUTDOWN_GRACE: "90" },
    );
    expect(s["max-mem"]).toBe(16 * GiB);
    expect(s["cache-size"]).toBe(512e6);
    expect(s["max-disk"]).toBe(3 * GiB);
    expect(s["max-duration"]).toBe(90 * 60_000);
    expect(s["limit-idle-duration"]).toBe(300_000);
    expect(s["shutdown-grace"]).toBe(90_000);
  });

  test("booleans, integers, regexes and enums from strings", () => {
    const s = loadSettings(
      RUN_OPTIONS,
      { debug: true, "queue-mismatch": "_test$" },
      { ALLOW_ENV_SECRETS: "yes", LIMIT_TASKS: "5", LOG_FORMAT: "json" },
    );
    expect(s.debug).toBe(true);
    expect(s["allow-env-secrets"]).toBe(true);
    expect(s["limit-tasks"]).toBe(5);
    expect((s["queue-mismatch"] as RegExp).test("rmq_test")).toBe(true);
    expect(s["log-format"]).toBe("json");
  });

  test("YAML native numbers and booleans are accepted", () => {
    const path = yamlFile("native.yaml", "max-cores: 8\nmax-mem: 1073741824\npip-strict: false\nmax-duration: 60\n");
    const s = loadSettings(RUN_OPTIONS, { config: path }, {});
    expect(s["max-cores"]).toBe(8);
    expect(s["max-mem"]).toBe(GiB);
    expect(s["pip-strict"]).toBe(false);
    expect(s["max-duration"]).toBe(60_000);
  });
});

describe("problems", () => {
  test("three problems at once, each naming where the value came from and the value", () => {
    const err = configError(() =>
      loadSettings(RUN_OPTIONS, { "max-mem": "lots" }, { MAX_DURATION: "soon", QUEUE_MATCH: "rmq_(unclosed" }),
    );
    expect(err.problems.length).toBe(3);
    const mem = err.problems.find((p) => p.includes("--max-mem"));
    const dur = err.problems.find((p) => p.includes("MAX_DURATION"));
    const re = err.problems.find((p) => p.includes("QUEUE_MATCH"));
    expect(mem).toBeDefined();
    expect(mem).toContain('"lots"');
    expect(mem).toContain("size");
    expect(dur).toBeDefined();
    expect(dur).toContain('"soon"');
    expect(dur).toContain("duration");
    expect(re).toBeDefined();
    expect(re).toContain('"rmq_(unclosed"');
    expect(re).toContain("regular expression");
    // The message lists them all too.
    for (const p of err.problems) expect(err.message).toContain(p);
  });

  test("problems in the YAML file name the key and the value", () => {
    const path = yamlFile("bad.yaml", "max_mem: lots\nmax-cores: -2\nlog-format: xml\n");
    const err = configError(() => loadSettings(RUN_OPTIONS, { config: path }, {}));
    expect(err.problems.length).toBe(3);
    expect(err.problems.find((p) => p.includes("max-mem"))).toContain('"lots"');
    expect(err.problems.find((p) => p.includes("max-cores"))).toContain("-2");
    expect(err.problems.find((p) => p.includes("log-format"))).toContain('"xml"');
  });

  test("an unknown YAML key is a problem", () => {
    const path = yamlFile("unknown.yaml", "queue-root: /q\nqueue_rooot: /typo\n");
    const err = configError(() => loadSettings(RUN_OPTIONS, { config: path }, {}));
    expect(err.problems.length).toBe(1);
    expect(err.problems[0]).toContain("queue_rooot");
    expect(err.problems[0]).toContain(path);
  });

  test("a config key inside the config file is a problem", () => {
    const path = yamlFile("nested.yaml", "config: other.yaml\n");
    const err = configError(() => loadSettings(RUN_OPTIONS, { config: path }, {}));
    expect(err.problems[0]).toContain('"config"');
  });

  test("a missing config file or one that is not a mapping is a problem", () => {
    const missing = join(dir, "does-not-exist.yaml");
    expect(configError(() => loadSettings(RUN_OPTIONS, { config: missing }, {})).problems[0]).toContain(missing);
    const list = yamlFile("list.yaml", "- a\n- b\n");
    expect(configError(() => loadSettings(RUN_OPTIONS, { config: list }, {})).problems[0]).toContain("mapping");
    const broken = yamlFile("broken.yaml", "a: [unclosed\n");
    expect(configError(() => loadSettings(RUN_OPTIONS, { config: broken }, {})).problems[0]).toContain(broken);
  });

  test("file problems and value problems are reported together", () => {
    const path = yamlFile("mixed.yaml", "nope: 1\n");
    const err = configError(() =>
      loadSettings(RUN_OPTIONS, { config: path, "max-disk": "big" }, { LIMIT_TASKS: "many" }),
    );
    expect(err.problems.length).toBe(3);
  });
});
