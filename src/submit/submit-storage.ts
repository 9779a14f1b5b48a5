// Where `submit` puts the workspace and where the request says its artifacts live: a file: root,
// an S3 server and bucket (the submitter's AWS credentials embedded like the python client does),
// or a GCS bucket (the runner uses its own Google credentials).

import { storageUrl } from "../config/storage-options.ts";
import type { Credentials } from "../request/model.ts";
import { filePath } from "../storage/file/file-store.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { formatS3Location, isHostLike } from "../request/s3-location.ts";
import { S3Store } from "../storage/s3/s3-store.ts";
import { parseEndpoint } from "../storage/s3/s3-target.ts";
import { GcsClients } from "../storage/gcs/gcs-clients.ts";
import { GcsStore } from "../storage/gcs/gcs-store.ts";
import { storeFor } from "../storage/stores.ts";

import type { SubmitSettings } from "./submit-options.ts";

export type SubmitStorage = {
  store: ObjectStore;
  /** The artifact's `qualified` location for a storage key. */
  locationOf: (key: string) => string;
  bucket: string;
  /** `bucket` field of the artifacts (S3 only, like the python client). */
  artifactBucket?: string;
  /** `credentials` of the artifacts and of config.storage, in the client's spelling. */
  credentials?: Record<string, unknown>;
  /** config.storage of the request. */
  config: Record<string, unknown>;
  /** Make sure the bucket exists (S3: create it when missing, as the python client does). */
  prepare(): Promise<void>;
};

/** The storage settings of submit. */
export type SubmitStorageFlags = Pick<
  SubmitSettings,
  "storage" | "bucket" | "s3-endpoint" | "google-certs" | "gcs-endpoint"
>;

/** Problems with the storage flags, for submit's list of problems. */
export function storageProblems(flags: SubmitStorageFlags, env: Record<string, string | undefined>): string[] {
  const url = storageUrl(flags.storage);
  const problems: string[] = [];
  if (!/^(file|s3|gs):/i.test(url))
    problems.push(`--storage: ${url} — expected a file: URL, s3://[host:port/]bucket or gs://bucket`);
  if (/^gs:/i.test(url) && !/^gs:\/\/[a-z0-9][a-z0-9._-]*\/?$/.test(url))
    problems.push(`--storage: ${url} — expected gs://bucket`);
  const gcsEndpoint = flags["gcs-endpoint"];
  if (gcsEndpoint && !/^https?:\/\/[^/]+\/?$/i.test(gcsEndpoint))
    problems.push(`--gcs-endpoint: ${gcsEndpoint} — expected http(s)://host[:port]`);
  if (/^s3:/i.test(url) && !/^s3:\/\/[^/]+/i.test(url))
    problems.push(`--storage: ${url} — expected s3://[host:port/]bucket`);
  const endpoint = flags["s3-endpoint"];
  if (endpoint && !/^https?:\/\/[^/]+\/?$/i.test(endpoint))
    problems.push(`--s3-endpoint: ${endpoint} — expected http(s)://host[:port]`);
  if ((env.AWS_ACCESS_KEY_ID && !env.AWS_SECRET_ACCESS_KEY) || (!env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY)) {
    problems.push("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither");
  }
  return problems;
}

function fileStorage(url: string, bucket: string): SubmitStorage {
  const root = filePath(url);
  // The python client's local-storage form: 'file:/' + root + '/' + bucket + '/' + key.
  const locationOf = (key: string) => `file:/${root}/${bucket}/${key}`;
  return {
    store: storeFor(locationOf("x")),
    locationOf,
    bucket,
    config: { type: "local", endpoint: url, bucket },
    prepare: async () => undefined,
  };
}

function s3Storage(url: string, flags: SubmitStorageFlags, env: Record<string, string | undefined>): SubmitStorage {
  const configured = parseEndpoint(flags["s3-endpoint"]);
  const parts = url
    .replace(/^s3:\/\//i, "")
    .split("/")
    .filter(Boolean);
  const first = parts[0]!;
  const named = isHostLike(first, configured.host);
  const host = named ? first : configured.host;
  const bucket = (named ? parts[1] : first) ?? flags.bucket;
  const endpoint = host ? `${flags["s3-endpoint"] ? configured.scheme : "https"}://${host}` : undefined;
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const accessKey = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const sessionToken = env.AWS_SESSION_TOKEN;
  const own: Credentials | undefined =
    accessKey && secretAccessKey ? { aws: { accessKey, secretAccessKey, sessionToken, region } } : undefined;
  const credentials = own
    ? {
        aws: {
          access_key: accessKey,
          secret_access_key: secretAccessKey,
          ...(sessionToken ? { session_token: sessionToken } : {}),
          ...(region ? { region } : {}),
        },
      }
    : undefined;
  const locationOf = (key: string) => formatS3Location({ host, bucket }, key);
  const store = new S3Store({ credentials: own, endpoint });
  return {
    store,
    locationOf,
    bucket,
    artifactBucket: bucket,
    credentials,
    config: { type: "s3", ...(endpoint ? { endpoint } : {}), bucket, ...(credentials ? { credentials } : {}) },
    prepare: () => store.ensureBucket(locationOf("")),
  };
}

function gcsStorage(url: string, flags: SubmitStorageFlags): SubmitStorage {
  const clients = new GcsClients({ certsDir: flags["google-certs"], apiEndpoint: flags["gcs-endpoint"] });
  const bucket = url.replace(/^gs:\/\//i, "").replace(/\/$/, "");
  const locationOf = (key: string) => `gs://${bucket}/${key}`;
  return {
    store: new GcsStore(process.env, {}, clients),
    locationOf,
    bucket,
    artifactBucket: bucket,
    config: { type: "gcs", bucket },
    prepare: async () => undefined,
  };
}

export function submitStorage(flags: SubmitStorageFlags, env: Record<string, string | undefined>): SubmitStorage {
  const url = storageUrl(flags.storage);
  if (/^gs:/i.test(url)) return gcsStorage(url, flags);
  if (/^s3:/i.test(url)) return s3Storage(url, flags, env);
  return fileStorage(url, flags.bucket);
}
