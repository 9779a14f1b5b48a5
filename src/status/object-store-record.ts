// The experiment record as one JSON object in an object store: the studioml "s3" database
// (experiments/<key> in the database bucket) and the "local" one (a file under endpoint/bucket).

import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Readable } from "node:stream";
import type { Request } from "../request/model.ts";
import { parseCredentials } from "../request/parse.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { REQUEST_IDENTITY_ONLY } from "../storage/storage-identity.ts";
import { storeFor } from "../storage/stores.ts";
import {
  checkpointFields,
  DATABASE_CALL_TIMEOUT_MS,
  finishedFields,
  RECORD_UPDATE_TRIES,
  runningFields,
  withDeadline,
  withRetries,
  withoutSecrets,
  type ExperimentRecord,
  type RecordOptions,
} from "./record.ts";

/** config.database {type: "s3", endpoint, bucket, credentials}. */
export function s3Record(
  d: Record<string, unknown>,
  request: Request,
  options: RecordOptions,
): ExperimentRecord | undefined {
  const endpoint = typeof d.endpoint === "string" ? d.endpoint : undefined;
  const bucket = typeof d.bucket === "string" ? d.bucket : undefined;
  if (!endpoint || !bucket) {
    options.warn("config.database: an s3 database needs endpoint and bucket; experiment status is not kept");
    return undefined;
  }
  let host: string;
  try {
    host = new URL(endpoint).host;
  } catch {
    options.warn(`config.database.endpoint: ${JSON.stringify(endpoint)} is not a URL; experiment status is not kept`);
    return undefined;
  }
  const location = `s3://${host}/${bucket}/experiments/${request.experiment.key}`;
  const credentials = parseCredentials("config.database.credentials", d.credentials);
  const identity = options.identity ?? REQUEST_IDENTITY_ONLY;
  if (!credentials?.aws) {
    // Without credentials of its own the record would be written as the runner: only where allowed.
    const refusal = identity.refusal({ scheme: "s3", host, bucket, key: `experiments/${request.experiment.key}` });
    if (refusal) {
      options.warn(`config.database: ${location} ${refusal}; experiment status is not kept`);
      return undefined;
    }
  }
  return new ObjectStoreRecord(
    storeFor(location, { credentials, endpoint, identity, field: "config.database" }),
    location,
    request,
    options.warn,
  );
}

/** config.database {type: "local", endpoint (a directory; ~ allowed), bucket (default studioml-meta)}. */
export function localRecord(
  d: Record<string, unknown>,
  request: Request,
  options: RecordOptions,
): ExperimentRecord | undefined {
  const endpoint = typeof d.endpoint === "string" && d.endpoint.trim() ? d.endpoint.trim() : undefined;
  if (!endpoint) {
    options.warn("config.database: a local database needs endpoint (a directory); experiment status is not kept");
    return undefined;
  }
  const expanded =
    endpoint === "~" || endpoint.startsWith("~/")
      ? join(homedir(), endpoint.slice(1))
      : endpoint.replace(/^file:\/\//, "");
  if (!isAbsolute(expanded)) {
    options.warn(
      `config.database.endpoint: ${JSON.stringify(endpoint)} is not an absolute directory; ` +
        "experiment status is not kept",
    );
    return undefined;
  }
  const bucket = typeof d.bucket === "string" && d.bucket ? d.bucket : "studioml-meta";
  const file = resolve(expanded, bucket, "experiments", request.experiment.key);
  const location = pathToFileURL(file).href;
  return new ObjectStoreRecord(storeFor(location), location, request, options.warn);
}

class ObjectStoreRecord implements ExperimentRecord {
  constructor(
    private readonly store: ObjectStore,
    readonly where: string,
    private readonly request: Request,
    private readonly warn: (message: string) => void,
  ) {}

  private async read(): Promise<Record<string, unknown> | undefined> {
    if (!(await this.store.head(this.where))) return undefined;
    const chunks: Buffer[] = [];
    for await (const c of await this.store.get(this.where)) chunks.push(Buffer.from(c as Uint8Array));
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  }

  private async update(
    fields: (current: Record<string, unknown>) => Record<string, unknown>,
    what: string,
  ): Promise<void> {
    try {
      await withDeadline(
        `recording ${what}`,
        DATABASE_CALL_TIMEOUT_MS,
        withRetries(RECORD_UPDATE_TRIES, async () => {
          const current = (await this.read()) ?? { ...this.request.experiment.raw };
          // Whatever the record held (the client writes the artifacts' keys into it), no secret is written back.
          const next = withoutSecrets({ ...current, ...fields(current) });
          await this.store.put(this.where, Readable.from([Buffer.from(JSON.stringify(next))]));
        }),
      );
    } catch (err) {
      this.warn(`could not record ${what} in ${this.where}: ${(err as Error).message}`);
    }
  }

  running() {
    return this.update(runningFields, "the start");
  }

  checkpoint() {
    return this.update(checkpointFields, "a checkpoint");
  }

  finished() {
    return this.update((current) => finishedFields(current.status), "the finish");
  }

  async stopRequested(): Promise<boolean> {
    try {
      return (await withDeadline("reading the record", DATABASE_CALL_TIMEOUT_MS, this.read()))?.status === "stopped";
    } catch (err) {
      this.warn(`could not read ${this.where}: ${(err as Error).message}`);
      return false;
    }
  }

  async close(): Promise<void> {}
}
