// The maintenance drain's parts: the live queue filter, the ConfigMap's STATE mapping, how a map
// is applied to the runner (edge-triggered STATE, bad values kept out), the signals, and the
// ConfigMap watch through the real @kubernetes/client-node against the API stand-in (410 relist,
// refused tokens, deleted maps, reconnection).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectCluster, type ClusterAccess } from "../../src/k8s/cluster.ts";
import { kubeConfigFor } from "../../src/k8s/kube-config.ts";
import { ConfigMapDrain } from "../../src/k8s/configmap-drain.ts";
import { ConfigMapWatch, type ConfigMapData } from "../../src/k8s/configmap-watch.ts";
import { DrainStateError, filterOverrideOf, runnerStateOf } from "../../src/k8s/drain-state.ts";
import { startConfigMapDrain } from "../../src/k8s/settings.ts";
import type { RunnerState } from "../../src/observe/events.ts";
import { LiveQueueFilter, QueueFilterError } from "../../src/queue/live-filter.ts";
import { LocalQueueBackend } from "../../src/queue/local/local-queue.ts";
import { queueWanted } from "../../src/queue/task-queue.ts";
import { installMaintenanceSignals } from "../../src/runner/maintenance-signals.ts";
import { K8sApiServer } from "../helpers/k8s-api-server.ts";
import { waitFor } from "../helpers/wait-for.ts";

const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

describe("LiveQueueFilter", () => {
  test("overrides replace the configured regexes; absent or empty values go back to them", () => {
    const f = new LiveQueueFilter({ match: /^local_/, mismatch: /_skip$/ });
    expect(queueWanted("local_a", f)).toBe(true);
    expect(f.apply({ match: "^rmq_" }).changes).toEqual(["queue match /^local_/ → /^rmq_/"]);
    expect(queueWanted("local_a", f)).toBe(false);
    expect(queueWanted("rmq_a", f)).toBe(true);
    expect(queueWanted("rmq_a_skip", f)).toBe(false);
    f.apply({ match: "^rmq_", mismatch: "^rmq_b" });
    expect(queueWanted("rmq_a_skip", f)).toBe(true);
    expect(queueWanted("rmq_b", f)).toBe(false);
    expect(f.apply({ match: "^rmq_", mismatch: "^rmq_b" }).changes).toEqual([]);
    f.apply({ match: "", mismatch: undefined });
    expect(f.match?.source).toBe("^local_");
    expect(f.mismatch?.source).toBe("_skip$");
  });

  test(
    "a bad regex is reported with its field and value, and the previous one is " +
      "kept; the other field still applies",
    () => {
      const f = new LiveQueueFilter({ match: /^local_/ });
      f.apply({ match: "^local_a$" });
      const { problems, changes } = f.apply({ match: "^(local", mismatch: "_b$" });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toBeInstanceOf(QueueFilterError);
      expect(problems[0]!.field).toBe("QUEUE_MATCH");
      expect(problems[0]!.value).toBe("^(local");
      expect(problems[0]!.message).toContain('QUEUE_MATCH "^(local" is not a regular expression');
      expect(f.match?.source).toBe("^local_a$");
      expect(changes).toEqual(["queue mismatch (none) → /_b$/"]);
    },
  );

  test("a backend holding the filter sees a change at its next discovery", async () => {
    const root = mkdtempSync(join(tmpdir(), "live-filter-"));
    for (const q of ["local_one", "local_two"]) mkdirSync(join(root, q));
    const filter = new LiveQueueFilter({ match: /^local_one$/ });
    const backend = new LocalQueueBackend({ root, maxDeliveries: 3, filter });
    try {
      expect(await backend.discover()).toEqual(["local_one"]);
      filter.apply({ match: "^local_t" });
      expect(await backend.discover()).toEqual(["local_two"]);
    } finally {
      await backend.close();
    }
  });
});

describe("ConfigMap STATE", () => {
  test("maps the Go runner's states; blanks and case are forgiven; none means running", () => {
    expect(runnerStateOf("Running")).toBe("running");
    expect(runnerStateOf("DrainAndSuspend")).toBe("suspended");
    expect(runnerStateOf(" drainandterminate ")).toBe("terminating");
    expect(runnerStateOf(undefined)).toBe("running");
    expect(runnerStateOf("")).toBe("running");
    expect(() => runnerStateOf("Paused")).toThrow(DrainStateError);
    expect(() => runnerStateOf("Paused")).toThrow(
      'STATE "Paused" is not one of Running, DrainAndSuspend, DrainAndTerminate',
    );
  });

  test("QUEUE_MATCH / QUEUE_MISMATCH become the filter override", () => {
    expect(filterOverrideOf({ STATE: "Running", QUEUE_MATCH: " ^a ", QUEUE_MISMATCH: "" })).toEqual({
      match: "^a",
      mismatch: undefined,
    });
    expect(filterOverrideOf(undefined)).toEqual({ match: undefined, mismatch: undefined });
  });
});

