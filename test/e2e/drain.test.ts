// Drain and resume without restarts, from the compiled binary on a local queue with file storage:
// SIGUSR1 / SIGUSR2, and the Kubernetes ConfigMap (STATE, QUEUE_MATCH) followed through the real
// @kubernetes/client-node against the API stand-in in test/helpers/k8s-api-server.ts. In each
// case the running experiment finishes (output uploaded, message acked), a second request is not
// taken while drained, and is taken after the resume.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { K8sApiServer } from "../helpers/k8s-api-server.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../helpers/e2e.ts";

const SLEEPER = `
import os, time
print("started", flush=True)
time.sleep(float(os.environ.get("SLEEP_S", "0")))
print("done sleeping", flush=True)
`;

const experiment = (sb: Sandbox, sleepS: string) =>
  simpleExperiment(sb.storageRoot, { "main.py": SLEEPER }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = { SLEEP_S: sleepS };
  });

/**
 * How long a drained runner is watched to show it takes nothing (several poll rounds). Every
 * sleep of it is a negative check: "nothing is started" has no event to wait for.
 */
const DRAINED_WATCH_MS = 3000;

const started = (key: string) => new RegExp(`starting experiment ${key}`);
const finished = (key: string) => new RegExp(`experiment ${key} finished`);

/** The first experiment finished, was uploaded and acked; the second is untouched in its queue. */
async function expectFirstDoneSecondWaiting(
  r: RunnerProcess,
  sb: Sandbox,
  queue: string,
  first: ReturnType<typeof experiment>,
  second: ReturnType<typeof experiment>,
  secondId: string,
) {
  await r.waitForLog(finished(first.key));
  await Bun.sleep(DRAINED_WATCH_MS); // negative check: the second is not taken meanwhile
  expect(tarMember(join(first.experimentDir, "output.tar"))).toContain("done sleeping");
  expect(filesIn(join(sb.queueRoot, ".inflight", queue))).toEqual([]); // acked: the claim is gone
  expect(r.stderr).not.toMatch(started(second.key));
  expect(filesIn(join(sb.queueRoot, queue))).toEqual([secondId]); // the first is gone, the second untouched
}

describe("drain and resume by signal", () => {
  test("SIGUSR1 suspends (running experiment finishes, nothing new taken), SIGUSR2 resumes", async () => {
    const sb = await makeSandbox("drain-signal", { cacheDir: SHARED_CACHE });
    const a = experiment(sb, "4");
    const b = experiment(sb, "0");
    enqueue(sb.queueRoot, "local_drain", a.message);
    const r = new RunnerProcess(sb, ["--limit-tasks", "2"]);
    try {
      await r.waitForLog(started(a.key));
      r.child.kill("SIGUSR1");
      await r.waitForLog(/suspended \(SIGUSR1\): no new work; 1 running experiment/);
      const bId = enqueue(sb.queueRoot, "local_drain", b.message);
      await expectFirstDoneSecondWaiting(r, sb, "local_drain", a, b, bId);
      expect(r.child.exitCode).toBeNull(); // suspended, not exiting
      r.child.kill("SIGUSR2");
      await r.waitForLog(/resumed \(SIGUSR2\): taking work again/);
      await r.waitForLog(finished(b.key));
      expect(await r.exited).toBe(0); // --limit-tasks 2
      expect(tarMember(join(b.experimentDir, "output.tar"))).toContain("done sleeping");
      expect(filesIn(join(sb.queueRoot, "local_drain"))).toEqual([]);
    } finally {
      await r.stop();
    }
  }, 240_000);
});

