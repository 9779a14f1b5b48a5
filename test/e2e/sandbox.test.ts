// --sandbox bwrap from the compiled binary, with the real bubblewrap: a sandboxed experiment cannot
// read the runner's configuration (its credentials) or queue, cannot write outside its own
// directory, cannot reach the host's network in loopback mode, and leaves no process behind.
// The same script with an explicit --sandbox none is the control: there each of those succeeds.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { enqueue, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment, tarMember } from "../helpers/e2e.ts";
import { processesWith } from "../helpers/host-processes.ts";

const HAVE_BWRAP = existsSync("/usr/bin/bwrap");
if (!HAVE_BWRAP)
  console.warn("\n*** bubblewrap is not installed (apt-get install bubblewrap): the sandbox tests cannot run ***\n");
const runnable = HAVE_BWRAP || !!process.env.CI;

const PROBE = `import os, socket, subprocess, sys
env = os.environ
def attempt(name, fn):
    try:
        r = fn()
        print(f"{name}: ok {r!r}"[:120], flush=True)
    except Exception as e:
        print(f"{name}: denied {type(e).__name__}", flush=True)
attempt("read-runner-config", lambda: open(env["RUNNER_CONFIG"]).read())
attempt("read-runner-credentials", lambda: open(env["RUNNER_CREDENTIALS"]).read())
attempt("list-queue-root", lambda: os.listdir(env["RUNNER_QUEUE_ROOT"]))
attempt("write-outside", lambda: open(os.path.join(env["OUTSIDE_DIR"], "escape.txt"), "w").write("x"))
attempt("write-own-dir", lambda: open(os.path.join(os.getcwd(), "own.txt"), "w").write("x"))
attempt("write-home", lambda: open(os.path.join(env["HOME"], "own.txt"), "w").write("x"))
attempt("write-attempt-root", lambda: open(os.path.join(env["STUDIOML_HOME"], "runner.json"), "w").write("x"))
attempt("connect-host", lambda: socket.create_connection(("127.0.0.1", int(env["PROBE_PORT"])), timeout=2).close())
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", env["MARKER"]], start_new_session=True)
print("left a grandchild behind", flush=True)
`;

let server: Server;
let port = 0;
beforeAll(async () => {
  server = createServer((s) => s.end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(() => server?.close());

async function probe(mode: "none" | "shared" | "loopback") {
  const sb = await makeSandbox(`sandbox-${mode}`, { cacheDir: SHARED_CACHE });
  const config = join(sb.dir, "runner.yaml");
  writeFileSync(config, "# the runner's own settings\nmax-deliveries: 3\n");
  // The runner's AWS credentials file (named by AWS_SHARED_CREDENTIALS_FILE, as on many hosts).
  const credentials = join(sb.dir, "aws-credentials");
  // (The job learns the path from config.env: the runner does not pass AWS_* variables on.)
  writeFileSync(credentials, "[default]\naws_access_key_id = AKIARUNNER\naws_secret_access_key = runner-secret\n");
  const marker = `sandbox-marker-${mode}-${Date.now()}`;
  const exp = simpleExperiment(sb.storageRoot, { "main.py": PROBE }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = {
      RUNNER_CONFIG: config,
      RUNNER_CREDENTIALS: credentials,
      RUNNER_QUEUE_ROOT: sb.queueRoot,
      OUTSIDE_DIR: sb.dir,
      PROBE_PORT: String(port),
      MARKER: marker,
    };
  });
  enqueue(sb.queueRoot, "local_sandbox", exp.message);
  const args = ["--config", config, "--limit-tasks", "1"];
  if (mode !== "none") args.push("--sandbox", "bwrap", "--sandbox-network", mode);
  else args.push("--sandbox", "none");
  const runner = new RunnerProcess(sb, args, { AWS_SHARED_CREDENTIALS_FILE: credentials });
  expect(await runner.exited).toBe(0);
  const log = tarMember(join(exp.experimentDir, "output.tar"));
  const leftover = processesWith(marker);
  for (const p of leftover) process.kill(p, "SIGKILL");
  return { log, runner, leftover, escaped: existsSync(join(sb.dir, "escape.txt")) };
}

describe("--sandbox bwrap, from the binary", () => {
  test.skipIf(!runnable)(
    "loopback: no runner config or queue, no writes outside, no host network, no process left",
    async () => {
      const { log, runner, leftover, escaped } = await probe("loopback");
      expect(runner.stderr).toContain("experiments run in a bubblewrap sandbox");
      expect(log).toContain("in a bubblewrap sandbox as 65534:65534: only");
      expect(log).toContain("read-runner-config: denied");
      expect(log).toContain("read-runner-credentials: denied");
      expect(log).toContain("list-queue-root: denied");
      expect(log).toContain("write-outside: denied");
      expect(log).toContain("write-own-dir: ok");
      expect(log).toContain("write-home: ok");
      // The attempt directory is the job's (the runner's owner records live elsewhere).
      expect(log).toContain("write-attempt-root: ok");
      expect(log).toContain("connect-host: denied");
      expect(log).toContain("left a grandchild behind");
      expect(log).toContain("experiment exited with code 0");
      // Checked on the host, not on the job's word: no file outside, no credential in storage.
      expect(escaped).toBe(false);
      expect(log).not.toContain("runner-secret");
      expect(leftover).toEqual([]);
    },
    180_000,
  );

  test.skipIf(!runnable)(
    "shared network: the host's loopback is reachable; the rest stays closed",
    async () => {
      const { log, leftover, escaped } = await probe("shared");
      expect(log).toContain("connect-host: ok");
      expect(log).toContain("read-runner-config: denied");
      expect(log).toContain("write-outside: denied");
      expect(escaped).toBe(false); // on the host: the job's "denied" is not taken on its word
      expect(log).not.toContain("runner-secret");
      expect(leftover).toEqual([]);
    },
    180_000,
  );

  test.skipIf(!runnable)(
    "control, without the sandbox: the same script reads, lists, writes and connects",
    async () => {
      const { log, escaped } = await probe("none");
      expect(log).toContain("read-runner-config: ok");
      expect(log).toContain("read-runner-credentials: ok");
      // The control for what the sandboxed runs must not show (the secret key: the runner's log
      // masks AKIA… key ids itself, so those would prove nothing).
      expect(log).toContain("runner-secret");
      expect(log).toContain("list-queue-root: ok");
      expect(log).toContain("write-outside: ok");
      expect(log).toContain("connect-host: ok");
      expect(escaped).toBe(true);
    },
    180_000,
  );
});
