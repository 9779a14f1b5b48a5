// S3 clients, one per server, region and identity, reused across artifacts and attempts; decides
// how requests are signed: with the given keys only (the client is configured with them, so the
// SDK's default chain is never consulted), or — only when the caller says "runner" — the runner's
// own identity through the SDK's default chain, else unsigned.

import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import type { AwsCredentials } from "../../request/model.ts";
import type { S3Target } from "./s3-target.ts";

export type S3Handle = {
  client: S3Client;
  /**
   * The same identity and settings over the runtime's native fetch, for object bodies (GET and
   * multipart upload): in Bun it moves bytes several times faster than node:http (a 256 MiB GET
   * from s3rver took 1.5 s through node:http, 0.3–0.5 s through fetch). A body coming down has no
   * socket idle timeout there; the read stream keeps its own.
   */
  bodies: S3Client;
  /** Who the requests are signed as, for messages (never a secret). */
  identity: string;
};

/** SDK attempts per request (network errors, 5xx and throttling), with exponential back-off. */
export const MAX_ATTEMPTS = 5;
const CONNECT_TIMEOUT_MS = 10_000;
/** A socket with no traffic for this long is given up (and the request retried). */
const SOCKET_IDLE_TIMEOUT_MS = 120_000;
/** How long "the default chain found nothing, go anonymous" is believed before asking again. */
const ANONYMOUS_DECISION_TTL_MS = 5 * 60_000;
const MAX_CLIENTS = 32;

type Entry = { handle: Promise<S3Handle>; expiresMs: number };
const clients = new Map<string, Entry>();

function baseConfig(target: S3Target): S3ClientConfig {
  return {
    region: target.region,
    endpoint: target.endpoint,
    forcePathStyle: target.forcePathStyle,
    maxAttempts: MAX_ATTEMPTS,
    retryMode: "standard",
    // Self-hosted servers (older MinIO, Ceph, s3rver) do not all speak the newer checksum
    // trailers; sizes are checked by the store itself.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: SOCKET_IDLE_TIMEOUT_MS },
  };
}

const keyHint = (accessKey: string) => (accessKey.length > 8 ? `…${accessKey.slice(-4)}` : "…");

/** A client over fetch with the config of `config`'s client. */
function bodiesClient(config: S3ClientConfig): S3Client {
  return new S3Client({ ...config, requestHandler: new FetchHttpHandler({ requestTimeout: SOCKET_IDLE_TIMEOUT_MS }) });
}

function staticClient(target: S3Target, aws: AwsCredentials): S3Handle {
  const config: S3ClientConfig = {
    ...baseConfig(target),
    credentials: { accessKeyId: aws.accessKey, secretAccessKey: aws.secretAccessKey, sessionToken: aws.sessionToken },
  };
  return {
    client: new S3Client(config),
    bodies: bodiesClient(config),
    identity: `the request's credentials (access key ${keyHint(aws.accessKey)})`,
  };
}

/** Unsigned requests: for buckets that allow anonymous access. */
function anonymousClient(target: S3Target): S3Handle {
  const config: S3ClientConfig = {
    ...baseConfig(target),
    credentials: { accessKeyId: "", secretAccessKey: "" },
    signer: { sign: async (request) => request },
  };
  return {
    client: new S3Client(config),
    bodies: bodiesClient(config),
    identity: "no credentials (anonymous requests)",
  };
}

/** The SDK's default chain (runner's environment, ~/.aws, instance role); anonymous when it finds nothing. */
async function ambientClient(target: S3Target): Promise<{ handle: S3Handle; anonymous: boolean }> {
  const client = new S3Client(baseConfig(target));
  try {
    await client.config.credentials();
    return {
      handle: {
        client,
        bodies: bodiesClient(baseConfig(target)),
        identity: "the runner's own AWS credentials (SDK default chain)",
      },
      anonymous: false,
    };
  } catch (err) {
    if ((err as Error).name !== "CredentialsProviderError") throw err;
    client.destroy();
    return { handle: anonymousClient(target), anonymous: true };
  }
}

function poolKey(target: S3Target, aws: AwsCredentials | "runner"): string {
  const who =
    aws !== "runner"
      ? new Bun.CryptoHasher("sha256")
          .update(`${aws.accessKey}\0${aws.secretAccessKey}\0${aws.sessionToken ?? ""}`)
          .digest("hex")
      : "ambient";
  return JSON.stringify([target.endpoint ?? "", target.region, target.forcePathStyle, who]);
}

/**
 * A client for the target, signed with `aws` when given, or as the runner ("runner": the SDK's
 * default chain, for callers that are the runner itself or that the identity policy allowed).
 * Clients dropped from the pool are not destroyed: a transfer may still be using one; idle
 * sockets close themselves.
 */
export async function s3ClientFor(target: S3Target, aws: AwsCredentials | "runner"): Promise<S3Handle> {
  const key = poolKey(target, aws);
  const cached = clients.get(key);
  clients.delete(key);
  if (cached && cached.expiresMs > Date.now()) {
    clients.set(key, cached); // most recently used last
    return cached.handle;
  }
  const entry: Entry = { handle: undefined as unknown as Promise<S3Handle>, expiresMs: Infinity };
  entry.handle =
    aws !== "runner"
      ? Promise.resolve(staticClient(target, aws))
      : ambientClient(target).then(({ handle, anonymous }) => {
          if (anonymous) entry.expiresMs = Date.now() + ANONYMOUS_DECISION_TTL_MS;
          return handle;
        });
  entry.handle.catch(() => clients.get(key) === entry && clients.delete(key));
  clients.set(key, entry);
  while (clients.size > MAX_CLIENTS) clients.delete(clients.keys().next().value!);
  return entry.handle;
}
