// Google Cloud Storage clients: a GcsClients is made from one configuration (credentials directory,
// endpoint) and keeps one client per identity, reused across artifacts and attempts, and which
// identity each bucket accepted. Whoever builds GCS stores passes theirs (submit its own, the daemon
// its Stores); there is no module-level configuration.

import { IdempotencyStrategy, Storage, type StorageOptions } from "@google-cloud/storage";
import { serviceAccountFiles, type ServiceAccountFile } from "../../config/google-certs.ts";
import { errorMessage, PermanentError } from "../../errors.ts";
import { FastCrc32c } from "./crc32c.ts";

export type GcsConfiguration = {
  /**
   * --google-certs: a directory of service-account JSON files, one project each; each bucket uses the first that it
   * accepts.
   */
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

/** The clients of one GCS configuration. */
export class GcsClients {
  private readonly configuration: GcsConfiguration;
  private readonly clients = new Map<string, GcsHandle>();
  /** Bucket → key of the client that last worked for it. */
  private readonly bucketClient = new Map<string, string>();

  constructor(configuration: GcsConfiguration) {
    this.configuration = { ...configuration };
  }

  private identities(env: Record<string, string | undefined>): Identity[] {
    const fromDir = this.configuration.certsDir ? identitiesFromCertsDir(this.configuration.certsDir) : [];
    if (fromDir.length) return fromDir;
    if (this.configuration.apiEndpoint)
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

  private handleFor(id: Identity): GcsHandle {
    const key = JSON.stringify([
      this.configuration.apiEndpoint ?? "",
      id.keyFilename ?? "",
      this.configuration.maxRetries ?? "",
    ]);
    const cached = this.clients.get(key);
    if (cached) return cached;
    const options: StorageOptions = {
      keyFilename: id.keyFilename,
      projectId: id.projectId,
      crc32cGenerator: () => new FastCrc32c(),
      // The library reads maxRetries 0 as "default": no retries is autoRetry false. Every call made
      // here is safe to repeat (whole-object writes through a resumable session, deletes of a key
      // whose absence is fine), so uploads and deletes retry too, not only reads.
      retryOptions:
        this.configuration.maxRetries === 0
          ? { autoRetry: false }
          : {
              autoRetry: true,
              maxRetries: this.configuration.maxRetries ?? DEFAULT_MAX_RETRIES,
              idempotencyStrategy: IdempotencyStrategy.RetryAlways,
            },
    };
    if (this.configuration.apiEndpoint) {
      options.apiEndpoint = this.configuration.apiEndpoint;
      // A custom endpoint with service accounts: requests carry the account's self-signed JWT (no
      // token exchange with Google), so such a server can tell the accounts apart. Without
      // accounts they go unauthenticated.
      options.useAuthWithCustomEndpoint = !!id.keyFilename;
    }
    const storage = new Storage(options);
    const handle: GcsHandle = {
      storage,
      identity: id.identity,
      server: this.configuration.apiEndpoint ?? "Google Cloud Storage",
      key,
    };
    if (this.configuration.apiEndpoint && id.keyFilename) {
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
    this.clients.set(key, handle);
    return handle;
  }

  /** The client for the configuration's first identity. */
  client(env: Record<string, string | undefined> = process.env): GcsHandle {
    return this.handleFor(this.identities(env)[0]!);
  }

  /**
   * The clients to try for a bucket, in order: the one that last worked for it, then every
   * service account of --google-certs by file name (a runner may serve several projects, each
   * with its own buckets).
   */
  clientsFor(bucket: string, env: Record<string, string | undefined> = process.env): GcsHandle[] {
    const all = this.identities(env).map((id) => this.handleFor(id));
    const known = this.bucketClient.get(bucket);
    const first = all.find((h) => h.key === known);
    return first ? [first, ...all.filter((h) => h !== first)] : all;
  }

  /** Remembers which client a bucket answered. */
  remember(bucket: string, handle: GcsHandle): void {
    this.bucketClient.set(bucket, handle.key);
  }

  /** Whether a client is known to work for the bucket. */
  isRemembered(bucket: string): boolean {
    return this.bucketClient.has(bucket);
  }
}
