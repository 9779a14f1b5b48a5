// Hole 8 (attack class 17, the runner's own endpoint), from the compiled binary: a job on the
// shared network POSTs /drain and /resume to the runner's --prom-address without a token, with a
// wrong one, and with a rebinding Host; each is refused. Checked on the host: the runner still takes
// the next queued request (not drained), stays suspended once the operator drained it, and says so
// in its log. /status as the job (and the host, with the same request) reads it carries no log line
// of another experiment running at the same time — whose output file on the host does hold them.
// With the token, the test process drains, resumes and stops the runner.

import { describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { POLL_WAIT_MS } from "../../../src/observe/health.ts";
import type { StatusDoc } from "../../../src/observe/status-state.ts";
import {
  enqueue,
  filesIn,
  liveOutputWith,
  makeSandbox,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  type Sandbox,
} from "../../helpers/e2e.ts";

/** Another experimenter's job: prints its canary until the attacker's job has finished (or 4 min). */
const VICTIM = `
import json, os, time, urllib.request
canary, base, attacker = os.environ["CANARY"], os.environ["RUNNER_URL"], os.environ["ATTACKER_KEY"]
deadline = time.time() + 240
i = 0
while time.time() < deadline:
    i += 1
    print(f"{canary} step {i}", flush=True)
    time.sleep(0.3)
    if i % 5 == 0:
        try:
            doc = json.load(urllib.request.urlopen(base + "/status", timeout=5))
            if any(f["key"] == attacker for f in doc["finished"]):
                break
        except Exception as e:
            print("victim: status unreadable", type(e).__name__, flush=True)
`;

/** The hostile job: what it prints only tells the test when to look (never what to believe). */
const ATTACKER = `
import json, os, time, urllib.request, urllib.error
base = os.environ["RUNNER_URL"]
port = base.rsplit(":", 1)[1]
def call(method, path, headers={}):
    r = urllib.request.Request(base + path, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception as e:
        return "error", repr(e)
wrong = {"Authorization": "Bearer " + "0" * 64}
rebind = {"Host": f"evil.example:{port}"}
for name, method, path, headers in [
    ("drain-no-token", "POST", "/drain", {}),
    ("drain-wrong-token", "POST", "/drain", wrong),
    ("drain-rebind", "POST", "/drain", rebind),
    ("drain-exit-no-token", "POST", "/drain?exit=true", {}),
    ("drain-exit-wrong-token", "POST", "/drain?exit=true", wrong),
    ("status-rebind", "GET", "/status", rebind),
]:
    print("attack", name, call(method, path, headers)[0], flush=True)
code, body = call("GET", "/status")
print("attack status", code, "canary-seen" if os.environ["CANARY"] in body else "canary-absent", flush=True)
print("phase 1 done", flush=True)
deadline = time.time() + 180
while time.time() < deadline:
    code, body = call("GET", "/status")
    if code == 200 and json.loads(body)["runner"]["state"] == "suspended":
        break
    time.sleep(0.5)
for name, method, path, headers in [
    ("resume-no-token", "POST", "/resume", {}),
    ("resume-wrong-token", "POST", "/resume", wrong),
    ("resume-rebind", "POST", "/resume", rebind),
]:
    print("attack", name, call(method, path, headers)[0], flush=True)
print("phase 2 done", flush=True)
`;
import { waitFor } from "../../helpers/wait-for.ts";

const QUICK = "print('quick experiment ran', flush=True)\n";

const experiment = (sb: Sandbox, script: string, env: Record<string, string> = {}) =>
  simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = env;
    delete m.config.database; // no status records: this test is about the endpoint
  });

