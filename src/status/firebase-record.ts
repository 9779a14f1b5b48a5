// The experiment record in a Firebase Realtime Database (config.database {type: "FireBase",
// databaseURL, projectId, serviceAccount}) through firebase-admin: experiments/<key> is merged
// the way studioml's key-value provider does, and experiments/<key>/status is read for "stopped".

import { randomUUID } from "node:crypto";
import { cert, applicationDefault, deleteApp, initializeApp, type App } from "firebase-admin/app";
import { getDatabase, type Database } from "firebase-admin/database";
import type { Request } from "../request/model.ts";
import { chooseFirebaseCredentials } from "./firebase-credentials.ts";
import {
  checkpointFields,
  DATABASE_CALL_TIMEOUT_MS,
  finishedFields,
  runningFields,
  withDeadline,
  withoutSecrets,
  type ExperimentRecord,
  type RecordOptions,
} from "./record.ts";

/** Characters a Realtime Database key cannot hold. */
const BAD_KEY = /[.#$[\]/]/;

export function firebaseRecord(
  d: Record<string, unknown>,
  request: Request,
  options: RecordOptions,
): ExperimentRecord | undefined {
  const projectId = typeof d.projectId === "string" ? d.projectId : undefined;
  const url =
    typeof d.databaseURL === "string" ? d.databaseURL : projectId ? `https://${projectId}.firebaseio.com` : undefined;
  if (!url) {
    options.warn("config.database: a firebase database needs databaseURL or projectId; experiment status is not kept");
    return undefined;
  }
  try {
    if (new URL(url).protocol !== "https:" && new URL(url).protocol !== "http:") throw new Error();
  } catch {
    options.warn(`config.database.databaseURL: ${JSON.stringify(url)} is not a URL; experiment status is not kept`);
    return undefined;
  }
  const key = request.experiment.key;
  if (BAD_KEY.test(key)) {
    options.warn(
      `experiment.key ${JSON.stringify(key)} cannot be a Firebase key (it holds one of . # $ [ ] /); ` +
        "experiment status is not kept",
    );
    return undefined;
  }
  const choice = chooseFirebaseCredentials(d, projectId, options.env, options.googleCertsDir);
  if (choice.kind === "none") {
    options.warn(
      `config.database: no credentials for the Firebase database ${url}: ${choice.reason}; ` +
        "experiment status is not kept",
    );
    return undefined;
  }
  return new FirebaseRecord(url, choice, request, options);
}

class FirebaseRecord implements ExperimentRecord {
  readonly where: string;
  private app?: App;
  private db?: Database;

  constructor(
    private readonly url: string,
    private readonly choice: Exclude<ReturnType<typeof chooseFirebaseCredentials>, { kind: "none" }>,
    private readonly request: Request,
    private readonly options: RecordOptions,
  ) {
    this.where = `${new URL(url).origin}/experiments/${request.experiment.key}`;
  }

  private database(): Database {
    if (this.db) return this.db;
    const credential =
      this.choice.kind === "service-account"
        ? cert(this.choice.file)
        : this.choice.kind === "application-default"
          ? applicationDefault()
          : undefined;
    // One app per record: experiments may name different databases and credentials.
    this.app = initializeApp(
      { databaseURL: this.url, ...(credential ? { credential } : {}) },
      `studio-runner-${randomUUID()}`,
    );
    this.db = getDatabase(this.app);
    return this.db;
  }

  private ref(path = "") {
    return this.database().ref(`experiments/${this.request.experiment.key}${path}`);
  }

  /** One bounded database step; faults are logged, never thrown. */
  private async step(what: string, work: () => Promise<void>): Promise<void> {
    try {
      await withDeadline(`recording ${what}`, DATABASE_CALL_TIMEOUT_MS, work());
    } catch (err) {
      this.options.warn(`could not record ${what} in ${this.where}: ${(err as Error).message}`);
    }
  }

  running() {
    return this.step("the start", async () => {
      const ref = this.ref();
      // A record the client never wrote (or one since deleted) is created from the request.
      if ((await ref.get()).exists()) await ref.update({ ...runningFields(), ...this.secretRemovals() });
      else await ref.set(withoutSecrets({ ...this.request.experiment.raw, ...runningFields() }));
    });
  }

  /**
   * Paths to clear in a record the client wrote: its artifacts' credentials (studioml copies the
   * request's keys into the record). Labels a database key cannot hold are left to the client.
   */
  private secretRemovals(): Record<string, null> {
    const removals: Record<string, null> = {};
    for (const label of Object.keys(this.request.experiment.artifacts ?? {})) {
      if (!BAD_KEY.test(label) && label) removals[`artifacts/${label}/credentials`] = null;
    }
    return removals;
  }

  checkpoint() {
    return this.step("a checkpoint", () => this.ref().update(checkpointFields()));
  }

  finished() {
    return this.step("the finish", async () => {
      const status = (await this.ref("/status").get()).val();
      await this.ref().update(finishedFields(status));
    });
  }

  async stopRequested(): Promise<boolean> {
    try {
      const snap = await withDeadline("reading the record", DATABASE_CALL_TIMEOUT_MS, this.ref("/status").get());
      return snap.val() === "stopped";
    } catch (err) {
      this.options.warn(`could not read ${this.where}: ${(err as Error).message}`);
      return false;
    }
  }

  async close(): Promise<void> {
    const app = this.app;
    this.app = undefined;
    this.db = undefined;
    if (app) await deleteApp(app).catch(() => undefined);
  }
}
