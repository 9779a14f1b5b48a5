// Splits a gs://bucket/key location into bucket and object name.

import { RequestError } from "../../errors.ts";

export type GcsLocation = { bucket: string; key: string };

export function parseGcsLocation(location: string): GcsLocation {
  const match = /^gs:\/\/([^/]+)\/(.*)$/i.exec(location);
  if (!match) throw new RequestError("qualified", location, "is not a gs://bucket/key location");
  const bucket = match[1]!;
  const key = match[2]!;
  if (!key) throw new RequestError("qualified", location, "names a bucket but no object key");
  return { bucket, key };
}