describe("the runner's HTTP endpoint (hole 8)", () => {
  test("a job cannot drain or resume the runner, nor read another experiment's log " +
    "lines from /status; the operator's token can", async () => {
    const sb = await makeSandbox("isolation-http", { cacheDir: SHARED_CACHE });
    const token = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
    const tokenPath = join(sb.dir, "admin-token");
    writeFileSync(tokenPath, `${token}\n`);
    chmodSync(tokenPath, 0o600);
    const auth = { authorization: `Bearer ${token}` };
    const runner = new RunnerProcess(sb, [
      "--prom-address",
      "127.0.0.1:0",
      "--admin-token-file",
      tokenPath,
      "--max-cores",
      "3",
      "--file-storage-roots",
      sb.storageRoot,
    ]);
    try {
      await runner.waitForLog(/observability endpoint at http:\/\/127\.0\.0\.1:\d+/, 60_000);
      const url = /observability endpoint at (http:\/\/127\.0\.0\.1:\d+)/.exec(runner.stderr)![1]!;
      const port = new URL(url).port;
      const status = async (init?: RequestInit): Promise<StatusDoc> =>
        (await fetch(`${url}/status`, init)).json() as Promise<StatusDoc>;
      const queue = "local_http";

      // Another experimenter's job, running the whole time, printing its canary.
      const canary = `victim-canary-${crypto.randomUUID()}`;
      const attacker = experiment(sb, ATTACKER, { RUNNER_URL: url, CANARY: canary });
      const victim = experiment(sb, VICTIM, { RUNNER_URL: url, CANARY: canary, ATTACKER_KEY: attacker.key });
      enqueue(sb.queueRoot, queue, victim.message);
      await waitFor("the victim's canary in its live output on the host", () => liveOutputWith(sb.workDir, canary));

      // Phase 1: the job tries to drain the running runner.
      enqueue(sb.queueRoot, queue, attacker.message);
      const phase1 = await waitFor("the attacker's first phase", () => liveOutputWith(sb.workDir, "phase 1 done"));
      expect(phase1).toContain("attack drain-no-token"); // it did try (its report is not otherwise trusted)

      // Host: the endpoint gives the job's /status request no log line of the victim, which is running
      // and whose output on the host holds the canary.
      const seen = await status();
      expect(seen.running.map((r) => r.key)).toContain(victim.key);
      expect(liveOutputWith(sb.workDir, canary)).toBeDefined();
      expect(JSON.stringify(seen)).not.toContain(canary);
      expect(seen.running.every((r) => r.log === undefined)).toBe(true);
      // Host, the same requests from here: refused whatever comes with them.
      expect((await fetch(`${url}/drain`, { method: "POST" })).status).toBe(401);
      expect(
        (await fetch(`${url}/drain`, { method: "POST", headers: { authorization: `Bearer ${"0".repeat(64)}` } }))
          .status,
      ).toBe(401);
      expect(
        (await fetch(`${url}/drain`, { method: "POST", headers: { ...auth, host: `evil.example:${port}` } })).status,
      ).toBe(421); // even with the token
      expect((await fetch(`${url}/status`, { headers: { host: `evil.example:${port}` } })).status).toBe(421);
      expect(
        (await fetch(`${url}/drain`, { method: "POST", headers: { ...auth, origin: `http://evil.example:${port}` } }))
          .status,
      ).toBe(403);

      // Not drained: the runner is running and takes the next queued request.
      expect(seen.runner.state).toBe("running");
      const next = experiment(sb, QUICK);
      enqueue(sb.queueRoot, queue, next.message);
      const nextDone = await waitFor("the next queued request to be taken and finish", async () =>
        (await status()).finished.find((f) => f.key === next.key),
      );
      expect(nextDone.result).toBe("succeeded");
      expect(runner.child.exitCode).toBeNull();
      expect(runner.stderr).toContain("refused POST /drain from 127.0.0.1: no bearer token");
      // Only the job sent these two: its requests did reach the endpoint.
      expect(runner.stderr).toContain("refused POST /drain?exit=true from 127.0.0.1: no bearer token");
      expect(runner.stderr).toContain("refused POST /drain?exit=true from 127.0.0.1: wrong bearer token");
      expect(runner.stderr).not.toMatch(/suspended \(HTTP|draining to exit \(HTTP/);

      // Phase 2: the operator drains with the token; the job then tries to resume.
      const drained = await fetch(`${url}/drain`, { method: "POST", headers: auth });
      expect(await drained.json()).toEqual({ state: "suspended" });
      const later = experiment(sb, QUICK);
      const laterId = enqueue(sb.queueRoot, queue, later.message);
      const attackerDone = await waitFor("the attacker to finish", async () =>
        (await status()).finished.find((f) => f.key === attacker.key),
      );
      expect(attackerDone.result).toBe("succeeded"); // the job ran its probes to the end
      await waitFor("the victim to finish", async () => (await status()).finished.find((f) => f.key === victim.key));
      // A negative check: nothing may be taken while suspended, so the wait is a fixed time, more than
      // a loop period of the runner (POLL_WAIT_MS) and no event to wait for.
      await Bun.sleep(POLL_WAIT_MS + 2_000);
      const after = await status();
      expect(after.runner.state).toBe("suspended");
      expect(after.finished.some((f) => f.key === later.key)).toBe(false);
      expect(filesIn(join(sb.queueRoot, queue))).toEqual([laterId]);
      expect(runner.stderr).not.toContain("resumed (HTTP POST /resume)");
      expect(runner.stderr).toContain("refused POST /resume from 127.0.0.1: no bearer token");
      expect(runner.stderr).toContain("refused POST /resume from 127.0.0.1: wrong bearer token");

      // The operator resumes with the token: the waiting request runs; then drains to exit.
      expect(await (await fetch(`${url}/resume`, { method: "POST", headers: auth })).json()).toEqual({
        state: "running",
      });
      expect(
        (
          await waitFor("the waiting request to finish", async () =>
            (await status()).finished.find((f) => f.key === later.key),
          )
        ).result,
      ).toBe("succeeded");
      expect(await (await fetch(`${url}/drain?exit=true`, { method: "POST", headers: auth })).json()).toEqual({
        state: "terminating",
      });
      expect(await runner.exited).toBe(0);
      expect(runner.stderr.match(/suspended \(HTTP POST \/drain\)/g)).toHaveLength(1);
      expect(runner.stderr).not.toContain(token);
    } finally {
      await runner.stop();
    }
  }, 600_000);
});
