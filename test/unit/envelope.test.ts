// Covers src/request/envelope: sealing and opening studioml envelopes with keys generated here,
// refusals (signature, key, prefix, plain text, garbled fields), key rotation, the committed vectors
// in test/fixtures/envelope, and interop with a python sealer and ssh-keygen made keys when available.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PermanentError, RetryableError } from "../../src/errors.ts";
import {
  clearTextResources,
  EnvelopeError,
  EnvelopeKeysError,
  isEnvelope,
  openEnvelope,
  type EnvelopeReason,
} from "../../src/request/envelope/envelope.ts";
import { decryptPayload } from "../../src/request/envelope/hybrid.ts";
import { KeyDirectories, NO_ENVELOPE_KEYS, type EnvelopeKeys } from "../../src/request/envelope/keys.ts";
import {
  clearTextAllowed,
  envelopeKeysFromSettings,
  envelopeSettingsProblems,
} from "../../src/request/envelope/options.ts";
import { sealRequest, sealResponse } from "../../src/request/envelope/seal.ts";
import { ed25519Raw, formatSshEd25519, parseSshEd25519, sshFingerprint } from "../../src/request/envelope/ssh-key.ts";
import { parseRequest } from "../../src/request/parse.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "envelope");
const REQUEST = readFileSync(join(FIXTURES, "request.json"), "utf8");
const PASSPHRASE = "correct horse battery staple";
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

type Rsa = { publicPem: string; privatePem: string; publicKey: KeyObject };
function rsa(passphrase = PASSPHRASE): Rsa {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "pkcs1", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem", cipher: "aes-256-cbc", passphrase },
  });
  return { publicPem: publicKey, privatePem: privateKey, publicKey: createPublicKey(publicKey) };
}
const ed = () => generateKeyPairSync("ed25519").privateKey;
const sshLine = (k: KeyObject, comment = "test") => formatSshEd25519(ed25519Raw(k), comment) + "\n";

function write(path: string, text: string) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}
function writeRunnerKey(dir: string, key: Rsa, passphrase = PASSPHRASE) {
  write(join(dir, "encryption", "ssh-privatekey"), key.privatePem);
  write(join(dir, "encryption", "ssh-publickey"), key.publicPem);
  write(join(dir, "passphrase", "ssh-passphrase"), passphrase);
}

let root: string;
let runner: Rsa;
let otherRunner: Rsa;
let alice: KeyObject; // registered for rmq_
let bob: KeyObject; // registered for rmq_team_a
let mallory: KeyObject; // registered nowhere
let encryptDir: string;
let sigDir: string;
let keys: KeyDirectories;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "envelope-test-"));
  runner = rsa();
  otherRunner = rsa();
  [alice, bob, mallory] = [ed(), ed(), ed()];
  encryptDir = join(root, "message");
  sigDir = join(root, "signing");
  writeRunnerKey(encryptDir, runner);
  write(join(sigDir, "rmq_"), sshLine(alice, "alice"));
  write(join(sigDir, "rmq_team_a"), sshLine(bob, "bob"));
  write(join(sigDir, "info"), "kubernetes placeholder, not a key\n");
  write(join(sigDir, ".hidden"), "not a key either\n");
  keys = new KeyDirectories({ encryptDir, requestSignaturesDir: sigDir, refreshMs: 0 });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const seal = (signingKey: KeyObject | undefined, extra: object = {}) =>
  sealRequest(REQUEST, { runnerPublicKey: runner.publicKey, signingKey, ...extra });
const open = (body: string, queue: string, k: EnvelopeKeys = keys, clearTextAllowed = true) =>
  openEnvelope(enc(body), queue, k, { clearTextAllowed });

function refusal(fn: () => unknown): EnvelopeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EnvelopeError);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as EnvelopeError).retryable).toBe(false);
    return err as EnvelopeError;
  }
  throw new Error("expected an EnvelopeError");
}
const reasonOf = (fn: () => unknown): EnvelopeReason => refusal(fn).reason;
const editMessage = (body: string, change: (m: Record<string, any>) => void) => {
  const doc = JSON.parse(body);
  change(doc.message);
  return JSON.stringify(doc);
};
const flipAt = (text: string, at: number) => text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);

