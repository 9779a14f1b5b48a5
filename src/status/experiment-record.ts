// The studioml experiment record (config.database) as the runner keeps it: status running →
// finished with the time fields, and a user's "stopped" read back. One implementation per
// database type; updating a record never fails an experiment (faults are logged and dropped).

import type { Request } from "../request/model.ts";
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
    if (type) options.warn(`config.database.type ${JSON.stringify(d.type)}: unknown database type; experiment status is not kept`);
    return undefined;
  }
  const record = factory(d, request, options);
  return record && inOrder(record);
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
