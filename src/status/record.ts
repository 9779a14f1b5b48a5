// What every experiment-record implementation shares: the interface the attempt uses, the
// options a database type is built with, the time and deadline helpers, and what a record may never
// hold (secrets).

import type { Request } from "../request/model.ts";
import { exponentialBackoff, type Sleep } from "../retry/backoff.ts";
import { retry } from "../retry/retry.ts";
import type { StorageIdentity } from "../storage/storage-identity.ts";

export interface ExperimentRecord {
  /** Where the record lives, for log lines (never a secret). */
  readonly where: string;
  running(): Promise<void>;
  checkpoint(): Promise<void>;
  finished(): Promise<void>;
  /** True when someone set the record's status to "stopped". */
  stopRequested(): Promise<boolean>;
  /** Releases connections; the record is not used afterwards. */
  close(): Promise<void>;
}

export type RecordOptions = {
  warn: (message: string) => void;
  /** The runner's environment (FIREBASE_DATABASE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS). */
  env: Record<string, string | undefined>;
  /** --google-certs: service-account files, one project each (Firebase credentials). */
  googleCertsDir?: string;
  /** Whether the runner's own identity may serve a database without credentials (absent: never). */
  identity?: StorageIdentity;
};

export type RecordFactory = (
  db: Record<string, unknown>,
  request: Request,
  options: RecordOptions,
) => ExperimentRecord | undefined;

/** Keys whose values are secrets wherever they appear in a record: whole credential objects and key material. */
const SECRET_KEY = new RegExp(
  "^(credentials|aws_secret_access_key|secret_access_key|secretaccesskey|secret_key|session_token|sessiontoken|" +
    "aws_session_token|security_token|private_key|privatekey|private_key_id|password|passphrase|token|access_token|" +
    "refresh_token)$",
  "i",
);
/** Records nest a few levels (experiment → artifacts → label → credentials); deeper is cut, not walked. */
const MAX_DEPTH = 32;

/**
 * A copy of a record document without secrets: every `credentials` object (the artifacts' AWS
 * keys as the studioml client writes them) and any key-material field, at any depth. Records are
 * readable by everyone who can read the database; the runner never writes a secret into one.
 */
export function withoutSecrets<T>(doc: T, depth = 0): T {
  if (Array.isArray(doc)) return (depth >= MAX_DEPTH ? [] : doc.map((v) => withoutSecrets(v, depth + 1))) as T;
  if (typeof doc !== "object" || doc === null) return doc;
  if (depth >= MAX_DEPTH) return {} as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (SECRET_KEY.test(k)) continue;
    out[k] = withoutSecrets(v, depth + 1);
  }
  return out as T;
}

/** Seconds since the epoch, as the python worker writes its time fields. */
export const nowSeconds = (): number => Date.now() / 1000;

/** Bounds one database call: a status update must never hold an experiment up for long. */
export async function withDeadline<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The fields the python worker sets when it starts an experiment. */
export function runningFields(): Record<string, unknown> {
  const now = nowSeconds();
  return { status: "running", time_started: now, time_last_checkpoint: now };
}

export function checkpointFields(): Record<string, unknown> {
  return { time_last_checkpoint: nowSeconds() };
}

/** The finish; a user's "stopped" stays, so the record says why the experiment ended. */
export function finishedFields(currentStatus: unknown): Record<string, unknown> {
  const now = nowSeconds();
  return {
    status: currentStatus === "stopped" ? "stopped" : "finished",
    time_finished: now,
    time_last_checkpoint: now,
  };
}

/** Pauses between record-update tries: 500 ms, then doubling. */
const RECORD_RETRY_BACKOFF = exponentialBackoff({ initialMs: 500 });

/** Runs `work` up to `tries` times, 500 ms apart then doubling: a database blip must not lose a state. */
export function withRetries<T>(tries: number, work: () => Promise<T>, sleep?: Sleep): Promise<T> {
  return retry(work, { strategy: RECORD_RETRY_BACKOFF, tries, sleep });
}

/** Attempts per record update. */
export const RECORD_UPDATE_TRIES = 3;

/** How long one database call may take before it is given up (and logged). */
export const DATABASE_CALL_TIMEOUT_MS = 15_000;
