// What every experiment-record implementation shares: the interface the attempt uses, the
// options a database type is built with, and the time and deadline helpers.

import type { Request } from "../request/model.ts";

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
};

export type RecordFactory = (db: Record<string, unknown>, request: Request, options: RecordOptions) => ExperimentRecord | undefined;

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
  return { status: currentStatus === "stopped" ? "stopped" : "finished", time_finished: now, time_last_checkpoint: now };
}

/** Runs `work` up to `tries` times, 500 ms apart then doubling: a database blip must not lose a state. */
export async function withRetries<T>(tries: number, work: () => Promise<T>): Promise<T> {
  let delayMs = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt >= tries) throw err;
      await Bun.sleep(delayMs);
      delayMs *= 2;
    }
  }
}

/** Attempts per record update. */
export const RECORD_UPDATE_TRIES = 3;

/** How long one database call may take before it is given up (and logged). */
export const DATABASE_CALL_TIMEOUT_MS = 15_000;
