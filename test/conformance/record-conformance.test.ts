// One conformance suite for every experiment database the runner keeps records in (s3, local,
// http, firebase), each against its real server or wire-level stand-in: the status goes running →
// finished with the time fields, a user's "stopped" is seen, a failing database never throws, and no
// record ever holds a secret.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { getRunnerLimits, setRunnerLimits } from "../../src/request/location-policy.ts";
import type { Request } from "../../src/request/model.ts";
import { experimentRecordFor } from "../../src/status/experiment-record.ts";
import { storageIdentityFor, storageIdentitySetting } from "../../src/storage/storage-identity.ts";
import { startDatabases, type DatabaseHarness, type Databases } from "../helpers/status-databases.ts";

let dbs: Databases;
const savedEmulator = process.env.FIREBASE_DATABASE_EMULATOR_HOST;
const savedLimits = getRunnerLimits();
beforeAll(async () => {
  // The stand-in servers listen on loopback: as a runner started with --allow-private-endpoints.
  setRunnerLimits({ ...savedLimits, allowPrivate: true });
  dbs = await startDatabases();
  // firebase-admin reads the emulator address from the process environment.
  process.env.FIREBASE_DATABASE_EMULATOR_HOST = dbs.all.find(
    (d) => d.type === "firebase",
  )!.runnerEnv.FIREBASE_DATABASE_EMULATOR_HOST;
}, 60_000);
afterAll(async () => {
  setRunnerLimits(savedLimits);
  if (savedEmulator === undefined) delete process.env.FIREBASE_DATABASE_EMULATOR_HOST;
  else process.env.FIREBASE_DATABASE_EMULATOR_HOST = savedEmulator;
  await dbs?.stop();
});

let n = 0;
function requestFor(db: DatabaseHarness): { request: Request; key: string; raw: Record<string, unknown> } {
  const key = `rec-${db.type}-${Date.now()}-${n++}`;
  const raw = { key, status: "waiting", time_added: Date.now() / 1000 - 5, pythonenv: ["numpy==2.0.0"], artifacts: {} };
  const request = { experiment: { key, raw }, config: { raw: { database: db.config() } } } as unknown as Request;
  return { request, key, raw };
}

function keeper(db: DatabaseHarness, request: Request) {
  const warnings: string[] = [];
  const env = { ...process.env, ...db.runnerEnv };
  const record = experimentRecordFor(request, { warn: (m) => warnings.push(m), env });
  if (!record) throw new Error(`no record keeper for ${db.type}: ${warnings.join("; ")}`);
  return { record, warnings };
}

for (const type of ["s3", "local", "http", "firebase"]) {
  describe(`experiment record conformance: ${type}`, () => {
    const db = () => dbs.all.find((d) => d.type === type)!;

    test("running, checkpoint, finished: status and time fields as the python worker sets them", async () => {
      const { request, key, raw } = requestFor(db());
      await db().seed(key, raw);
      const { record, warnings } = keeper(db(), request);
      const before = Date.now() / 1000;
      await record.running();
      const running = (await db().read(key))!;
      expect(running.status).toBe("running");
      expect(running.time_started).toBeGreaterThanOrEqual(before - 1);
      expect(running.key).toBe(key);
      await Bun.sleep(20); // timing is the point: the checkpoint's time must be later than time_started
      await record.checkpoint();
      const checkpointed = (await db().read(key))!;
      expect(checkpointed.time_last_checkpoint).toBeGreaterThan(running.time_started);
      await record.finished();
      const finished = (await db().read(key))!;
      expect(finished.status).toBe("finished");
      expect(finished.time_finished).toBeGreaterThanOrEqual(finished.time_started);
      expect(finished.time_added).toBe(raw.time_added); // the client's fields are kept
      expect(warnings).toEqual([]);
      await record.close();
    });

    test('a user\'s "stopped" is reported, and the finish keeps it where the database is ours to write', async () => {
      const { request, key, raw } = requestFor(db());
      await db().seed(key, raw);
      const { record } = keeper(db(), request);
      await record.running();
      expect(await record.stopRequested()).toBe(false);
      await db().stop(key);
      expect(await record.stopRequested()).toBe(true);
      await record.finished();
      const final = (await db().read(key))!;
      expect(final.status).toBe(db().keepsStopped ? "stopped" : "finished");
      expect(final.time_finished).toBeGreaterThan(0);
      await record.close();
    });

    test(
      "the record never holds a secret: none copied from the request, and the " + "client's copy is cleared",
      async () => {
        const secret = `rec-secret-${crypto.randomUUID()}`;
        const token = `rec-token-${crypto.randomUUID()}`;
        const withKeys = (r: Record<string, unknown>) => ({
          ...r,
          artifacts: {
            workspace: {
              key: "w.tar",
              qualified: "s3://b/w.tar",
              mutable: false,
              credentials: { aws: { access_key: "AKIARECORDTEST", secret_access_key: secret, session_token: token } },
            },
            output: {
              key: "o.tar",
              qualified: "s3://b/o.tar",
              mutable: true,
              credentials: { aws: { access_key: "AKIARECORDTEST", secret_access_key: secret } },
            },
          },
        });
        const leaks = (doc: unknown) => {
          const text = JSON.stringify(doc ?? {});
          return [secret, token, "secret_access_key", "session_token"].filter((s) => text.includes(s));
        };
        // The runner creates the record from the request.
        const fresh = requestFor(db());
        fresh.request.experiment.raw = withKeys(fresh.raw);
        (fresh.request.experiment as { artifacts: unknown }).artifacts = { workspace: {}, output: {} };
        const a = keeper(db(), fresh.request);
        await a.record.running();
        await a.record.finished();
        expect(leaks(await db().read(fresh.key))).toEqual([]);
        await a.record.close();
        // The client wrote the record with the keys in it (as studioml does): the runner's writes clear them.
        if (type === "http") return; // the API server keeps its own document; the runner sends only the key
        const seeded = requestFor(db());
        seeded.request.experiment.raw = withKeys(seeded.raw);
        (seeded.request.experiment as { artifacts: unknown }).artifacts = { workspace: {}, output: {} };
        await db().seed(seeded.key, withKeys(seeded.raw));
        expect(leaks(await db().read(seeded.key)).length).toBeGreaterThan(0);
        const b = keeper(db(), seeded.request);
        await b.record.running();
        expect(leaks(await db().read(seeded.key))).toEqual([]);
        await b.record.finished();
        const final = (await db().read(seeded.key))!;
        expect(leaks(final)).toEqual([]);
        // the rest stays
        expect((final.artifacts as Record<string, Record<string, unknown>>).workspace!.qualified).toBe("s3://b/w.tar");
        expect(b.warnings).toEqual([]);
        await b.record.close();
      },
    );

    test("a failing database: every call resolves, each fault is logged, no stop is reported", async () => {
      db().fail();
      try {
        const { request, key, raw } = requestFor(db());
        await db()
          .seed(key, raw)
          .catch(() => undefined);
        const { record, warnings } = keeper(db(), request);
        await record.running();
        await record.checkpoint();
        expect(await record.stopRequested()).toBe(false);
        await record.finished();
        await record.close();
        expect(warnings.length).toBeGreaterThanOrEqual(4);
        for (const w of warnings) expect(w).toMatch(/could not (record|read)/);
      } finally {
        db().heal();
      }
    }, 120_000);
  });
}

