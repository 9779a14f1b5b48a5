// Google Cloud Storage clients: the daemon's configuration (credentials directory, endpoint), one
// client per endpoint and identity reused across artifacts and attempts, and which identity each
// bucket accepted.

import { IdempotencyStrategy, Storage, type StorageOptions } from "@google-cloud/storage";
import { serviceAccountFiles, type ServiceAccountFile } from "../../config/google-certs.ts";
import { errorMessage, PermanentError } from "../../errors.ts";
import { FastCrc32c } from "./crc32c.ts";

export type GcsConfiguration = {
  /** --google-certs: a directory of service-account JSON files, one project each; each bucket uses the first that it accepts. */
  certsDir?: string;
  /** A JSON API server other than Google's ("http://127.0.0.1:4443"): requests to it are not authenticated. */
  apiEndpoint?: string;
  /** Library retries per request (429, 5xx, network), with exponential back-off; default 3. */
  maxRetries?: number;
};

export type GcsHandle = {
  storage: Storage;
  /** Identifies the client (endpoint and key file). */
  key: string;
  /** Who the requests are made as, for messages (never a secret). */
  identity: string;
  /** For messages: "Google Cloud Storage", or the custom endpoint's URL. */
  server: string;
  /** Called before a resumable upload (custom endpoints with service accounts). */
  beforeUpload?: () => Promise<void>;
};

/** Library retries per request by default, with exponential back-off from about 1 s. */
const DEFAULT_MAX_RETRIES = 3;

let configuration: GcsConfiguration = {};
const clients = new Map<string, GcsHandle>();
/** Bucket → key of the client that last worked for it. */
const bucketClient = new Map<string, string>();

/** Set by the daemon at start-up (and by tests); later stores use it. */
export function configureGcs(config: GcsConfiguration): void {
  configuration = { ...config };
  clients.clear();
  bucketClient.clear();
}

type Identity = { keyFilename?: string; projectId?: string; identity: string };

/** Every service account of the certs directory (JSON files by name), read for email and project only. */
function identitiesFromCertsDir(dir: string): Identity[] {
  let files: ServiceAccountFile[];
  try {
    files = serviceAccountFiles(dir);
  } catch (err) {
    throw new PermanentError(errorMessage(err), {}, { cause: err });
  }
  return files.map((file) => {
    if (file.problem) throw new PermanentError(`service-account file ${file.path} is ${file.problem}`);
    return {
      keyFilename: file.path,
      projectId: file.projectId,
      identity: `service account ${file.clientEmail ?? "?"} (${file.path})`,
    };
  });
}

function resolveIdentities(env: Record<string, string | undefined>): Identity[] {
  const fromDir = configuration.certsDir ? identitiesFromCertsDir(configuration.certsDir) : [];
  if (fromDir.length) return fromDir;
  if (configuration.apiEndpoint)
    return [{ identity: "no credentials (unauthenticated requests to a custom endpoint)" }];
  const adc = env.GOOGLE_APPLICATION_CREDENTIALS;
  return [
    {
      identity: adc
        ? `the credentials in GOOGLE_APPLICATION_CREDENTIALS (${adc})`
        : "the runner's application default credentials",
    },
  ];
}

function handleFor(id: Identity): GcsHandle {
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
        : {
            autoRetry: true,
            maxRetries: configuration.maxRetries ?? DEFAULT_MAX_RETRIES,
            idempotencyStrategy: IdempotencyStrategy.RetryAlways,
          },
  };
  if (configuration.apiEndpoint) {
    options.apiEndpoint = configuration.apiEndpoint;
    // A custom endpoint with service accounts: requests carry the account's self-signed JWT (no
    // token exchange with Google), so such a server can tell the accounts apart. Without
    // accounts they go unauthenticated.
    options.useAuthWithCustomEndpoint = !!id.keyFilename;
  }
  const storage = new Storage(options);
  const handle: GcsHandle = {
    storage,
    identity: id.identity,
    server: configuration.apiEndpoint ?? "Google Cloud Storage",
    key,
  };
  if (configuration.apiEndpoint && id.keyFilename) {
    const auth = storage.authClient as unknown as {
      useJWTAccessWithScope: boolean;
      getRequestHeaders(): Promise<Record<string, string>>;
    };
    auth.useJWTAccessWithScope = true;
    // The library does not authenticate resumable uploads to a custom endpoint: an interceptor
    // adds the account's header to them, fetched fresh before each upload.
    let header = "";
    storage.interceptors.push({
      request: (opts) => {
        if (header) opts.headers = { ...opts.headers, Authorization: header };
        return opts as typeof opts & { uri: string };
      },
    });
    handle.beforeUpload = async () => {
      const h = await auth.getRequestHeaders();
      header = h.Authorization ?? h.authorization ?? "";
    };
  }
  clients.set(key, handle);
  return handle;
}

/** The client for the current configuration's first identity. */
export function gcsClient(env: Record<string, string | undefined> = process.env): GcsHandle {
  return handleFor(resolveIdentities(env)[0]!);
}

/**
 * The clients to try for a bucket, in order: the one that last worked for it, then every
 * service account of --google-certs by file name (a runner may serve several projects, each
 * with its own buckets).
 */
export function gcsClientsFor(bucket: string, env: Record<string, string | undefined> = process.env): GcsHandle[] {
  const all = resolveIdentities(env).map(handleFor);
  const known = bucketClient.get(bucket);
  const first = all.find((h) => h.key === known);
  return first ? [first, ...all.filter((h) => h !== first)] : all;
}

/** Remembers which client a bucket answered. */
export function rememberBucketClient(bucket: string, handle: GcsHandle): void {
  bucketClient.set(bucket, handle.key);
}

/** Whether a client is known to work for the bucket. */
export function isRememberedBucket(bucket: string): boolean {
  return bucketClient.has(bucket);
}