describe("ConfigMapDrain", () => {
  const setup = () => {
    const calls: Array<[RunnerState, string]> = [];
    const errors: string[] = [];
    const filter = new LiveQueueFilter({ match: /^local/ });
    const drain = new ConfigMapDrain(
      { setState: (s, r) => calls.push([s, r]) },
      filter,
      { info: () => {}, error: (m) => errors.push(m) },
      "ConfigMap ns/m",
    );
    return { calls, errors, filter, drain };
  };

  test("STATE is applied when it changes; an unrelated edit does not undo a signal's state", () => {
    const { calls, drain } = setup();
    drain.apply({ STATE: "Running" });
    drain.apply({ STATE: "Running", OTHER: "x" });
    drain.apply({ STATE: "DrainAndSuspend" });
    drain.apply({ STATE: "DrainAndSuspend", QUEUE_MATCH: "^rmq" });
    drain.apply({ STATE: "Running" });
    expect(calls).toEqual([
      ["running", "ConfigMap ns/m STATE=Running"],
      ["suspended", "ConfigMap ns/m STATE=DrainAndSuspend"],
      ["running", "ConfigMap ns/m STATE=Running"],
    ]);
  });

  test("no map at start asks nothing; a deleted map (or STATE removed) ends the drain it asked for", () => {
    const { calls, drain } = setup();
    drain.apply(undefined);
    expect(calls).toEqual([]);
    drain.apply({ STATE: "DrainAndSuspend" });
    drain.apply(undefined);
    expect(calls.map(([s]) => s)).toEqual(["suspended", "running"]);
    expect(calls[1]![1]).toContain("no longer sets STATE");
  });

  test("an unknown STATE and a bad regex are logged with key and value; state and filter are kept", () => {
    const { calls, errors, drain, filter } = setup();
    drain.apply({ STATE: "DrainAndSuspend", QUEUE_MATCH: "^local_x$" });
    drain.apply({ STATE: "Pause", QUEUE_MATCH: "[" });
    expect(calls.map(([s]) => s)).toEqual(["suspended"]);
    expect(errors.some((e) => e.includes('STATE "Pause" is not one of'))).toBe(true);
    expect(
      errors.some(
        (e) => e.includes('QUEUE_MATCH "[" is not a regular expression') && e.includes("keeping /^local_x$/"),
      ),
    ).toBe(true);
    expect(filter.match?.source).toBe("^local_x$");
  });
});

describe("maintenance signals", () => {
  test("SIGUSR1 suspends and SIGUSR2 resumes until removed", () => {
    const calls: Array<[RunnerState, string]> = [];
    const remove = installMaintenanceSignals({ setState: (s, r) => calls.push([s, r]) });
    process.emit("SIGUSR1", "SIGUSR1");
    process.emit("SIGUSR2", "SIGUSR2");
    remove();
    process.emit("SIGUSR2", "SIGUSR2");
    expect(calls).toEqual([
      ["suspended", "SIGUSR1"],
      ["running", "SIGUSR2"],
    ]);
  });
});

describe("cluster detection", () => {
  test("needs the service host, port and a token file", () => {
    const dir = mkdtempSync(join(tmpdir(), "sa-"));
    expect(detectCluster({})).toHaveProperty("notInCluster");
    expect(
      detectCluster({
        KUBERNETES_SERVICE_HOST: "10.0.0.1",
        KUBERNETES_SERVICE_PORT: "443",
        STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: dir,
      }),
    ).toHaveProperty("notInCluster");
    writeFileSync(join(dir, "token"), "t");
    writeFileSync(join(dir, "namespace"), "ml\n");
    expect(
      detectCluster({
        KUBERNETES_SERVICE_HOST: "fd00::1",
        KUBERNETES_SERVICE_PORT: "443",
        STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: dir,
      }),
    ).toEqual({
      server: "https://[fd00::1]:443",
      caFile: join(dir, "ca.crt"),
      tokenFile: join(dir, "token"),
      podNamespace: "ml",
    });
  });
});

describe("startConfigMapDrain", () => {
  const filter = new LiveQueueFilter({});
  const target = { setState: () => {} };
  test("does nothing outside a cluster, or with --k8s-configmap none", async () => {
    expect(
      await startConfigMapDrain({ "k8s-configmap": "studioml-go-runner" }, target, filter, quiet, {}),
    ).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), "sa-"));
    writeFileSync(join(dir, "token"), "t");
    const env = {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: "9",
      STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: dir,
    };
    for (const off of ["none", "off", ""])
      expect(await startConfigMapDrain({ "k8s-configmap": off }, target, filter, quiet, env)).toBeUndefined();
  });

  test("a pod map's keys win over the shared map's; removing them falls back to the shared map", async () => {
    const server = new K8sApiServer({ dir: mkdtempSync(join(tmpdir(), "k8s-pod-")) });
    await server.start();
    const calls: Array<[RunnerState, string]> = [];
    const live = new LiveQueueFilter({ match: /^local/ });
    try {
      server.setConfigMap("shared", { STATE: "Running", QUEUE_MATCH: "^rmq_" });
      server.setConfigMap("pod-1", { STATE: "DrainAndSuspend" });
      const drain = await startConfigMapDrain(
        { "k8s-configmap": "shared", "k8s-pod-configmap": "pod-1" },
        { setState: (s, r) => calls.push([s, r]) },
        live,
        quiet,
        server.clusterEnv(),
      );
      expect(drain).toBeDefined();
      // Both maps were read before start-up went on.
      expect(calls.at(-1)).toEqual(["suspended", "ConfigMap studio/pod-1 STATE=DrainAndSuspend"]);
      expect(live.match?.source).toBe("^rmq_");
      server.setConfigMap("pod-1", { QUEUE_MATCH: "^sqs_" });
      await waitFor("the drain state to be running again", () => calls.at(-1)?.[0] === "running", 10_000, 20);
      expect(calls.at(-1)).toEqual(["running", "ConfigMap studio/shared STATE=Running"]);
      expect(live.match?.source).toBe("^sqs_");
      await drain!.stop();
    } finally {
      await server.stop();
    }
  });
});

