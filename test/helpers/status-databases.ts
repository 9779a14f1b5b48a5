// The four studioml experiment databases as tests drive them: an S3 database on a real S3
// server, a local one in a directory, a studioml API server stand-in (http) and a Realtime
// Database stand-in (firebase). Each can seed a record as the client would, read it, write a
// user's "stopped", and be made to fail.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { CLIENT_KEYS, clientStore } from "./fixture-s3.ts";
import { startRtdbServer, type RtdbTestServer } from "./rtdb-server.ts";
import { startS3rver, type S3Server } from "./s3-server.ts";
import { startStudioApiServer, type StudioApiServer } from "./studio-api-server.ts";

export type Doc = Record<string, any>;

export type DatabaseHarness = {
  type: string;
  /** config.database for an experiment (a broken one after fail()). */
  config(): Doc;
  /** What the runner process needs in its environment. */
  runnerEnv: Record<string, string>;
  /** Directories the runner must allow for file: storage besides the sandbox's (the local database's). */
  fileRoots: string[];
  seed(key: string, doc: Doc): Promise<void>;
  read(key: string): Promise<Doc | undefined>;
  stop(key: string): Promise<void>;
  /** Every later call to the database fails, until heal(). */
  fail(): void;
  heal(): void;
  /** Whether the finish keeps a user's "stopped" (the API server decides that itself). */
  keepsStopped: boolean;
};

const DB_BUCKET = "studioml-meta";

export type Databases = { all: DatabaseHarness[]; stop(): Promise<void> };

export async function startDatabases(): Promise<Databases> {
  const s3: S3Server = await startS3rver({ keys: [CLIENT_KEYS], buckets: [DB_BUCKET] });
  const api: StudioApiServer = startStudioApiServer();
  const rtdb: RtdbTestServer = await startRtdbServer();
  const localRoot = mkdtempSync(join(tmpdir(), "sr-localdb-"));
  const s3At = (key: string) => `s3://${s3.host}/${DB_BUCKET}/experiments/${key}`;
  const localAt = (key: string) => join(localRoot, DB_BUCKET, "experiments", key);
  let s3Broken = false;
  let localBroken = false;

  const s3Harness: DatabaseHarness = {
    type: "s3",
    config: () => ({
      type: "s3",
      endpoint: s3Broken ? "http://127.0.0.1:9" : s3.endpoint,
      bucket: DB_BUCKET,
      authentication: "none",
      credentials: {
        aws: { access_key: CLIENT_KEYS.accessKey, secret_access_key: CLIENT_KEYS.secretAccessKey, region: "us-west-2" },
      },
    }),
    runnerEnv: {},
    fileRoots: [],
    async seed(key, doc) {
      await clientStore(s3).put(s3At(key), Readable.from([Buffer.from(JSON.stringify(doc))]));
    },
    async read(key) {
      const store = clientStore(s3);
      if (!(await store.head(s3At(key)))) return undefined;
      const chunks: Buffer[] = [];
      for await (const c of await store.get(s3At(key))) chunks.push(Buffer.from(c as Uint8Array));
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    },
    async stop(key) {
      await this.seed(key, { ...(await this.read(key)), status: "stopped" });
    },
    fail: () => void (s3Broken = true),
    heal: () => void (s3Broken = false),
    keepsStopped: true,
  };

  const localHarness: DatabaseHarness = {
    type: "local",
    // A broken local database: its directory is a regular file.
    config: () => ({
      type: "local",
      endpoint: localBroken ? join(localRoot, "not-a-dir") : localRoot,
      bucket: DB_BUCKET,
    }),
    runnerEnv: {},
    fileRoots: [localRoot],
    async seed(key, doc) {
      mkdirSync(dirname(localAt(key)), { recursive: true });
      writeFileSync(localAt(key), JSON.stringify(doc));
    },
    async read(key) {
      try {
        return JSON.parse(readFileSync(localAt(key), "utf8"));
      } catch {
        return undefined;
      }
    },
    async stop(key) {
      await this.seed(key, { ...(await this.read(key)), status: "stopped" });
    },
    fail() {
      localBroken = true;
      writeFileSync(join(localRoot, "not-a-dir"), "");
    },
    heal: () => void (localBroken = false),
    keepsStopped: true,
  };

  const httpHarness: DatabaseHarness = {
    type: "http",
    config: () => ({ type: "http", serverUrl: api.url }),
    runnerEnv: {},
    fileRoots: [],
    async seed(key, doc) {
      api.experiments.set(key, { ...doc, key });
    },
    async read(key) {
      const e = api.experiments.get(key);
      return e && structuredClone(e);
    },
    async stop(key) {
      api.experiments.get(key)!.status = "stopped";
    },
    fail: () => void (api.failing = true),
    heal: () => void (api.failing = false),
    keepsStopped: false,
  };

  const firebaseHarness: DatabaseHarness = {
    type: "firebase",
    config: () => ({
      type: "FireBase",
      projectId: "studio-test",
      databaseURL: "https://studio-test.firebaseio.com",
      guest: true,
    }),
    runnerEnv: { FIREBASE_DATABASE_EMULATOR_HOST: rtdb.host },
    fileRoots: [],
    async seed(key, doc) {
      rtdb.write(`experiments/${key}`, doc);
    },
    async read(key) {
      const v = rtdb.read(`experiments/${key}`);
      return v === null ? undefined : (structuredClone(v) as Doc);
    },
    async stop(key) {
      rtdb.write(`experiments/${key}/status`, "stopped");
    },
    fail: () => void (rtdb.failing = true),
    heal: () => void (rtdb.failing = false),
    keepsStopped: true,
  };

  return {
    all: [s3Harness, localHarness, httpHarness, firebaseHarness],
    async stop() {
      await Promise.all([s3.stop(), api.stop(), rtdb.stop()]);
      rmSync(localRoot, { recursive: true, force: true });
    },
  };
}