describe("experiment record: what each database type needs", () => {
  const build = (database: unknown, env: Record<string, string | undefined> = {}) => {
    const warnings: string[] = [];
    const request = {
      experiment: { key: "k", raw: { key: "k" } },
      config: { raw: { database } },
    } as unknown as Request;
    const record = experimentRecordFor(request, { warn: (m) => warnings.push(m), env });
    return { record, warnings };
  };

  test("no database, or no type: nothing is kept and nothing is said", () => {
    expect(build(undefined)).toEqual({ record: undefined, warnings: [] });
    expect(build({})).toEqual({ record: undefined, warnings: [] });
  });

  test("an unknown type is named", () => {
    const { record, warnings } = build({ type: "dynamodb" });
    expect(record).toBeUndefined();
    expect(warnings[0]).toContain('config.database.type "dynamodb"');
  });

  test("missing fields are named per type", () => {
    expect(build({ type: "s3", endpoint: "http://x" }).warnings[0]).toContain("endpoint and bucket");
    expect(build({ type: "local" }).warnings[0]).toContain("endpoint");
    expect(build({ type: "local", endpoint: "relative/dir" }).warnings[0]).toContain("absolute");
    expect(build({ type: "http" }).warnings[0]).toContain("serverUrl");
    expect(build({ type: "http", serverUrl: "ftp://x" }).warnings[0]).toContain("not an http(s) URL");
    expect(build({ type: "firebase" }).warnings[0]).toContain("databaseURL or projectId");
  });

  test("firebase without any credentials is refused with the reason, never tried against Google", () => {
    const { record, warnings } = build(
      { type: "FireBase", projectId: "p1", serviceAccount: "/nonexistent/key.json" },
      {},
    );
    expect(record).toBeUndefined();
    expect(warnings[0]).toContain("/nonexistent/key.json");
    expect(warnings[0]).toContain('project "p1"');
  });

  test("an s3 database without credentials is not written with the runner's identity unless allowed", () => {
    const { record, warnings } = build({ type: "s3", endpoint: "http://127.0.0.1:9", bucket: "meta" });
    expect(record).toBeUndefined();
    expect(warnings[0]).toContain("config.database: s3://127.0.0.1:9/meta/experiments/k");
    expect(warnings[0]).toContain("--storage-identity");
    const allowed = experimentRecordFor(
      {
        experiment: { key: "k", raw: { key: "k" } },
        config: { raw: { database: { type: "s3", endpoint: "http://127.0.0.1:9", bucket: "meta" } } },
      } as unknown as Request,
      {
        warn: () => undefined,
        env: {},
        identity: storageIdentityFor(
          storageIdentitySetting("runner", "q=s3://127.0.0.1:9/meta/experiments/"),
          "q1",
          "local",
        ),
      },
    );
    expect(allowed).toBeDefined();
  });

  test("an http serverUrl with a password is never shown in full", () => {
    const { record } = build({ type: "http", serverUrl: "https://user:s3cret@api.example.com/studio" });
    expect(record!.where).toBe("https://api.example.com/studio (experiment k)");
  });
});
