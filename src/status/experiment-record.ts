// Keeps the studioml experiment record (config.database) up to date the way the python worker
// did: status running → finished with time_started / time_last_checkpoint / time_finished, and
// reports a user's "stopped". Updating the record never fails an experiment: faults are logged.

import { Readable } from "node:stream";
import type { Request } from "../request/model.ts";
import { parseCredentials } from "../request/parse.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { storeFor } from "../storage/stores.ts";

export interface ExperimentRecord {
  /** Where the record lives, for log lines. */
  readonly where: string;
  running(): Promise<void>;
  checkpoint(): Promise<void>;
  finished(): Promise<void>;
  /** True when someone set the record's status to "stopped". */
  stopRequested(): Promise<boolean>;
}

type Warn = (message: string) => void;

/** The record keeper for the request's database, or undefined when there is none we can update. */
export function experimentRecordFor(request: Request, warn: Warn): ExperimentRecord | undefined {
  const db = request.config.raw.database;
  if (typeof db !== "object" || db === null) return undefined;
  const d = db as Record<string, unknown>;
  const type = String(d.type ?? "").toLowerCase();
  if (type !== "s3") {
    if (type) warn(`config.database.type "${d.type}": experiment status is not kept for this database type yet`);
    return undefined;
  }
  const endpoint = typeof d.endpoint === "string" ? d.endpoint : undefined;
  const bucket = typeof d.bucket === "string" ? d.bucket : undefined;
  if (!endpoint || !bucket) {
    warn("config.database: an s3 database needs endpoint and bucket; experiment status is not kept");
    return undefined;
  }
  let host: string;
  try {
    host = new URL(endpoint).host;
  } catch {
    warn(`config.database.endpoint: ${JSON.stringify(endpoint)} is not a URL; experiment status is not kept`);
    return undefined;
  }
  const location = `s3://${host}/${bucket}/experiments/${request.experiment.key}`;
  const credentials = parseCredentials("config.database.credentials", d.credentials);
  return new ObjectStoreRecord(storeFor(location, { credentials, endpoint }), location, request, warn);
}

const nowSeconds = () => Date.now() / 1000;

/** A record kept as one JSON object in an object store (the studioml s3 database). */
class ObjectStoreRecord implements ExperimentRecord {
  constructor(
    private readonly store: ObjectStore,
    readonly where: string,
    private readonly request: Request,
    private readonly warn: Warn,
  ) {}

  private async read(): Promise<Record<string, unknown> | undefined> {
    if (!(await this.store.head(this.where))) return undefined;
    const chunks: Buffer[] = [];
    for await (const c of await this.store.get(this.where)) chunks.push(Buffer.from(c as Uint8Array));
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  }

  private async update(fields: (current: Record<string, unknown>) => Record<string, unknown>, what: string): Promise<void> {
    try {
      const current = (await this.read()) ?? { ...this.request.experiment.raw };
      const next = { ...current, ...fields(current) };
      await this.store.put(this.where, Readable.from([Buffer.from(JSON.stringify(next))]));
    } catch (err) {
      this.warn(`could not record ${what} in ${this.where}: ${(err as Error).message}`);
    }
  }

  running() {
    return this.update(() => ({ status: "running", time_started: nowSeconds(), time_last_checkpoint: nowSeconds() }), "the start");
  }

  checkpoint() {
    return this.update(() => ({ time_last_checkpoint: nowSeconds() }), "a checkpoint");
  }

  finished() {
    // A user's "stopped" stays: the record says why the experiment ended.
    return this.update(
      (current) => ({ status: current.status === "stopped" ? "stopped" : "finished", time_finished: nowSeconds(), time_last_checkpoint: nowSeconds() }),
      "the finish",
    );
  }

  async stopRequested(): Promise<boolean> {
    try {
      return (await this.read())?.status === "stopped";
    } catch (err) {
      this.warn(`could not read ${this.where}: ${(err as Error).message}`);
      return false;
    }
  }
}
