// Encrypted, signed requests through the compiled binary, with the test-only keys of
// test/fixtures/envelope: a request sealed for this runner and signed by the key registered for
// its queue prefix runs; one signed by an unregistered key, a plain one on a signed queue, and
// (with --clear-text-messages=false) any plain one are kept in the failed place with the reason.

import { describe, expect, test } from "bun:test";
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sealRequest } from "../../src/request/envelope/seal.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  REPO,
  RunnerProcess,
  SHARED_CACHE,
  simpleExperiment,
  tarMember,
} from "../helpers/e2e.ts";

const KEYS = join(REPO, "test/fixtures/envelope/test-only-keys");
const runnerPublicKey = readFileSync(join(KEYS, "runner/encryption/ssh-publickey"), "utf8");
const signer = (name: string) => createPrivateKey(readFileSync(join(KEYS, `signers/${name}.pem`), "utf8"));
const SCRIPT = "print('decrypted and running', flush=True)\n";

describe("encrypted and signed requests, from the binary", () => {
  test("sealed for this runner and signed by the queue's key runs; the rest are kept with their reasons", async () => {
    const sb = await makeSandbox("envelope", { cacheDir: SHARED_CACHE });
    const make = () =>
      simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
        m.experiment.pythonver = "3.11";
        delete m.config.database;
      });
    // rmq_ is alice's prefix, rmq_team_a bob's (longest wins); local queues may carry these names.
    const good = make();
    enqueue(
      sb.queueRoot,
      "rmq_team_a_jobs",
      sealRequest(JSON.stringify(good.message), { runnerPublicKey, signingKey: signer("bob") }),
    );
    const forged = make();
    const forgedId = enqueue(
      sb.queueRoot,
      "rmq_team_a_jobs",
      sealRequest(JSON.stringify(forged.message), { runnerPublicKey, signingKey: signer("mallory") }),
    );
    const plain = make();
    const plainId = enqueue(sb.queueRoot, "rmq_other", plain.message);
    const runner = new RunnerProcess(sb, [
      "--encrypt-dir",
      join(KEYS, "runner"),
      "--request-signatures-dir",
      join(KEYS, "signatures"),
      "--limit-idle-duration",
      "4s",
    ]);
    expect(await runner.exited).toBe(0);
    expect(tarMember(join(good.experimentDir, "output.tar"))).toContain("decrypted and running");
    const reason = (queue: string, id: string) =>
      readFileSync(join(sb.queueRoot, ".failed", queue, `${id}.reason.json`), "utf8");
    expect(reason("rmq_team_a_jobs", forgedId)).toMatch(/signature|fingerprint/);
    expect(reason("rmq_other", plainId)).toMatch(/plain|signed|signature/i);
    expect(filesIn(join(sb.queueRoot, "rmq_team_a_jobs"))).toEqual([]);

    // With clear text off, a plain request on a queue with no signing key is refused too.
    const strict = make();
    const strictId = enqueue(sb.queueRoot, "local_plain", strict.message);
    const r2 = new RunnerProcess(sb, [
      "--encrypt-dir",
      join(KEYS, "runner"),
      "--request-signatures-dir",
      join(KEYS, "signatures"),
      "--clear-text-messages=false",
      "--limit-idle-duration",
      "4s",
    ]);
    expect(await r2.exited).toBe(0);
    expect(reason("local_plain", strictId)).toMatch(/clear text|plain/i);
    // Neither the passphrase nor a key ever reaches the logs.
    const passphrase = readFileSync(join(KEYS, "runner/passphrase/ssh-passphrase"), "utf8").trim();
    expect(runner.stderr + r2.stderr).not.toContain(passphrase);
    expect(runner.stderr + r2.stderr).not.toContain("PRIVATE KEY");
  }, 300_000);
});