describe("Kubernetes ConfigMap drain", () => {
  let k8s: K8sApiServer;
  const MAP = "studio-drain";

  beforeAll(async () => {
    const sb = await makeSandbox("k8s-api");
    k8s = new K8sApiServer({ dir: sb.dir });
    await k8s.start();
  });
  afterAll(async () => {
    await k8s?.stop();
  });

  const runner = (sb: Sandbox, map: string, args: string[]) =>
    new RunnerProcess(sb, ["--k8s-configmap", map, ...args], k8s.clusterEnv());

  test("Running → DrainAndSuspend → Running: the running experiment finishes, the " +
    "next waits for the resume", async () => {
    const sb = await makeSandbox("drain-k8s", { cacheDir: SHARED_CACHE });
    k8s.setConfigMap(MAP, { STATE: "Running" });
    const a = experiment(sb, "4");
    const b = experiment(sb, "0");
    enqueue(sb.queueRoot, "local_k8s", a.message);
    const r = runner(sb, MAP, ["--limit-tasks", "2"]);
    try {
      await r.waitForLog(new RegExp(`following ConfigMap ${k8s.namespace}/${MAP}`));
      await r.waitForLog(started(a.key));
      k8s.setConfigMap(MAP, { STATE: "DrainAndSuspend" });
      await r.waitForLog(/suspended \(ConfigMap studio\/studio-drain STATE=DrainAndSuspend\)/);
      const bId = enqueue(sb.queueRoot, "local_k8s", b.message);
      await expectFirstDoneSecondWaiting(r, sb, "local_k8s", a, b, bId);
      // The watch is cut (an API server restart): the runner reconnects and still sees the change.
      k8s.dropWatches();
      k8s.setConfigMap(MAP, { STATE: "Running" });
      await r.waitForLog(/resumed \(ConfigMap studio\/studio-drain STATE=Running\)/);
      await r.waitForLog(finished(b.key));
      expect(await r.exited).toBe(0);
      expect(tarMember(join(b.experimentDir, "output.tar"))).toContain("done sleeping");
      // Every request carried the service-account token; list, then watch from its version.
      const mine = k8s.requests.filter((q) => q.query.fieldSelector === `metadata.name=${MAP}`);
      expect(mine.every((q) => q.authorized)).toBe(true);
      expect(mine.some((q) => q.query.watch === "true" && Number(q.query.resourceVersion) > 0)).toBe(true);
      expect(mine.filter((q) => q.query.watch === "true").length).toBeGreaterThanOrEqual(2);
    } finally {
      await r.stop();
    }
  }, 240_000);

  test("DrainAndTerminate: the running experiment finishes, nothing new is taken, the runner exits 0", async () => {
    const sb = await makeSandbox("drain-k8s-term", { cacheDir: SHARED_CACHE });
    const map = `${MAP}-term`;
    k8s.setConfigMap(map, { STATE: "Running" });
    const a = experiment(sb, "4");
    const b = experiment(sb, "0");
    enqueue(sb.queueRoot, "local_term", a.message);
    const r = runner(sb, map, []);
    try {
      await r.waitForLog(started(a.key));
      k8s.setConfigMap(map, { STATE: "DrainAndTerminate" });
      await r.waitForLog(/draining to exit \(ConfigMap studio\/studio-drain-term STATE=DrainAndTerminate\)/);
      const bId = enqueue(sb.queueRoot, "local_term", b.message);
      expect(await r.exited).toBe(0);
      expect(r.stderr).toMatch(finished(a.key));
      expect(tarMember(join(a.experimentDir, "output.tar"))).toContain("done sleeping");
      expect(filesIn(join(sb.queueRoot, ".inflight", "local_term"))).toEqual([]);
      expect(r.stderr).not.toMatch(started(b.key));
      expect(filesIn(join(sb.queueRoot, "local_term"))).toEqual([bId]);
    } finally {
      await r.stop();
    }
  }, 240_000);

  test("QUEUE_MATCH in the map makes the runner serve another queue without a " +
    "restart; a bad regex is reported and the previous kept", async () => {
    const sb = await makeSandbox("drain-k8s-match", { cacheDir: SHARED_CACHE });
    const map = `${MAP}-match`;
    k8s.setConfigMap(map, { STATE: "Running", QUEUE_MATCH: "^local_first$" });
    const a = experiment(sb, "0");
    const b = experiment(sb, "0");
    enqueue(sb.queueRoot, "local_first", a.message);
    const bId = enqueue(sb.queueRoot, "local_second", b.message);
    const r = runner(sb, map, ["--limit-tasks", "2"]);
    try {
      await r.waitForLog(finished(a.key));
      await Bun.sleep(DRAINED_WATCH_MS); // negative check: b is not taken meanwhile
      expect(r.stderr).not.toMatch(started(b.key));
      expect(filesIn(join(sb.queueRoot, "local_second"))).toEqual([bId]);
      k8s.setConfigMap(map, { STATE: "Running", QUEUE_MATCH: "^local_(first" });
      await r.waitForLog(/QUEUE_MATCH "\^local_\(first" is not a regular expression .*keeping \/\^local_first\$\//);
      await Bun.sleep(DRAINED_WATCH_MS); // negative check: b is not taken meanwhile
      expect(r.stderr).not.toMatch(started(b.key));
      k8s.setConfigMap(map, { STATE: "Running", QUEUE_MATCH: "^local_second$" });
      await r.waitForLog(/queue match \/\^local_first\$\/ → \/\^local_second\$\//);
      await r.waitForLog(/serving local queue local_second/);
      await r.waitForLog(finished(b.key));
      expect(await r.exited).toBe(0);
      expect(tarMember(join(b.experimentDir, "output.tar"))).toContain("done sleeping");
      expect(filesIn(join(sb.queueRoot, "local_second"))).toEqual([]);
    } finally {
      await r.stop();
    }
  }, 240_000);

  test("a missing ConfigMap is not fatal: the runner works, and follows the map once it is created", async () => {
    const sb = await makeSandbox("drain-k8s-missing", { cacheDir: SHARED_CACHE });
    const map = `${MAP}-later`;
    const a = experiment(sb, "0");
    enqueue(sb.queueRoot, "local_later", a.message);
    const r = runner(sb, map, []);
    try {
      await r.waitForLog(/does not exist \(yet\)/);
      await r.waitForLog(finished(a.key));
      k8s.setConfigMap(map, { STATE: "DrainAndTerminate" });
      expect(await r.exited).toBe(0);
      expect(r.stderr).toContain("draining to exit");
    } finally {
      await r.stop();
    }
  }, 240_000);
});
