// Owner records, file modes and request envelopes (issue #14 holes 10, 11 and 12's envelope items),
// attacked from the compiled binary and checked on the host: an unrelated process a job named in a
// forged owner record is still alive after a runner restart; what the runner writes is not
// readable by other users and it refuses directories others own or may write; plain requests,
// requests on a queue whose signing key broke, too old requests and replays of completed ones are
// refused (or left in the queue) with their reasons, while a request requeued by a crash still runs.

import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { isProcessRunning } from "../../../src/exec/pid.ts";
import { sealRequest } from "../../../src/request/envelope/seal.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
  type Sandbox,
} from "../../helpers/e2e.ts";

const asRoot = process.geteuid?.() === 0;
const KEYS = join(REPO, "test/fixtures/envelope/test-only-keys");
const runnerPublicKey = readFileSync(join(KEYS, "runner/encryption/ssh-publickey"), "utf8");
const signer = (name: string) => createPrivateKey(readFileSync(join(KEYS, `signers/${name}.pem`), "utf8"));

/**
 * The job forges owner records naming VICTIM_PID: the old runner.json in its attempt directory,
 * and (where it can reach it) the runner's record directory.
 */
const FORGER = `
import json, os, socket, time
attempt = os.path.dirname(os.getcwd())
victim = int(os.environ["VICTIM_PID"])
forged = {"host": socket.gethostname(), "runnerPid": int(os.environ["DEAD_PID"]),
          "runnerId": "forged", "jobPid": victim}
with open(os.path.join(attempt, "runner.json"), "w") as f:
    json.dump(forged, f)
try:
    with open(os.path.join(attempt, "..", "..", ".owners", "forged.json"), "w") as f:
        json.dump({"version": 2, "host": socket.gethostname(), "bootId": "x", "runnerId": "forged",
                   "runner": {"pid": forged["runnerPid"]}, "job": {"pid": victim}, "key": "k", "attempt": "a"}, f)
    print("wrote into the runner's owner records", flush=True)
except OSError as e:
    print("owner records out of reach:", e.strerror, flush=True)
print("forged owner record; job pid", os.getpid(), flush=True)
time.sleep(float(os.environ.get("SLEEP_S", "8")))
print("attempt finished", flush=True)
`;
import { deadPid, detachedSleep } from "../../helpers/host-processes.ts";
import { waitFor } from "../../helpers/wait-for.ts";

const PLAIN = "print('ran', flush=True)\n";

function findFile(root: string, name: string): string | undefined {
  if (!existsSync(root)) return undefined;
  for (const entry of readdirSync(root, { recursive: true }) as string[])
    if (entry.endsWith(name)) return join(root, entry);
  return undefined;
}

const mode = (p: string) => statSync(p).mode & 0o777;

