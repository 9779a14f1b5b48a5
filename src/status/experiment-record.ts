// The studioml experiment record (config.database) as the runner keeps it: status running →
// finished with the time fields, and a user's "stopped" read back. One implementation per
// database type; updating a record never fails an experiment (faults are logged and dropped).
// Where the record lives is the request's choice, so it passes the location rules first
// (checkDatabase): a database the rules refuse fails the request before any record is made.

import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { RequestError } from "../errors.ts";
import { checkEndpoint, checkFilePath, type LocationPolicy } from "../request/location-policy.ts";
import type { Request } from "../request/model.ts";
import { connectHostOf, resolveChecked, type ResolveOptions } from "../request/resolve-host.ts";
import { ConfinedPaths } from "../storage/file/confined-path.ts";
import type { ExperimentRecord, RecordFactory, RecordOptions } from "./record.ts";
import { firebaseRecord } from "./firebase-record.ts";
import { httpRecord } from "./http-record.ts";
import { localRecord, s3Record } from "./object-store-record.ts";

const FACTORIES: Record<string, RecordFactory> = {
  s3: s3Record,
  local: localRecord,
  firebase: firebaseRecord,
  http: httpRecord,
};

/** The record keeper for the request's database, or undefined when there is none we can update. */
export function experimentRecordFor(request: Request, options: RecordOptions): ExperimentRecord | undefined {
  const db = request.config.raw.database;
  if (typeof db !== "object" || db === null) return undefined;
  const d = db as Record<string, unknown>;
  const type = String(d.type ?? "").toLowerCase();
  const factory = FACTORIES[type];
  if (!factory) {
    if (type)
      options.warn(
        `config.database.type ${JSON.stringify(d.type)}: unknown database type; experiment status is not kept`,
      );
    return undefined;
  }
  const record = factory(d, request, options);
  return record && inOrder(record);
}

/**
 * config.database under the same rules as the artifacts: the s3 endpoint, the http serverUrl and
 * the Firebase databaseURL (not used, and so not checked, when the runner's
 * FIREBASE_DATABASE_EMULATOR_HOST points Firebase at an emulator) by host, their names resolved and
 * every address checked; the local database's record file and the Firebase serviceAccount file
 * under the file: roots, the latter also by real path now (firebase-admin opens it again later).
 * Throws RequestError naming the field; RetryableError when a name cannot be resolved now.
 */
export async function checkDatabase(
  request: Request,
  policy: LocationPolicy,
  options: { env: Record<string, string | undefined>; resolve?: ResolveOptions },
): Promise<void> {
  const db = request.config.raw.database;
  if (typeof db !== "object" || db === null) return;
  const d = db as Record<string, unknown>;
  const type = String(d.type ?? "").toLowerCase();
  const host = async (field: string, value: unknown, endpointOptions: { userinfo?: boolean } = {}) => {
    if (typeof value !== "string" || !value) return;
    checkEndpoint(field, value, policy, endpointOptions);
    const name = connectHostOf(value);
    if (name) await resolveChecked(field, value, name, policy, options.resolve);
  };
  switch (type) {
    case "s3":
      return host("config.database.endpoint", d.endpoint);
    case "http":
      return typeof d.serverUrl === "string"
        ? host("config.database.serverUrl", d.serverUrl, { userinfo: true })
        : host("config.database.endpoint", d.endpoint, { userinfo: true });
    case "firebase": {
      if (options.env.FIREBASE_DATABASE_EMULATOR_HOST) return;
      const projectId = typeof d.projectId === "string" ? d.projectId : undefined;
      const url =
        typeof d.databaseURL === "string"
          ? d.databaseURL
          : projectId
            ? `https://${projectId}.firebaseio.com`
            : undefined;
      await host(typeof d.databaseURL === "string" ? "config.database.databaseURL" : "config.database.projectId", url);
      if (typeof d.serviceAccount === "string" && d.serviceAccount) {
        const file = d.serviceAccount;
        checkFilePath("config.database.serviceAccount", file, file, policy);
        // The real path, now: a symlink inside a root to a key file elsewhere is refused.
        const opened = await new ConfinedPaths(policy.allowedFileRoots, "config.database.serviceAccount")
          .openRead(file, file)
          .catch((err) => {
            if (err instanceof RequestError) throw err;
            return undefined; // unreadable: the record says the file cannot be used
          });
        await opened?.close();
      }
      return;
    }
    case "local": {
      const endpoint = typeof d.endpoint === "string" ? d.endpoint.trim() : "";
      if (!endpoint) return;
      const bucket = typeof d.bucket === "string" && d.bucket ? d.bucket : "studioml-meta";
      const key = request.experiment.key;
      for (const [field, value] of [
        ["config.database.endpoint", endpoint],
        ["config.database.bucket", bucket],
        ["experiment.key", key],
      ] as const) {
        if (value.split("/").includes(".."))
          throw new RequestError(
            field,
            value,
            "must not contain '..' (it names where the experiment record is written)",
          );
      }
      // The file localRecord writes (object-store-record.ts): <endpoint>/<bucket>/experiments/<key>.
      const expanded =
        endpoint === "~" || endpoint.startsWith("~/")
          ? join(homedir(), endpoint.slice(1))
          : endpoint.replace(/^file:\/\//, "");
      if (!isAbsolute(expanded)) return; // not used: the record says so in the log
      checkFilePath("config.database.endpoint", endpoint, resolve(expanded, bucket, "experiments", key), policy);
      return;
    }
  }
}

/**
 * The record with its calls run one after another: the runner does not wait for the start to be
 * recorded before the job runs, and a checkpoint must not overtake it (each update reads, then
 * writes the whole record).
 */
function inOrder(record: ExperimentRecord): ExperimentRecord {
  let last: Promise<unknown> = Promise.resolve();
  const queued = <T>(call: () => Promise<T>): Promise<T> => {
    const next = last.then(call, call);
    last = next.catch(() => undefined);
    return next;
  };
  return {
    where: record.where,
    running: () => queued(() => record.running()),
    checkpoint: () => queued(() => record.checkpoint()),
    finished: () => queued(() => record.finished()),
    stopRequested: () => record.stopRequested(),
    close: () => queued(() => record.close()),
  };
}

export type { ExperimentRecord } from "./record.ts";