describe("ConfigMapWatch against the API stand-in", () => {
  let server: K8sApiServer;
  let access: ClusterAccess;
  beforeAll(async () => {
    server = new K8sApiServer({ dir: mkdtempSync(join(tmpdir(), "k8s-unit-")) });
    await server.start();
    access = detectCluster(server.clusterEnv()) as ClusterAccess;
  });
  afterAll(async () => {
    await server.stop();
  });

  const follow = (name: string, options: { tokenFile?: string } = {}) => {
    const seen: Array<ConfigMapData | undefined> = [];
    const warnings: string[] = [];
    const watch = new ConfigMapWatch({
      kubeConfig: kubeConfigFor({ ...access, ...options }),
      namespace: server.namespace,
      name,
      onChange: (d) => seen.push(d),
      log: { info: () => {}, warn: (m) => warnings.push(m) },
      backoff: { initialMs: 50, maxMs: 200 },
      watchTimeoutS: 2,
    });
    watch.start();
    return { seen, warnings, watch };
  };
  const until = (cond: () => boolean, timeoutMs = 10_000) => waitFor("the watch to see it", cond, timeoutMs, 20);

  test("missing, created, changed, deleted: each reaches onChange once", async () => {
    const { seen, watch } = follow("lifecycle");
    await watch.firstRead;
    expect(seen).toEqual([undefined]);
    server.setConfigMap("lifecycle", { STATE: "Running" });
    await until(() => seen.length === 2);
    server.setConfigMap("lifecycle", { STATE: "Running" }); // same data: not given again
    server.setConfigMap("lifecycle", { STATE: "DrainAndSuspend" });
    await until(() => seen.length === 3);
    server.deleteConfigMap("lifecycle");
    await until(() => seen.length === 4);
    await watch.stop();
    expect(seen).toEqual([undefined, { STATE: "Running" }, { STATE: "DrainAndSuspend" }, undefined]);
  });

  test("a version the server no longer has (410 Expired) makes it list again; a dropped watch resumes", async () => {
    server.setConfigMap("expiring", { STATE: "Running" });
    const { seen, watch } = follow("expiring");
    await until(() => seen.length === 1);
    const lists = () =>
      server.requests.filter((r) => r.query.fieldSelector === "metadata.name=expiring" && r.query.watch === undefined)
        .length;
    expect(lists()).toBe(1);
    server.dropWatches();
    server.setConfigMap("expiring", { STATE: "DrainAndSuspend" });
    await until(() => seen.length === 2);
    expect(lists()).toBe(1); // resumed from its version, no new list
    server.compact();
    server.setConfigMap("other-map", { A: "1" });
    server.setConfigMap("other-map", { A: "2" });
    server.compact();
    server.dropWatches();
    server.setConfigMap("expiring", { STATE: "Running" });
    await until(() => seen.length === 3);
    expect(lists()).toBe(2); // 410 → listed again
    await watch.stop();
    expect(seen.at(-1)).toEqual({ STATE: "Running" });
  });

  test(
    "a refused token is logged (never the token) and retried; an API server that " + "comes back is followed again",
    async () => {
      const bad = join(mkdtempSync(join(tmpdir(), "badtoken-")), "token");
      writeFileSync(bad, "not-the-token");
      const refused = follow("refused", { tokenFile: bad });
      await until(() => refused.warnings.length > 0);
      await refused.watch.stop();
      expect(refused.warnings[0]).toContain("HTTP 401");
      expect(refused.warnings[0]).toContain("token was refused");
      expect(refused.warnings.join("\n")).not.toContain(server.token);

      server.failWith = 503;
      const flaky = follow("flaky");
      await until(() => flaky.warnings.length > 0);
      server.setConfigMap("flaky", { STATE: "DrainAndTerminate" });
      server.failWith = undefined;
      await until(() => flaky.seen.length === 1);
      await flaky.watch.stop();
      expect(flaky.seen).toEqual([{ STATE: "DrainAndTerminate" }]);
      expect(flaky.warnings[0]).toContain("HTTP 503");
    },
  );
});
