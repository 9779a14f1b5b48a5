// The key material an envelope is opened with, read from the Go runner's directories: the runner's
// passphrase-protected RSA key (--encrypt-dir), Ed25519 request-signing keys per queue prefix
// (--request-signatures-dir) and experimenters' RSA keys for responses (--response-signatures-dir).

import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { EnvelopeKeysError } from "./errors.ts";
import { PrefixKeyStore, type PrefixEntry } from "./prefix-store.ts";
import { parseSshEd25519, type Ed25519PublicKey } from "./ssh-key.ts";

/** What openEnvelope needs; KeyDirectories reads it from disk, tests may supply their own. */
export interface EnvelopeKeys {
  /** The runner's RSA private key; undefined when none is configured. Throws EnvelopeKeysError when configured but
   * unreadable. */
  runnerKey(): KeyObject | undefined;
  /** True when a request signatures directory is configured (encrypted messages must then be signed). */
  readonly verifiesSignatures: boolean;
  /** The Ed25519 key registered under the longest prefix of `queue`. */
  signingKeyFor(queue: string): PrefixEntry<Ed25519PublicKey> | undefined;
  /** The experimenter's RSA public key for reports on `queue` (longest prefix), if any. */
  responseKeyFor(queue: string): PrefixEntry<KeyObject> | undefined;
  /**
   * Why `queue` must not be served now (its signing key file stopped parsing or cannot be read):
   * fail closed, never serve it without the signature requirement. Undefined when it may be served.
   */
  queueRefusal?(queue: string): string | undefined;
}

/**
 * Layout of --encrypt-dir, as the Go runner mounts its two Kubernetes secrets (docs/message_privacy.md,
 * internal/runner/secret_store.go): <dir>/encryption/ssh-privatekey (PEM "RSA PRIVATE KEY", encrypted
 * with a passphrase), <dir>/encryption/ssh-publickey (PEM "RSA PUBLIC KEY"), <dir>/passphrase/ssh-passphrase.
 * A flat <dir>/ssh-privatekey + <dir>/ssh-passphrase is accepted too.
 */
export function runnerKeyFiles(encryptDir: string): { privateKey: string; publicKey: string; passphrase: string } {
  const nested = join(encryptDir, "encryption", "ssh-privatekey");
  if (existsSync(nested) || !existsSync(join(encryptDir, "ssh-privatekey"))) {
    return {
      privateKey: nested,
      publicKey: join(encryptDir, "encryption", "ssh-publickey"),
      passphrase: join(encryptDir, "passphrase", "ssh-passphrase"),
    };
  }
  return {
    privateKey: join(encryptDir, "ssh-privatekey"),
    publicKey: join(encryptDir, "ssh-publickey"),
    passphrase: join(encryptDir, "ssh-passphrase"),
  };
}

/** Read the runner's RSA private key; throws EnvelopeKeysError with a reason that names the file (never the
 * passphrase). */
export function readRunnerKey(encryptDir: string): KeyObject {
  const files = runnerKeyFiles(encryptDir);
  let pem: string;
  try {
    pem = readFileSync(files.privateKey, "utf8");
  } catch (err) {
    throw new EnvelopeKeysError(`${files.privateKey}: ${(err as Error).message}`);
  }
  if (pem.includes("BEGIN OPENSSH PRIVATE KEY")) {
    throw new EnvelopeKeysError(
      `${files.privateKey}: OpenSSH private key format is not read; convert it with ssh-keygen -p -m PEM -f <file>`,
    );
  }
  let passphrase: Buffer | undefined;
  if (existsSync(files.passphrase)) {
    try {
      passphrase = readFileSync(files.passphrase);
    } catch (err) {
      throw new EnvelopeKeysError(`${files.passphrase}: ${(err as Error).message}`);
    }
  }
  // The Go docs write the passphrase both with `echo` and `echo -n`: try it as is, then without the newline.
  const candidates = passphrase
    ? [passphrase, Buffer.from(passphrase.toString("utf8").replace(/\r?\n$/, ""))]
    : [undefined];
  let lastErr: unknown;
  for (const candidate of candidates) {
    try {
      const key =
        candidate === undefined ? createPrivateKey(pem) : createPrivateKey({ key: pem, passphrase: candidate });
      if (key.asymmetricKeyType !== "rsa") throw new Error(`is a ${key.asymmetricKeyType} key, expected RSA`);
      return key;
    } catch (err) {
      lastErr = err;
    }
  }
  const why =
    (lastErr as { code?: string })?.code === "ERR_MISSING_PASSPHRASE"
      ? `encrypted but ${files.passphrase} is missing`
      : (lastErr as Error).message;
  throw new EnvelopeKeysError(`${files.privateKey}: cannot be read (${why})`, { cause: lastErr });
}

