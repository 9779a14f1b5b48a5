// Which Google projects to serve: one per service-account JSON file of --google-certs (read
// again on every scan), GOOGLE_APPLICATION_CREDENTIALS, and --pubsub-project.

import { GoogleCertsDirError, readServiceAccountFile, serviceAccountFiles } from "../../config/google-certs.ts";
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
  const account = readServiceAccountFile(file);
  if (account.problem) throw new PubsubSettingsError(`${file}: ${account.problem}`);
  if (account.projectId === undefined || !PROJECT_ID.test(account.projectId))
    throw new PubsubSettingsError(`${file}: has no project_id`);
  return account.projectId;
}

export function validProjectId(id: string): boolean {
  return PROJECT_ID.test(id);
}

/** The *.json files of the certs directory, sorted by name. */
function certFiles(dir: string): string[] {
  try {
    return serviceAccountFiles(dir).map((f) => f.path);
  } catch (err) {
    if (err instanceof GoogleCertsDirError) throw new PubsubSettingsError(err.message);
    throw err;
  }
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
