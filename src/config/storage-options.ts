// Settings of the runner's own storage, shared by `run` and `submit`: --storage (the storage root
// `submit` writes to and `run` trusts for local queues; STUDIO_STORAGE as the python client reads
// it) and --gcs-endpoint (a GCS server other than Google's).

import { homedir } from "node:os";
import { join } from "node:path";
import type { OptionSpec } from "./option-spec.ts";

export const STORAGE_OPTION = {
  name: "storage",
  type: "string",
  env: "STUDIO_STORAGE",
  description:
    "this machine's studioml storage: a file: URL (storage root), s3://host:port/bucket " +
    "(S3; credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or gs://bucket " +
    "(GCS; credentials from --google-certs or GOOGLE_APPLICATION_CREDENTIALS); submit stores workspaces there, " +
    "run lets requests from local queues use it when it is file: (see --file-storage-roots)",
  defaultText: "file://~/.studioml/storage",
} as const satisfies OptionSpec;

export const GCS_ENDPOINT_OPTION = {
  name: "gcs-endpoint",
  type: "string",
  description:
    "a GCS JSON API server other than Google's (test servers, emulators); requests to it are not authenticated",
} as const satisfies OptionSpec;

/** --storage as set, else the default storage root ~/.studioml/storage. */
export function storageUrl(setting: string | undefined): string {
  return setting ?? `file://${join(homedir(), ".studioml", "storage")}`;
}
