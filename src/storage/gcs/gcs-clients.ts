// Google Cloud Storage clients: the daemon's configuration (credentials directory, endpoint) and
// one client per endpoint and identity, reused across artifacts and attempts.

import { IdempotencyStrategy, Storage, type StorageOptions } from "@google-cloud/storage";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PermanentError } from "../../errors.ts";
import { FastCrc32c } from "./crc32c.ts";

export type GcsConfiguration = {
  /** --google-certs: a directory of service-account JSON files, one project each; the first by name is used. */
  certsDir?: string;
  /** A JSON API server other than Google's ("http://127.0.0.1:4443"): requests to it are not authenticated. */
  apiEndpoint?: string;
  /** Library retries per request (429, 5xx, network), with exponential back-off; default 3. */
  maxRetries?: number;
};

export type GcsHandle = {
  storage: Storage;
  /** Who the requests are made as, for messages (never a secret). */
  identity: string;
  /** For messages: "Google Cloud Storage", or the custom endpoint's URL. */
  server: string;
};

/** Library retries per request by default, with exponential back-off from about 1 s. */
const DEFAULT_MAX_RETRIES = 3;

let configuration: GcsConfiguration = {};
const clients = new Map<string, GcsHandle>();

/** Set by the daemon at start-up (and by tests); later stores use it. */
export function configureGcs(config: GcsConfiguration): void {
  configuration = { ...config };
  clients.clear();
}

type Identity = { keyFilename?: string; projectId?: string; identity: string };

/** The service account of the certs directory's first JSON file (by name), read for its email and project only. */
function identityFromCertsDir(dir: string): Identity | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch (err) {
    throw new PermanentError(`--google-certs ${dir} cannot be read: ${(err as Error).message}`, {}, { cause: err });
  }
  const name = names[0];
  if (!name) return undefined;
  const path = join(dir, name);
  let account: { client_email?: unknown; project_id?: unknown };
  try {
    account = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new PermanentError(`service-account file ${path} is not readable JSON: ${(err as Error).message}`, {}, { cause: err });
  }
  const email = typeof account.client_email === "string" ? account.client_email : "?";
  return {
    keyFilename: path,
    projectId: typeof account.project_id === "string" ? account.project_id : undefined,
    identity: `service account ${email} (${path})`,
  };
}

function resolveIdentity(env: Record<string, string | undefined>): Identity {
  if (configuration.apiEndpoint) return { identity: "no credentials (unauthenticated requests to a custom endpoint)" };
  const fromDir = configuration.certsDir ? identityFromCertsDir(configuration.certsDir) : undefined;
  if (fromDir) return fromDir;
  const adc = env.GOOGLE_APPLICATION_CREDENTIALS;
  return { identity: adc ? `the credentials in GOOGLE_APPLICATION_CREDENTIALS (${adc})` : "the runner's application default credentials" };
}

/** The client for the current configuration. */
export function gcsClient(env: Record<string, string | undefined> = process.env): GcsHandle {
  const id = resolveIdentity(env);
  const key = JSON.stringify([configuration.apiEndpoint ?? "", id.keyFilename ?? "", configuration.maxRetries ?? ""]);
  const cached = clients.get(key);
  if (cached) return cached;
  const options: StorageOptions = {
    keyFilename: id.keyFilename,
    projectId: id.projectId,
    crc32cGenerator: () => new FastCrc32c(),
    // The library reads maxRetries 0 as "default": no retries is autoRetry false. Every call made
    // here is safe to repeat (whole-object writes through a resumable session, deletes of a key
    // whose absence is fine), so uploads and deletes retry too, not only reads.
    retryOptions:
      configuration.maxRetries === 0
        ? { autoRetry: false }
        : { autoRetry: true, maxRetries: configuration.maxRetries ?? DEFAULT_MAX_RETRIES, idempotencyStrategy: IdempotencyStrategy.RetryAlways },
  };
  if (configuration.apiEndpoint) {
    options.apiEndpoint = configuration.apiEndpoint;
    options.useAuthWithCustomEndpoint = false;
  }
  const handle = { storage: new Storage(options), identity: id.identity, server: configuration.apiEndpoint ?? "Google Cloud Storage" };
  clients.set(key, handle);
  return handle;
}