/** Whether uid 65534 (another user on the host) can read the file. */
function readableByOthers(path: string): boolean {
  return (
    spawnSync("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "cat", path], { stdio: "ignore" })
      .status === 0
  );
}

const reasonOf = (sb: Sandbox, queue: string, id: string) =>
  readFileSync(join(sb.queueRoot, ".failed", queue, `${id}.reason.json`), "utf8");

const experiment = (sb: Sandbox, script: string, env: Record<string, string> = {}) =>
  simpleExperiment(sb.storageRoot, { "main.py": script }, (m) => {
    m.experiment.pythonver = "3.11";
    m.config.env = env;
    delete m.config.database;
  });

describe("isolation: owner records, file modes, envelopes", () => {
  test("a forged owner record kills nothing after a crash; the crash-requeued request " +
    "still runs; replays, old requests are refused; files are private", async () => {
    const sb = await makeSandbox("iso-owners", { cacheDir: SHARED_CACHE });
    const sleeper = detachedSleep();
    try {
      const exp = experiment(sb, FORGER, {
        VICTIM_PID: String(sleeper),
        DEAD_PID: String(await deadPid()),
        SLEEP_S: "8",
      });
      const body = JSON.stringify(exp.message);
      enqueue(sb.queueRoot, "local_owners", body);

      // (a) the job forges its owner record, then the runner is SIGKILLed mid-run.
      const first = new RunnerProcess(sb, ["--sandbox", "none"]);
      const out = await waitFor("the job's forged record", () => {
        const f = findFile(sb.workDir, "output/output");
        return f && /job pid (\d+)/.test(readFileSync(f, "utf8")) ? f : undefined;
      });
      const orphanPid = Number(/job pid (\d+)/.exec(readFileSync(out, "utf8"))![1]);
      const attemptDir = join(out, "..", "..");
      const root = join(sb.workDir, "studio-runner");
      // (b) while it runs: attempt dir 0700, the path to it traversable only (0711) where a job
      // user needs it, records 0700/0600.
      expect(mode(attemptDir)).toBe(0o700);
      expect(mode(join(attemptDir, ".."))).toBe(asRoot ? 0o711 : 0o700);
      expect(mode(root)).toBe(asRoot ? 0o711 : 0o700);
      expect(mode(join(root, ".owners"))).toBe(0o700);
      for (const f of filesIn(join(root, ".owners"), true)) expect(mode(join(root, ".owners", f))).toBe(0o600);
      expect(mode(sb.queueRoot)).toBe(0o700);
      first.child.kill("SIGKILL");
      await first.exited;

      const second = new RunnerProcess(sb, ["--sandbox", "none", "--limit-tasks", "1"]);
      expect(await second.exited).toBe(0);
      // The real orphan was stopped, the process the job named is alive on the host.
      expect(second.stderr).toContain(`stopped orphaned experiment ${exp.key}`);
      await waitFor("the orphan to be gone", () => !isProcessRunning(orphanPid), 5_000, 50);
      expect(isProcessRunning(sleeper)).toBe(true);
      // (e) requeued by the crash, it ran again to the end.
      const log = tarMember(join(exp.experimentDir, "output.tar"));
      expect(log).toContain("delivery 2 from queue local_owners");
      expect(log).toContain("attempt finished");
      expect(log).toContain("exited with code 0");

      // (e) the completed request re-enqueued verbatim: a replay; (d) one added 2 h ago with --max-request-age 1h.
      const replayId = enqueue(sb.queueRoot, "local_owners", body);
      const old = experiment(sb, PLAIN);
      old.message.experiment.time_added = Date.now() / 1000 - 2 * 3600;
      const oldId = enqueue(sb.queueRoot, "local_old", old.message);
      const fresh = experiment(sb, PLAIN);
      enqueue(sb.queueRoot, "local_old", fresh.message);
      const third = new RunnerProcess(sb, [
        "--sandbox",
        "none",
        "--max-request-age",
        "1h",
        "--limit-idle-duration",
        "4s",
      ]);
      expect(await third.exited).toBe(0);
      expect(reasonOf(sb, "local_owners", replayId)).toContain("refused as a replay");
      expect(readFileSync(join(sb.queueRoot, ".failed", "local_owners", replayId), "utf8")).toBe(body);
      expect(reasonOf(sb, "local_old", oldId)).toMatch(/experiment\.time_added: .* older than --max-request-age 1h/);
      expect(existsSync(join(old.experimentDir, "output.tar"))).toBe(false);
      expect(tarMember(join(fresh.experimentDir, "output.tar"))).toContain("ran");

      // (b) after the runs: what the runner wrote is private; messages (with credentials) cannot be
      // read by another user.
      expect(mode(sb.queueRoot)).toBe(0o700);
      for (const q of ["local_owners", "local_old"]) {
        expect(mode(join(sb.queueRoot, ".failed", q))).toBe(0o700);
        for (const f of filesIn(join(sb.queueRoot, ".failed", q))) {
          if (f.endsWith(".reason.json")) expect(mode(join(sb.queueRoot, ".failed", q, f))).toBe(0o600);
          if (asRoot) expect(readableByOthers(join(sb.queueRoot, ".failed", q, f))).toBe(false);
        }
      }
      expect(mode(join(root, ".completed"))).toBe(0o700);
      expect(mode(join(root, ".completed", "completed.jsonl"))).toBe(0o600);
      expect(mode(SHARED_CACHE) & 0o077 & ~0o011).toBe(0);
      expect(mode(join(SHARED_CACHE, "artifacts"))).toBe(0o700);
      expect(filesIn(join(root, ".owners"), true)).toEqual([]);
    } finally {
      try {
        process.kill(sleeper, "SIGKILL");
      } catch {
        // gone
      }
    }
  }, 400_000);

  test.if(asRoot)(
    "a sandboxed job cannot reach the owner records; the process it names stays alive",
    async () => {
      const sb = await makeSandbox("iso-owners-bwrap", { cacheDir: SHARED_CACHE });
      const sleeper = detachedSleep();
      try {
        const exp = experiment(sb, FORGER, {
          VICTIM_PID: String(sleeper),
          DEAD_PID: String(await deadPid()),
          SLEEP_S: "0",
        });
        enqueue(sb.queueRoot, "local_bwrap", exp.message);
        const r = new RunnerProcess(sb, ["--sandbox", "bwrap", "--limit-tasks", "1"]);
        expect(await r.exited).toBe(0);
        const log = tarMember(join(exp.experimentDir, "output.tar"));
        expect(log).toContain("owner records out of reach");
        expect(existsSync(join(sb.workDir, "studio-runner", ".owners", "forged.json"))).toBe(false);
        expect(isProcessRunning(sleeper)).toBe(true);
      } finally {
        try {
          process.kill(sleeper, "SIGKILL");
        } catch {
          // gone
        }
      }
    },
    300_000,
  );

  test("a working directory another uid owns, or that others may write, is refused at start", async () => {
    const sb = await makeSandbox("iso-dirs");
    const mine = join(sb.workDir, "studio-runner");
    mkdirSync(join(mine, "1700000000_leftover"), { recursive: true });
    chmodSync(mine, 0o777);
    const open = new RunnerProcess(sb, ["--limit-idle-duration", "1s"]);
    expect(await open.exited).toBe(2);
    expect(open.stderr).toContain("is writable by other users (mode 0777)");
    expect(open.stderr).toContain("refusing to start");
    if (asRoot) {
      chmodSync(mine, 0o700);
      chownSync(mine, 65534, 65534);
      const theirs = new RunnerProcess(sb, ["--limit-idle-duration", "1s"]);
      expect(await theirs.exited).toBe(2);
      expect(theirs.stderr).toContain("is owned by uid 65534");
      // A cache directory of another uid likewise.
      chownSync(mine, 0, 0);
      chownSync(sb.cacheDir, 65534, 65534);
      const cache = new RunnerProcess(sb, ["--limit-idle-duration", "1s"]);
      expect(await cache.exited).toBe(2);
      expect(cache.stderr).toContain(`--cache-dir ${sb.cacheDir} is owned by uid 65534`);
    }
  }, 60_000);

  test("with --encrypt-dir: plain requests are refused by default; a queue whose " +
    "signing key stops parsing is not served, others are", async () => {
    const sb = await makeSandbox("iso-envelopes", { cacheDir: SHARED_CACHE });
    const sigDir = join(sb.dir, "signatures");
    cpSync(join(KEYS, "signatures"), sigDir, { recursive: true });
    const runner = new RunnerProcess(sb, [
      "--sandbox",
      "none",
      "--encrypt-dir",
      join(KEYS, "runner"),
      "--request-signatures-dir",
      sigDir,
    ]);
    try {
      await runner.waitForLog(/studio-runner .* on /);
      // bob's key (prefix rmq_team_a) stops parsing while the runner runs; it re-reads the files every 5 s.
      writeFileSync(join(sigDir, "rmq_team_a"), "ssh-ed25519 this-is-no-longer-a-key\n");
      // Timing is the point: the runner re-reads only on a look-up at least 5 s after its last, and
      // says nothing before, so the change is seen only by requests queued after a full period.
      await Bun.sleep(5_500);
      const bobs = experiment(sb, PLAIN);
      const bobBody = sealRequest(JSON.stringify(bobs.message), { runnerPublicKey, signingKey: signer("bob") });
      const bobId = enqueue(sb.queueRoot, "rmq_team_a_jobs", bobBody);
      const alices = experiment(sb, PLAIN);
      enqueue(
        sb.queueRoot,
        "rmq_other",
        sealRequest(JSON.stringify(alices.message), { runnerPublicKey, signingKey: signer("alice") }),
      );
      const plain = experiment(sb, PLAIN);
      const plainId = enqueue(sb.queueRoot, "local_plain", plain.message);

      await waitFor("alice's experiment", () => existsSync(join(alices.experimentDir, "output.tar")));
      await waitFor("the plain request's refusal", () =>
        existsSync(join(sb.queueRoot, ".failed", "local_plain", `${plainId}.reason.json`)),
      );
      await runner.waitForLog(
        /not serving local queue rmq_team_a_jobs: its request signing key cannot be used/,
        30_000,
      );
      expect(tarMember(join(alices.experimentDir, "output.tar"))).toContain("ran");
      expect(reasonOf(sb, "local_plain", plainId)).toContain("clear-text messages are off");
      expect(existsSync(join(plain.experimentDir, "output.tar"))).toBe(false);
      // bob's request is untouched in its queue: not run, not failed, not counted.
      expect(filesIn(join(sb.queueRoot, "rmq_team_a_jobs"))).toEqual([bobId]);
      expect(readFileSync(join(sb.queueRoot, "rmq_team_a_jobs", bobId), "utf8")).toBe(bobBody);
      expect(filesIn(join(sb.queueRoot, ".failed", "rmq_team_a_jobs"))).toEqual([]);
      expect(filesIn(join(sb.queueRoot, ".attempts", "rmq_team_a_jobs"))).toEqual([]);
      expect(existsSync(join(bobs.experimentDir, "output.tar"))).toBe(false);
    } finally {
      await runner.stop();
    }
  }, 300_000);
});
