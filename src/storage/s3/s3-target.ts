// Where an s3:// location is served from: endpoint URL (scheme from config.storage.endpoint),
// addressing style and signing region.

import type { S3Location } from "../../request/s3-location.ts";

export type S3Target = S3Location & {
  /** Endpoint URL for the SDK; undefined means AWS's own endpoint for the region. */
  endpoint?: string;
  /** Path-style addressing (http://host/bucket/key) for self-hosted servers; AWS uses virtual hosts. */
  forcePathStyle: boolean;
  region: string;
};

export const DEFAULT_REGION = "us-east-1";

const isAwsHost = (host: string) => /(^|\.)amazonaws\.com(\.cn)?(:\d+)?$/i.test(host);

/** The region named in an AWS host: s3.us-west-2.amazonaws.com, s3-eu-west-1…, bucket.s3.dualstack.ap-south-1…. */
export function regionFromHost(host: string): string | undefined {
  const m = new RegExp(
    "(?:^|\\.)s3[.-](?:dualstack\\.|fips\\.)*" +
      "([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\\d)\\.amazonaws\\.com(\\.cn)?(:\\d+)?$",
    "i",
  ).exec(host);
  return m?.[1]?.toLowerCase();
}

/** Scheme and host of a configured endpoint ("http://127.0.0.1:9000", "https://s3.example.org", "minio:9000"). */
export function parseEndpoint(endpoint: string | undefined): { scheme: "http" | "https"; host?: string } {
  const text = endpoint?.trim() ?? "";
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(text);
  if (m) {
    const scheme = m[1]!.toLowerCase() === "http" ? "http" : "https";
    return { scheme, host: m[2] || undefined };
  }
  const host = text.split("/")[0];
  return { scheme: "https", host: host || undefined };
}

/**
 * Region: the credentials' own, then AWS_REGION / AWS_DEFAULT_REGION, then the one in an AWS host
 * name, then us-east-1.
 */
export function resolveRegion(
  credentialsRegion: string | undefined,
  host: string | undefined,
  env: Record<string, string | undefined>,
): string {
  return (
    credentialsRegion ||
    env.AWS_REGION ||
    env.AWS_DEFAULT_REGION ||
    (host ? regionFromHost(host) : undefined) ||
    DEFAULT_REGION
  );
}

export function resolveTarget(
  location: S3Location,
  options: { endpoint?: string; credentialsRegion?: string },
  env: Record<string, string | undefined> = process.env,
): S3Target {
  const configured = parseEndpoint(options.endpoint);
  const host = location.host ?? configured.host;
  const endpoint = host ? `${configured.scheme}://${host}` : undefined;
  return {
    ...location,
    endpoint,
    forcePathStyle: host !== undefined && !isAwsHost(host),
    region: resolveRegion(options.credentialsRegion, host, env),
  };
}

/** How to name the server in messages. */
export function describeServer(target: S3Target): string {
  return target.endpoint ?? `AWS S3 (${target.region})`;
}