/** An RSA public key file in PEM (PKCS#1 "RSA PUBLIC KEY", as the Go runner and studioml use, or SPKI). */
export function parseRsaPublicPem(text: string): KeyObject {
  const key = createPublicKey(text);
  if (key.asymmetricKeyType !== "rsa") throw new Error(`is a ${key.asymmetricKeyType} key, expected RSA`);
  return key;
}

export type KeyDirectoriesOptions = {
  encryptDir?: string;
  requestSignaturesDir?: string;
  responseSignaturesDir?: string;
  /** How old a look at the files may be before it is repeated (default 5s; 0 = every use). */
  refreshMs?: number;
  onProblem?: (problem: string) => void;
  now?: () => number;
};

const fileStamp = (file: string) => {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return "missing";
  }
};

/** EnvelopeKeys read from the Go runner's directories and re-read when their files change. */
export class KeyDirectories implements EnvelopeKeys {
  private readonly refreshMs: number;
  private readonly now: () => number;
  private readonly onProblem: (problem: string) => void;
  private readonly signing?: PrefixKeyStore<Ed25519PublicKey>;
  private readonly responses?: PrefixKeyStore<KeyObject>;
  private runner?: { stamp: string; key: KeyObject };
  private runnerProblem?: string;
  private runnerCheckedAt = -Infinity;

  constructor(private readonly options: KeyDirectoriesOptions) {
    this.refreshMs = options.refreshMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.onProblem = options.onProblem ?? (() => {});
    if (options.requestSignaturesDir) {
      this.signing = new PrefixKeyStore(
        options.requestSignaturesDir,
        (text) => parseSshEd25519(text),
        this.refreshMs,
        this.onProblem,
        this.now,
      );
    }
    if (options.responseSignaturesDir) {
      this.responses = new PrefixKeyStore(
        options.responseSignaturesDir,
        (text) => parseRsaPublicPem(text),
        this.refreshMs,
        this.onProblem,
        this.now,
      );
    }
  }

  get verifiesSignatures(): boolean {
    return this.signing !== undefined;
  }

  runnerKey(): KeyObject | undefined {
    const dir = this.options.encryptDir;
    if (!dir) return undefined;
    const t = this.now();
    if (this.runner && t - this.runnerCheckedAt < this.refreshMs) return this.runner.key;
    this.runnerCheckedAt = t;
    const files = runnerKeyFiles(dir);
    const stamp = `${fileStamp(files.privateKey)}|${fileStamp(files.passphrase)}`;
    if (this.runner?.stamp === stamp) return this.runner.key;
    try {
      this.runner = { stamp, key: readRunnerKey(dir) };
      this.runnerProblem = undefined;
    } catch (err) {
      const problem = (err as Error).message;
      if (problem !== this.runnerProblem) this.onProblem(problem);
      this.runnerProblem = problem;
      // Mid-rotation (new key, old passphrase): keep using the last good key until both files agree.
      if (this.runner) return this.runner.key;
      throw err;
    }
    return this.runner.key;
  }

  signingKeyFor(queue: string): PrefixEntry<Ed25519PublicKey> | undefined {
    return this.signing?.select(queue);
  }

  responseKeyFor(queue: string): PrefixEntry<KeyObject> | undefined {
    return this.responses?.select(queue);
  }

  queueRefusal(queue: string): string | undefined {
    const broken = this.signing?.brokenFor(queue);
    return broken ? `its request signing key cannot be used (${broken}); fix or remove the file` : undefined;
  }

  /** Load everything now and list what cannot be read (for start-up checks). */
  problems(): string[] {
    const out: string[] = [];
    if (this.options.encryptDir) {
      try {
        this.runnerCheckedAt = -Infinity;
        this.runnerKey();
      } catch (err) {
        out.push(`--encrypt-dir: ${(err as Error).message}`);
      }
    }
    if (this.signing) {
      this.signing.refresh(true);
      out.push(...this.signing.problems().map((p) => `--request-signatures-dir: ${p}`));
    }
    if (this.responses) {
      this.responses.refresh(true);
      out.push(...this.responses.problems().map((p) => `--response-signatures-dir: ${p}`));
    }
    return out;
  }
}

/** For runners with no envelope directories: plain requests only. */
export const NO_ENVELOPE_KEYS: EnvelopeKeys = {
  runnerKey: () => undefined,
  verifiesSignatures: false,
  signingKeyFor: () => undefined,
  responseKeyFor: () => undefined,
};
