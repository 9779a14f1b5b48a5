// Which Google projects to serve: one per service-account JSON file of --google-certs (read
// again on every scan), GOOGLE_APPLICATION_CREDENTIALS, and --pubsub-project.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../errors.ts";
import { PubsubSettingsError } from "./errors.ts";

export type ProjectSource = {
  projectId: string;
  /** Service-account JSON; absent: the client's default credentials (or the emulator). */
  keyFilename?: string;
  /** Where it came from, for logs. */
  origin: string;
};

export type ProjectSettings = {
  certsDir?: string;
  /** GOOGLE_APPLICATION_CREDENTIALS. */
  applicationCredentials?: string;
  project?: string;
};

const PROJECT_ID = /^[A-Za-z0-9][A-Za-z0-9.:_-]*$/;

/** The project_id of a service-account (or any credentials) JSON file. */
export function projectOfKeyFile(file: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new PubsubSettingsError(`${file}: not a readable JSON credentials file (${errorMessage(err)})`);
  }
  const id = typeof doc === "object" && doc !== null ? (doc as { project_id?: unknown }).project_id : undefined;
  if (typeof id !== "string" || !PROJECT_ID.test(id)) throw new PubsubSettingsError(`${file}: has no project_id`);
  return id;
}

export function validProjectId(id: string): boolean {
  return PROJECT_ID.test(id);
}

/** The *.json files of the certs directory, sorted by name. */
export function certFiles(dir: string): string[] {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new PubsubSettingsError(`--google-certs ${dir} is not a directory`);
    names = readdirSync(dir);
  } catch (err) {
    if (err instanceof PubsubSettingsError) throw err;
    throw new PubsubSettingsError(`--google-certs ${dir} cannot be read (${errorMessage(err)})`);
  }
  return names.filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort().map((n) => join(dir, n));
}

/**
 * The projects to serve, first source of a project wins: --google-certs files (sorted), then
 * GOOGLE_APPLICATION_CREDENTIALS (for --pubsub-project, else for its own project_id; ignored
 * when it names no project and --pubsub-project is not set, since it may serve storage only),
 * then --pubsub-project with default credentials. Unusable files are returned as problems.
 */
export function scanProjects(settings: ProjectSettings): { projects: ProjectSource[]; problems: string[] } {
  const projects: ProjectSource[] = [];
  const problems: string[] = [];
  const add = (p: ProjectSource) => {
    if (!projects.some((x) => x.projectId === p.projectId)) projects.push(p);
  };
  if (settings.certsDir) {
    try {
      for (const file of certFiles(settings.certsDir)) {
        try {
          add({ projectId: projectOfKeyFile(file), keyFilename: file, origin: file });
        } catch (err) {
          if (!(err instanceof PubsubSettingsError)) throw err;
          problems.push(`--google-certs: ${err.message}`);
        }
      }
    } catch (err) {
      if (!(err instanceof PubsubSettingsError)) throw err;
      problems.push(err.message);
    }
  }
  const gac = settings.applicationCredentials;
  if (gac) {
    try {
      const own = settings.project ? undefined : projectOfKeyFile(gac);
      add({ projectId: settings.project ?? own!, keyFilename: gac, origin: "GOOGLE_APPLICATION_CREDENTIALS" });
    } catch (err) {
      if (!(err instanceof PubsubSettingsError)) throw err;
      // Without --pubsub-project, a credentials file naming no project simply adds no Pub/Sub project.
    }
  } else if (settings.project) {
    add({ projectId: settings.project, origin: "--pubsub-project" });
  }
  return { projects, problems };
}
