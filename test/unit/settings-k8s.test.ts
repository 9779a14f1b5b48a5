// --k8s-serviceaccount-dir: the setting (flag, STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR or the config
// file) names the service-account directory the drain reaches the API server with.

import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startConfigMapDrain } from "../../src/k8s/settings.ts";
import { LiveQueueFilter } from "../../src/queue/live-filter.ts";

describe("--k8s-serviceaccount-dir", () => {
  test("the setting wins over the variable in the environment the drain is given", async () => {
    const fromSetting = mkdtempSync(join(tmpdir(), "sa-setting-"));
    const debug: string[] = [];
    const log = { info: () => {}, warn: () => {}, error: () => {}, debug: (m: string) => debug.push(m) };
    const env = {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: "9",
      STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: "/nonexistent-env-dir",
    };
    const drain = await startConfigMapDrain(
      { "k8s-configmap": "studioml-go-runner", "k8s-serviceaccount-dir": fromSetting },
      { setState: () => {} },
      new LiveQueueFilter({}),
      log,
      env,
    );
    expect(drain).toBeUndefined();
    expect(debug.join("\n")).toContain(`no service-account token at ${join(fromSetting, "token")}`);
  });
});
