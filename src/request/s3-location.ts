// Splits an s3:// location into server host (when it names one), bucket and key.

import { RequestError } from "../errors.ts";

export type S3Location = {
  /** "host[:port]" when the location names its server (studioml's form), else undefined (AWS form). */
  host?: string;
  bucket: string;
  key: string;
};

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * Whether the first component of an s3:// location is a server rather than a bucket. Bucket names
 * may contain dots but never ':' or '[', are never IP addresses, and (by convention here) a
 * dotted name with an "s3" label or an amazonaws.com suffix is a server: s3.us-west-2.amazonaws.com,
 * minio.s3.example.org. `knownHost` (the configured endpoint's host) always counts as a server.
 */
export function isHostLike(component: string, knownHost?: string): boolean {
  const c = component.toLowerCase();
  if (knownHost && c === knownHost.toLowerCase()) return true;
  if (c.includes(":") || c.startsWith("[")) return true;
  if (c === "localhost" || IPV4.test(c)) return true;
  if (!c.includes(".")) return false;
  if (/(^|\.)amazonaws\.com(\.cn)?$/.test(c)) return true;
  return c.split(".").some((label) => label === "s3" || /^s3-/.test(label));
}

export function parseS3Location(location: string, knownHost?: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.*)$/i.exec(location);
  if (!match) throw new RequestError("qualified", location, "is not an s3://[host[:port]/]bucket/key location");
  const first = match[1]!;
  const rest = match[2]!;
  if (isHostLike(first, knownHost)) {
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? "" : rest.slice(slash + 1);
    if (!bucket) throw new RequestError("qualified", location, "names a server but no bucket");
    return { host: first, bucket, key };
  }
  return { bucket: first, key: rest };
}

/** The location of `key` next to a parsed one (same server and bucket). */
export function formatS3Location(where: { host?: string; bucket: string }, key: string): string {
  return `s3://${where.host ? `${where.host}/` : ""}${where.bucket}/${key}`;
}
