// The --google-certs directory: one service-account JSON file per Google project. Declared and
// read in one place for Pub/Sub (projects to serve), GCS (accounts to try), Firebase (a project's
// key) and the sandbox (which hides it from experiments).

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import type { OptionSpec } from "./option-spec.ts";

export const GOOGLE_CERTS_OPTION = {
  name: "google-certs",
  type: "path",
  description:
    "directory of Google service-account JSON files, one project each (rescanned): " +
    "Pub/Sub projects whose subscriptions are queues, " +
    "GCS identities (each bucket uses the first account it accepts), Firebase credentials by project",
} as const satisfies OptionSpec;

/** One *.json file of the directory: its project and account, or why it cannot be used. */
export type ServiceAccountFile = {
  path: string;
  projectId?: string;
  clientEmail?: string;
  /** Set when the file is not readable JSON. */
  problem?: string;
};

/** The directory itself cannot be listed (missing, not a directory, no permission). */
export class GoogleCertsDirError extends Error {
  override name = "GoogleCertsDirError";
}

/** The *.json files of the directory (hidden files skipped), sorted by name, each read for project and email. */
export function serviceAccountFiles(dir: string): ServiceAccountFile[] {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new GoogleCertsDirError(`--google-certs ${dir} is not a directory`);
    names = readdirSync(dir);
  } catch (err) {
    if (err instanceof GoogleCertsDirError) throw err;
    throw new GoogleCertsDirError(`--google-certs ${dir} cannot be read (${errorMessage(err)})`, { cause: err });
  }
  return names
    .filter((n) => n.endsWith(".json") && !n.startsWith("."))
    .sort()
    .map((n) => readServiceAccountFile(join(dir, n)));
}

/** project_id and client_email of one credentials JSON file. */
export function readServiceAccountFile(path: string): ServiceAccountFile {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    return { path, problem: `not a readable JSON credentials file (${errorMessage(err)})` };
  }
  const fields =
    typeof doc === "object" && doc !== null ? (doc as { project_id?: unknown; client_email?: unknown }) : {};
  return {
    path,
    projectId: typeof fields.project_id === "string" ? fields.project_id : undefined,
    clientEmail: typeof fields.client_email === "string" ? fields.client_email : undefined,
  };
}