describe("round trip", () => {
  test("sealed by a registered key: accepted, plain JSON back, parseable", () => {
    const body = seal(alice);
    expect(isEnvelope(body)).toBe(true);
    const opened = open(body, "rmq_cpu");
    expect(opened.encrypted).toBe(true);
    expect(opened.signedBy).toBe("rmq_");
    expect(opened.fingerprint).toBe(sshFingerprint(ed25519Raw(alice)));
    expect(dec(opened.json)).toBe(REQUEST);
    expect(parseRequest(opened.json).experiment.key).toBe("envelope-vector-1");
  });

  test("envelope format: clear-text fields, two base64 parts, 64-byte signature, SHA256 fingerprint", () => {
    const m = JSON.parse(seal(alice)).message;
    expect(Object.keys(m)).toEqual([
      "experiment",
      "time_added",
      "experiment_lifetime",
      "resources_needed",
      "payload",
      "signature",
      "fingerprint",
    ]);
    expect(m.experiment).toEqual({ status: "waiting", pythonver: "3.10" });
    expect(m.time_added).toBe(1700000000.5);
    expect(m.experiment_lifetime).toBe("20m");
    const [k, box] = m.payload.split(",");
    expect(Buffer.from(k, "base64").length).toBe(256); // RSA-2048 block
    expect(Buffer.from(box, "base64").length).toBe(24 + 16 + enc(REQUEST).length); // nonce + MAC + text
    expect(Buffer.from(m.signature, "base64").length).toBe(64);
    expect(m.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test("longest prefix: rmq_team_a_gpu is verified with rmq_team_a's key, not rmq_'s", () => {
    expect(open(seal(bob), "rmq_team_a_gpu").signedBy).toBe("rmq_team_a");
    expect(reasonOf(() => open(seal(alice), "rmq_team_a_gpu"))).toBe("fingerprint-mismatch");
    expect(reasonOf(() => open(seal(alice, { fingerprint: false }), "rmq_team_a_gpu"))).toBe("signature-mismatch");
    // bob's key is only for rmq_team_a*: on another rmq_ queue alice's key applies.
    expect(reasonOf(() => open(seal(bob, { fingerprint: false }), "rmq_team_b"))).toBe("signature-mismatch");
    expect(open(seal(alice), "rmq_team_b").signedBy).toBe("rmq_");
  });

  test("a missing fingerprint is allowed when the signature verifies", () => {
    expect(open(seal(alice, { fingerprint: false }), "rmq_cpu").signedBy).toBe("rmq_");
  });
});

describe("refusals", () => {
  test("tampered payload: the signature no longer verifies", () => {
    const body = seal(alice);
    const payload: string = JSON.parse(body).message.payload;
    const tampered = editMessage(body, (m) => (m.payload = flipAt(payload, payload.indexOf(",") + 30)));
    const err = refusal(() => open(tampered, "rmq_cpu"));
    expect(err.reason).toBe("signature-mismatch");
    expect(err.message).toContain("message.signature");
    expect(err.context.field).toBe("message.signature");
  });

  test("tampered secretbox re-signed by the registered key: does not authenticate", () => {
    const body = seal(alice);
    const payload: string = JSON.parse(body).message.payload;
    const changed = flipAt(payload, payload.length - 10);
    const resigned = editMessage(body, (m) => {
      m.payload = changed;
      m.signature = sign(null, Buffer.from(changed), alice).toString("base64");
    });
    expect(reasonOf(() => open(resigned, "rmq_cpu"))).toBe("payload-tampered");
  });

  test("wrong signature: a signature of other bytes by the registered key", () => {
    const body = editMessage(
      seal(alice),
      (m) => (m.signature = sign(null, Buffer.from("something else"), alice).toString("base64")),
    );
    expect(reasonOf(() => open(body, "rmq_cpu"))).toBe("signature-mismatch");
  });

  test("signed by an unregistered key", () => {
    expect(reasonOf(() => open(seal(mallory), "rmq_cpu"))).toBe("fingerprint-mismatch");
    const claimsAlice = seal(mallory, { fingerprint: sshFingerprint(ed25519Raw(alice)) });
    expect(reasonOf(() => open(claimsAlice, "rmq_cpu"))).toBe("signature-mismatch");
  });

  test("no key registered for any prefix of the queue", () => {
    const err = refusal(() => open(seal(alice), "sqs_jobs"));
    expect(err.reason).toBe("no-key-for-queue");
    expect(err.message).toContain("sqs_jobs");
  });

  test("encrypted for another runner's key", () => {
    const body = sealRequest(REQUEST, { runnerPublicKey: otherRunner.publicKey, signingKey: alice });
    const err = refusal(() => open(body, "rmq_cpu"));
    expect(err.reason).toBe("wrong-key");
    expect(err.message).toContain("message.payload");
  });

  test("plain requests: refused with clear text off, accepted with it on, refused on a queue with a signing key", () => {
    expect(isEnvelope(REQUEST)).toBe(false);
    expect(reasonOf(() => open(REQUEST, "local_jobs", keys, false))).toBe("plain-refused");
    const opened = open(REQUEST, "local_jobs", keys, true);
    expect(opened).toEqual({ json: enc(REQUEST), encrypted: false });
    expect(open(REQUEST, "local_jobs", NO_ENVELOPE_KEYS, true).encrypted).toBe(false);
    expect(reasonOf(() => open(REQUEST, "rmq_cpu", keys, true))).toBe("plain-refused");
    expect(reasonOf(() => open("not json at all", "local_jobs", keys, false))).toBe("not-json");
    // Not JSON with clear text on: left for parseRequest to report.
    expect(open("not json at all", "local_jobs", keys, true).encrypted).toBe(false);
  });

  test("missing and garbled fields name the field", () => {
    const body = seal(alice);
    const cases: [string, EnvelopeReason, string][] = [
      [editMessage(body, (m) => delete m.payload), "bad-field", "message.payload"],
      [editMessage(body, (m) => (m.payload = 42)), "bad-field", "message.payload"],
      [editMessage(body, (m) => delete m.signature), "bad-field", "message.signature"],
      [editMessage(body, (m) => (m.signature = "%%%")), "bad-base64", "message.signature"],
      [editMessage(body, (m) => (m.signature = Buffer.alloc(32).toString("base64"))), "bad-field", "message.signature"],
      [editMessage(body, (m) => (m.fingerprint = 7)), "bad-field", "message.fingerprint"],
      [JSON.stringify({ message: "hello" }), "bad-field", "message"],
      [JSON.stringify({ message: null }), "bad-field", "message"],
    ];
    for (const [b, reason, field] of cases) {
      const err = refusal(() => open(b, "rmq_cpu"));
      expect([err.reason, err.context.field ?? "message"]).toEqual([reason, field]);
    }
    // Payload shape problems, signed properly so they reach the decryption step.
    const resign = (payload: string) =>
      editMessage(body, (m) => {
        m.payload = payload;
        m.signature = sign(null, Buffer.from(payload), alice).toString("base64");
      });
    const payload: string = JSON.parse(body).message.payload;
    expect(reasonOf(() => open(resign(payload.split(",")[0]!), "rmq_cpu"))).toBe("bad-field");
    expect(reasonOf(() => open(resign(payload + ",AAAA"), "rmq_cpu"))).toBe("bad-field");
    expect(reasonOf(() => open(resign("!!!!," + payload.split(",")[1]), "rmq_cpu"))).toBe("bad-base64");
    expect(reasonOf(() => open(resign(payload.split(",")[0] + ",AAAA"), "rmq_cpu"))).toBe("bad-field");
  });

  test("decrypted payload that is not a JSON object", () => {
    const body = sealRequest("[1,2,3]", { runnerPublicKey: runner.publicKey, signingKey: alice });
    expect(reasonOf(() => open(body, "rmq_cpu"))).toBe("bad-plaintext");
  });

  test("runner configuration gaps: no signatures dir, no encrypt dir", () => {
    const noSigs = new KeyDirectories({ encryptDir, refreshMs: 0 });
    expect(reasonOf(() => open(seal(alice), "rmq_cpu", noSigs))).toBe("no-signing-keys");
    const noRunnerKey = new KeyDirectories({ requestSignaturesDir: sigDir, refreshMs: 0 });
    expect(reasonOf(() => open(seal(alice), "rmq_cpu", noRunnerKey))).toBe("no-runner-key");
  });
});

describe("clear-text resources", () => {
  test("read from an envelope without decrypting; undefined for plain or null", () => {
    const r = clearTextResources(enc(seal(alice)));
    expect(r).toEqual(parseRequest(REQUEST).experiment.resources);
    expect(clearTextResources(enc(REQUEST))).toBeUndefined();
    expect(clearTextResources(seal(alice, { clearText: { resources_needed: null } }))).toBeUndefined();
    expect(clearTextResources("not json")).toBeUndefined();
    const err = refusal(() => clearTextResources(seal(alice, { clearText: { resources_needed: { cpus: "many" } } })));
    expect(err.context.field).toBe("message.resources_needed");
  });
});

describe("keys on disk", () => {
  test("signature key rotation is picked up when files change", () => {
    const dir = join(root, "rotating-signing");
    write(join(dir, "rmq_"), sshLine(alice));
    let now = 1_000;
    const rotating = new KeyDirectories({ encryptDir, requestSignaturesDir: dir, refreshMs: 5_000, now: () => now });
    expect(open(seal(alice), "rmq_cpu", rotating).signedBy).toBe("rmq_");
    write(join(dir, "rmq_"), sshLine(mallory));
    now += 1_000; // within the refresh interval: still the old key
    expect(open(seal(alice), "rmq_cpu", rotating).signedBy).toBe("rmq_");
    now += 5_000;
    expect(reasonOf(() => open(seal(alice), "rmq_cpu", rotating))).toBe("fingerprint-mismatch");
    expect(open(seal(mallory), "rmq_cpu", rotating).signedBy).toBe("rmq_");
    write(join(dir, "rmq_cpu"), sshLine(bob)); // a new, longer prefix
    rmSync(join(dir, "rmq_"));
    now += 5_000;
    expect(open(seal(bob), "rmq_cpu", rotating).signedBy).toBe("rmq_cpu");
    expect(reasonOf(() => open(seal(mallory), "rmq_other", rotating))).toBe("no-key-for-queue");
  });

  test("runner key rotation; a half-rotated pair keeps the last good key and reports it", () => {
    const dir = join(root, "rotating-runner");
    writeRunnerKey(dir, runner);
    const problems: string[] = [];
    const k = new KeyDirectories({
      encryptDir: dir,
      requestSignaturesDir: sigDir,
      refreshMs: 0,
      onProblem: (p) => problems.push(p),
    });
    expect(open(seal(alice), "rmq_cpu", k).encrypted).toBe(true);
    const next = rsa("new passphrase");
    write(join(dir, "encryption", "ssh-privatekey"), next.privatePem); // passphrase not yet updated
    expect(open(seal(alice), "rmq_cpu", k).encrypted).toBe(true);
    expect(problems.length).toBe(1);
    expect(problems[0]).toContain("ssh-privatekey");
    expect(problems[0]).not.toContain("new passphrase");
    write(join(dir, "passphrase", "ssh-passphrase"), "new passphrase\n"); // echo without -n
    const forNext = sealRequest(REQUEST, { runnerPublicKey: next.publicKey, signingKey: alice });
    expect(open(forNext, "rmq_cpu", k).encrypted).toBe(true);
    expect(reasonOf(() => open(seal(alice), "rmq_cpu", k))).toBe("wrong-key");
  });

  test("an unreadable runner key is a retryable EnvelopeKeysError and a settings problem", () => {
    const dir = join(root, "bad-pass");
    writeRunnerKey(dir, runner, "not the passphrase");
    write(join(dir, "passphrase", "ssh-passphrase"), "wrong");
    const k = new KeyDirectories({ encryptDir: dir, requestSignaturesDir: sigDir, refreshMs: 0 });
    let caught: unknown;
    try {
      open(seal(alice), "rmq_cpu", k);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EnvelopeKeysError);
    expect(caught).toBeInstanceOf(RetryableError);
    const problems = envelopeSettingsProblems({ "encrypt-dir": dir, "request-signatures-dir": sigDir });
    expect(problems.length).toBe(1);
    expect(problems[0]).toStartWith("--encrypt-dir:");
    expect(problems[0]).not.toContain("wrong");
  });

  test("OpenSSH-format private keys get a conversion hint; flat directory layout works", () => {
    const dir = join(root, "openssh");
    write(
      join(dir, "encryption", "ssh-privatekey"),
      "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    expect(new KeyDirectories({ encryptDir: dir }).problems()[0]).toContain("ssh-keygen -p -m PEM");
    const flat = join(root, "flat");
    write(join(flat, "ssh-privatekey"), runner.privatePem);
    write(join(flat, "ssh-passphrase"), PASSPHRASE);
    expect(
      open(seal(alice), "rmq_cpu", new KeyDirectories({ encryptDir: flat, requestSignaturesDir: sigDir })).encrypted,
    ).toBe(true);
  });

  test("signature files that are not ssh-ed25519 keys are reported and not trusted; info and dot files are ignored", () => {
    const dir = join(root, "mixed-signing");
    write(join(dir, "rmq_"), sshLine(alice));
    write(join(dir, "rmq_x"), "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ test\n");
    write(join(dir, "info"), "placeholder");
    const problems: string[] = [];
    const k = new KeyDirectories({ requestSignaturesDir: dir, refreshMs: 0, onProblem: (p) => problems.push(p) });
    expect(k.signingKeyFor("rmq_x1")?.prefix).toBe("rmq_");
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("rmq_x");
    expect(k.problems()).toEqual([`--request-signatures-dir: ${problems[0]}`]);
    // Fail closed: rmq_x's file is the longest prefix of rmq_x1, so rmq_'s key does not stand in for it.
    expect(k.queueRefusal("rmq_x1")).toContain("rmq_x");
    expect(k.queueRefusal("rmq_y")).toBeUndefined();
    expect(() => open(seal(alice), "rmq_x1", k)).toThrow(EnvelopeKeysError);
  });

  test("a signing key file that stops parsing: its queues are not served (plain or sealed) until it parses again", () => {
    const dir = join(root, "breaking-signing");
    write(join(dir, "rmq_"), sshLine(alice));
    write(join(dir, "rmq_team"), sshLine(bob));
    const problems: string[] = [];
    const k = new KeyDirectories({
      encryptDir,
      requestSignaturesDir: dir,
      refreshMs: 0,
      onProblem: (p) => problems.push(p),
    });
    expect(open(seal(bob), "rmq_team_jobs", k).signedBy).toBe("rmq_team");
    write(join(dir, "rmq_team"), "ssh-ed25519 !!!not base64!!!\n");
    expect(k.queueRefusal("rmq_team_jobs")).toContain("rmq_team");
    const refused = (() => {
      try {
        open(REQUEST, "rmq_team_jobs", k, true);
      } catch (err) {
        return err;
      }
    })();
    // Retryable (left in the queue), never the plain request served nor the envelope failed for want of a key.
    expect(refused).toBeInstanceOf(EnvelopeKeysError);
    expect(() => open(seal(bob), "rmq_team_jobs", k)).toThrow(EnvelopeKeysError);
    expect(() => open(seal(alice), "rmq_team_jobs", k)).toThrow(EnvelopeKeysError);
    // Other queues go on.
    expect(k.queueRefusal("rmq_other")).toBeUndefined();
    expect(open(seal(alice), "rmq_other", k).signedBy).toBe("rmq_");
    expect(problems.some((p) => p.includes("rmq_team"))).toBe(true);
    // A dangling link is refused the same way.
    rmSync(join(dir, "rmq_team"));
    require("node:fs").symlinkSync(join(dir, "gone"), join(dir, "rmq_team"));
    expect(k.queueRefusal("rmq_team_jobs")).toContain("rmq_team");
    rmSync(join(dir, "rmq_team"));
    write(join(dir, "rmq_team"), sshLine(bob));
    expect(k.queueRefusal("rmq_team_jobs")).toBeUndefined();
    expect(open(seal(bob), "rmq_team_jobs", k).signedBy).toBe("rmq_team");
  });

  test("response keys: longest prefix, reports sealed for the experimenter's key", () => {
    const dir = join(root, "response");
    const experimenter = rsa("");
    const { privateKey: expPriv, publicKey: expPub } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    write(join(dir, "rmq_"), experimenter.publicPem);
    write(join(dir, "rmq_team_a"), expPub.export({ format: "pem", type: "pkcs1" }).toString());
    const k = new KeyDirectories({ responseSignaturesDir: dir, refreshMs: 0 });
    const chosen = k.responseKeyFor("rmq_team_a_gpu_response");
    expect(chosen?.prefix).toBe("rmq_team_a");
    const sealed = sealResponse('{"status":"done"}', chosen!.key);
    expect(dec(decryptPayload(dec(sealed), expPriv))).toBe('{"status":"done"}');
    expect(k.responseKeyFor("sqs_x_response")).toBeUndefined();
  });
});

describe("ssh key files", () => {
  test("parse, format and fingerprint agree with ssh-keygen", () => {
    const line = sshLine(bob, "bob@example");
    const parsed = parseSshEd25519(line);
    expect(parsed.comment).toBe("bob@example");
    expect(Buffer.from(parsed.raw)).toEqual(Buffer.from(ed25519Raw(bob)));
    expect(() => parseSshEd25519("ssh-rsa AAAA x")).toThrow("ssh-ed25519");
    expect(() => parseSshEd25519("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==")).toThrow("truncated");
    const keygen = spawnSync("ssh-keygen", ["-l", "-E", "sha256", "-f", "/dev/stdin"], {
      input: line,
      encoding: "utf8",
    });
    if (keygen.status !== 0) {
      console.warn("SKIPPED: ssh-keygen not available to cross-check fingerprints");
      return;
    }
    expect(keygen.stdout.split(" ")[1]).toBe(parsed.fingerprint);
  });

  test("keys made the way the Go runner's docs make them (ssh-keygen -m PEM) are read", () => {
    const dir = join(root, "keygen");
    mkdirSync(join(dir, "encryption"), { recursive: true });
    const key = join(root, "keygen-src");
    const made = spawnSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "PassPhrase", "-f", key]);
    if (made.status !== 0) {
      console.warn("SKIPPED: ssh-keygen not available to make an RSA key");
      return;
    }
    const pub = spawnSync("ssh-keygen", ["-f", `${key}.pub`, "-e", "-m", "PEM"], { encoding: "utf8" }).stdout;
    expect(pub).toStartWith("-----BEGIN RSA PUBLIC KEY-----");
    write(join(dir, "encryption", "ssh-privatekey"), readFileSync(key, "utf8"));
    write(join(dir, "encryption", "ssh-publickey"), pub);
    write(join(dir, "passphrase", "ssh-passphrase"), "PassPhrase");
    const edKey = join(root, "keygen-ed");
    spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", edKey]);
    write(join(dir, "signing", "rmq_"), readFileSync(`${edKey}.pub`, "utf8"));
    // ssh-keygen's ed25519 private key is OpenSSH format; sign with the same key material via PKCS#8 is not
    // possible without parsing it, so only the public side is checked here.
    const k = new KeyDirectories({ encryptDir: dir, requestSignaturesDir: join(dir, "signing") });
    expect(k.problems()).toEqual([]);
    const body = sealRequest(REQUEST, { runnerPublicKey: pub, signingKey: alice, fingerprint: false });
    expect(reasonOf(() => open(body, "rmq_cpu", k))).toBe("signature-mismatch"); // reached the registered key
    const onlyEncryption = new KeyDirectories({ encryptDir: dir, requestSignaturesDir: sigDir });
    expect(dec(open(body, "rmq_cpu", onlyEncryption).json)).toBe(REQUEST);
  });
});

describe("settings", () => {
  test("defaults, problems and keys", () => {
    expect(clearTextAllowed({})).toBe(true);
    expect(clearTextAllowed({ "clear-text-messages": false })).toBe(false);
    // With --encrypt-dir, plain requests are off unless turned on explicitly.
    expect(clearTextAllowed({ "encrypt-dir": encryptDir })).toBe(false);
    expect(clearTextAllowed({ "encrypt-dir": encryptDir, "clear-text-messages": true })).toBe(true);
    expect(clearTextAllowed({ "encrypt-dir": encryptDir, "clear-text-messages": false })).toBe(false);
    expect(envelopeKeysFromSettings({})).toBeUndefined();
    expect(envelopeSettingsProblems({})).toEqual([]);
    expect(envelopeSettingsProblems({ "clear-text-messages": false })).toEqual([
      "--clear-text-messages=false needs --encrypt-dir: no request could be accepted",
    ]);
    expect(envelopeSettingsProblems({ "encrypt-dir": join(root, "nope") })[0]).toStartWith("--encrypt-dir: ");
    expect(envelopeSettingsProblems({ "encrypt-dir": encryptDir })).toEqual([
      "--encrypt-dir needs --request-signatures-dir: encrypted requests must be signed",
    ]);
    expect(
      envelopeSettingsProblems({
        "encrypt-dir": encryptDir,
        "request-signatures-dir": sigDir,
        "clear-text-messages": false,
      }),
    ).toEqual([]);
    const k = envelopeKeysFromSettings({ "encrypt-dir": encryptDir, "request-signatures-dir": sigDir })!;
    expect(open(seal(alice), "rmq_cpu", k).signedBy).toBe("rmq_");
  });
});

type Vector = {
  name: string;
  queue: string;
  clearTextAllowed: boolean;
  message: string;
  expect: { outcome: "accept"; signedBy?: string; encrypted: boolean } | { outcome: "refuse"; reason: EnvelopeReason };
};

describe("committed test vectors (test/fixtures/envelope)", () => {
  const vectors: Vector[] = JSON.parse(readFileSync(join(FIXTURES, "vectors.json"), "utf8"));
  const fixtureKeys = new KeyDirectories({
    encryptDir: join(FIXTURES, "test-only-keys", "runner"),
    requestSignaturesDir: join(FIXTURES, "test-only-keys", "signatures"),
  });
  test("the fixture keys load", () => expect(fixtureKeys.problems()).toEqual([]));
  for (const v of vectors) {
    test(`${v.name}: ${v.expect.outcome === "accept" ? "accepted" : `refused (${v.expect.reason})`}`, () => {
      const body = readFileSync(join(FIXTURES, v.message));
      if (v.expect.outcome === "refuse") {
        expect(reasonOf(() => openEnvelope(body, v.queue, fixtureKeys, { clearTextAllowed: v.clearTextAllowed }))).toBe(
          v.expect.reason,
        );
        return;
      }
      const opened = openEnvelope(body, v.queue, fixtureKeys, { clearTextAllowed: v.clearTextAllowed });
      expect(opened.encrypted).toBe(v.expect.encrypted);
      expect(opened.signedBy).toBe(v.expect.signedBy);
      expect(JSON.parse(dec(opened.json))).toEqual(JSON.parse(REQUEST));
    });
  }
});

/**
 * A python with pynacl + cryptography: $ENVELOPE_INTEROP_PYTHON, python3, or a venv made for this
 * test with both installed by pip (from the machine's pip index or offline wheelhouse).
 */
function interopPython(): string | undefined {
  const venv = join(import.meta.dir, "..", "..", ".test-tmp", "envelope-interop-venv");
  for (const candidate of [process.env.ENVELOPE_INTEROP_PYTHON, "python3", join(venv, "bin", "python")]) {
    if (!candidate) continue;
    const probe = spawnSync(candidate, ["-c", "import nacl.secret, cryptography"], { encoding: "utf8" });
    if (probe.status === 0) return candidate;
  }
  const made = spawnSync("python3", ["-m", "venv", "--clear", venv], { encoding: "utf8" });
  if (made.status !== 0) return undefined;
  const pip = spawnSync(join(venv, "bin", "python"), ["-m", "pip", "install", "-q", "pynacl", "cryptography"], {
    encoding: "utf8",
    timeout: 300_000,
  });
  if (pip.status !== 0) {
    console.warn(`pip could not install pynacl and cryptography: ${(pip.stderr ?? "").slice(-500)}`);
    return undefined;
  }
  return join(venv, "bin", "python");
}
const PYTHON = interopPython();
if (!PYTHON)
  console.warn(
    "SKIPPED: python interop test needs pynacl + cryptography (set ENVELOPE_INTEROP_PYTHON to such a python)",
  );

describe("python interop", () => {
  test.skipIf(!PYTHON)("an envelope sealed by python (studioml client format) opens", () => {
    const dir = join(root, "python");
    write(join(dir, "runner.pub.pem"), runner.publicPem);
    write(join(dir, "bob.pem"), bob.export({ format: "pem", type: "pkcs8" }).toString());
    const out = spawnSync(
      PYTHON!,
      [
        join(FIXTURES, "python_seal.py"),
        join(dir, "runner.pub.pem"),
        join(dir, "bob.pem"),
        join(FIXTURES, "request.json"),
      ],
      { encoding: "utf8" },
    );
    expect(out.stderr).toBe("");
    const opened = open(out.stdout, "rmq_team_a_gpu");
    expect(opened.signedBy).toBe("rmq_team_a");
    expect(JSON.parse(dec(opened.json))).toEqual(JSON.parse(REQUEST));
    expect(JSON.parse(out.stdout).message.fingerprint).toBe(sshFingerprint(ed25519Raw(bob)));
    expect(createPrivateKey(bob.export({ format: "pem", type: "pkcs8" })).asymmetricKeyType).toBe("ed25519");
  });
});
