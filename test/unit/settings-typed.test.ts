// Settings typed from the option tables: each value's type follows its option's type (checked by
// tsc here), explicit environment names (OptionSpec.env), and the tables' names are unique.

import { describe, expect, test } from "bun:test";
import { ALL_RUN_OPTIONS, type RunSettings } from "../../src/cli/run-options.ts";
import { cittyArgs } from "../../src/cli/flags.ts";
import { GOOGLE_CERTS_OPTION } from "../../src/config/google-certs.ts";
import { ConfigError, loadSettings } from "../../src/config/load.ts";
import { envOf, RUN_OPTIONS } from "../../src/config/options.ts";
import { textSetting } from "../../src/config/settings.ts";
import { storageUrl } from "../../src/config/storage-options.ts";
import { PUBSUB_OPTIONS } from "../../src/queue/pubsub/settings.ts";
import { SUBMIT_OPTIONS } from "../../src/submit/submit-options.ts";

const problemsOf = (f: () => unknown): string[] => {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe("typed settings", () => {
  test("each value has its option's type, undefined only without a default", () => {
    const s: RunSettings = loadSettings(ALL_RUN_OPTIONS, { "max-mem": "1gib" }, {});
    // Assignments without casts: tsc checks the derived types.
    const debug: boolean = s.debug;
    const bytes: number = s["max-mem"];
    const grace: number = s["shutdown-grace"];
    const match: RegExp = s["queue-match"];
    const mismatch: RegExp | undefined = s["queue-mismatch"];
    const format: "human" | "json" = s["log-format"];
    const workingDir: string | undefined = s["working-dir"];
    const roots: string = s["file-storage-roots"];
    const clearText: boolean | undefined = s["clear-text-messages"];
    // @ts-expect-error a boolean setting is not a string
    const wrong: string = s.debug;
    expect([debug, bytes, grace, format, workingDir, roots, clearText, wrong]).toEqual([
      false,
      1024 ** 3,
      600_000,
      "human",
      undefined,
      "",
      undefined,
      false,
    ]);
    expect(match).toBeInstanceOf(RegExp);
    expect(mismatch).toBeUndefined();
  });

  test("option names are unique in run's and submit's tables", () => {
    for (const table of [ALL_RUN_OPTIONS, SUBMIT_OPTIONS]) {
      const names = table.map((o) => o.name);
      expect(names.length).toBe(new Set(names).size);
    }
  });

  test("--google-certs is one spec, declared with the Google credentials, used by Pub/Sub, run and submit", () => {
    expect(PUBSUB_OPTIONS[0]).toBe(GOOGLE_CERTS_OPTION);
    expect(ALL_RUN_OPTIONS.filter((o) => o.name === "google-certs")).toEqual([GOOGLE_CERTS_OPTION]);
    const submit = SUBMIT_OPTIONS.find((o) => o.name === "google-certs")!;
    expect({ type: submit.type, env: envOf(submit) }).toEqual({ type: "path", env: "GOOGLE_CERTS" });
  });

  test("textSetting: blank is unset, text is trimmed", () => {
    expect([textSetting(undefined), textSetting(""), textSetting("  "), textSetting(" a ")]).toEqual([
      undefined,
      undefined,
      undefined,
      "a",
    ]);
  });
});

describe("environment names", () => {
  test("--storage is read from STUDIO_STORAGE (not STORAGE); a problem names the variable", () => {
    expect(loadSettings(RUN_OPTIONS, {}, { STORAGE: "file:///x" }).storage).toBeUndefined();
    expect(loadSettings(RUN_OPTIONS, {}, { STUDIO_STORAGE: "file:///srv/st" }).storage).toBe("file:///srv/st");
    expect(loadSettings(RUN_OPTIONS, { storage: "gs://b" }, { STUDIO_STORAGE: "file:///srv/st" }).storage).toBe(
      "gs://b",
    );
    expect(storageUrl(undefined)).toMatch(/^file:\/\/.*\/\.studioml\/storage$/);
    expect(problemsOf(() => loadSettings(RUN_OPTIONS, {}, { STUDIO_STORAGE: "file:///s", MAX_MEM: "lots" }))).toEqual([
      'MAX_MEM (environment): "lots" is not a size (examples: 512mib, 16gib, 3g)',
    ]);
  });

  test("--k8s-serviceaccount-dir is read from STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR", () => {
    const env = { STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: "/sa", K8S_SERVICEACCOUNT_DIR: "/other" };
    expect(loadSettings(ALL_RUN_OPTIONS, {}, env)["k8s-serviceaccount-dir"]).toBe("/sa");
    expect(loadSettings(ALL_RUN_OPTIONS, { "k8s-serviceaccount-dir": "/flag" }, env)["k8s-serviceaccount-dir"]).toBe(
      "/flag",
    );
  });

  test("--help names each option's variable, and none where it has none", () => {
    const run = cittyArgs(ALL_RUN_OPTIONS);
    expect(run.storage?.description).toContain("(env STUDIO_STORAGE)");
    expect(run["k8s-serviceaccount-dir"]?.description).toContain("(env STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR)");
    expect(run["max-mem"]?.description).toContain("(env MAX_MEM)");
    const submit = cittyArgs(SUBMIT_OPTIONS);
    expect(submit.env?.description).not.toContain("(env ");
    expect(submit["queue-root"]?.description).toContain("(env QUEUE_ROOT)");
    expect(submit["amqp-url"]?.description).toContain("(env AMQP_URL)");
  });
});
