// Isolation boundary "locations" (issue #14 holes 4, 9 and the unverified artifact hash of 12;
// attack class 17): where a request may make the runner read or write. From the compiled binary,
// each hostile request is refused with a reason naming the field, and the host is checked: the
// runner's environment canary absent from the cache, storage, working dir and failed place;
// nothing written outside the storage roots; the private server never asked; nothing cached of an
// artifact whose hash does not match.
//
// Not from the binary: a redirect from a PUBLIC address to a private one with
// --allow-private-endpoints off. No public address is reachable here (the binary's first hop would
// itself be private), so test/conformance/http-store.test.ts drives the store's real code path with
// a classification in which one loopback address plays a public one.

import { describe, expect, test } from "bun:test";
import { lookup } from "node:dns/promises";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { classifyHost } from "../../../src/request/location-policy.ts";
import {
  enqueue,
  filesIn,
  makeSandbox,
  RunnerProcess,
  sha256File,
  simpleExperiment,
  type Sandbox,
} from "../../helpers/e2e.ts";

const SCRIPT = "open('ran.txt', 'w').write('ran')\nprint('the script ran', flush=True)\n";
const BUCKET = "studioml-artifacts";

/** Every regular file under `dir` (symlinks not followed), for scanning what the runner wrote. */
function allFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Files under `dir` holding `needle` (text or bytes). */
const filesHolding = (dir: string, needle: string | Buffer) =>
  allFiles(dir).filter((f) => readFileSync(f).includes(needle));

/** A runner serving exactly `queue` until it is idle, with these flags and environment. */
async function serve(
  sb: Sandbox,
  queue: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<RunnerProcess> {
  const runner = new RunnerProcess(sb, ["--queue-match", `^${queue}$`, "--limit-idle-duration", "3s", ...args], env);
  expect(await runner.exited).toBe(0);
  return runner;
}

const reasonOf = (sb: Sandbox, queue: string, id: string): string => {
  const file = join(sb.queueRoot, ".failed", queue, `${id}.reason.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")).summary as string) : "(not in the failed place)";
};

/** A fixture request on file storage with no database, edited. */
const request = (sb: Sandbox, edit: (m: Record<string, any>) => void) =>
  simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
    delete m.config.database;
    edit(m);
  });

const storagePath = (sb: Sandbox, ...parts: string[]) => join(sb.storageRoot, BUCKET, ...parts);

describe("isolation: locations", () => {
  test("file:///proc/self/environ and symlinks out of the storage root are refused; the runner's environment reaches no file", async () => {
    const sb = await makeSandbox("iso-locations-proc");
    const canary = `canary-${crypto.randomUUID()}`;
    const outside = join(sb.dir, "outside");
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, "secret.tar"), `outside secret ${canary}`);
    mkdirSync(storagePath(sb, "data"), { recursive: true });
    symlinkSync(join(outside, "secret.tar"), storagePath(sb, "data", "link.tar"));
    symlinkSync("/proc/self/environ", storagePath(sb, "data", "environ.tar"));

    const proc = request(
      sb,
      (m) => (m.experiment.artifacts.data = { qualified: "file:///proc/self/environ", mutable: false, unpack: false }),
    );
    const clientForm = request(
      sb,
      (m) => (m.experiment.artifacts.data = { qualified: "file://proc/self/environ", mutable: false, unpack: false }),
    );
    const linkOut = request(
      sb,
      (m) =>
        (m.experiment.artifacts.data = {
          qualified: `file://${storagePath(sb, "data", "link.tar")}`,
          mutable: false,
          unpack: false,
        }),
    );
    const linkProc = request(
      sb,
      (m) =>
        (m.experiment.artifacts.data = {
          qualified: `file://${storagePath(sb, "data", "environ.tar")}`,
          mutable: false,
          unpack: false,
        }),
    );
    const queue = "local_iso_loc_proc";
    const ids = [proc, clientForm, linkOut, linkProc].map((r) => enqueue(sb.queueRoot, queue, r.message));
    // The default policy of a local queue: the runner's own storage root (STUDIO_STORAGE), no --file-storage-roots.
    const runner = await serve(sb, queue, [], {
      STUDIO_STORAGE: `file://${sb.storageRoot}`,
      FILE_STORAGE_ROOTS: "",
      STUDIO_LOC_CANARY: canary,
    });
    expect(runner.stderr).toContain(`file: locations of requests from local queues may be under ${sb.storageRoot}`);

    // An operator root of "/" still never reaches /proc, directly or through a link.
    const queueRoot = "local_iso_loc_proc_root";
    const everywhere = [proc, linkProc].map((r) =>
      enqueue(sb.queueRoot, queueRoot, { ...r.message, experiment: { ...r.message.experiment, key: `${r.key}-root` } }),
    );
    await serve(sb, queueRoot, ["--file-storage-roots", "/"], { STUDIO_LOC_CANARY: canary });

    const reasons = ids.map((id) => reasonOf(sb, queue, id));
    expect(reasons[0]).toContain("experiment.artifacts.data.qualified");
    expect(reasons[0]).toMatch(/\/proc, \/sys, \/dev|outside the directories/);
    expect(reasons[1]).toContain("experiment.artifacts.data.qualified");
    expect(reasons[2]).toMatch(
      /^experiment\.artifacts\.data\.qualified: .* resolves \(symlinks followed\) to .*outside/,
    );
    expect(reasons[3]).toMatch(/\/proc/);
    for (const id of everywhere) expect(reasonOf(sb, queueRoot, id)).toMatch(/\/proc/);
    // Nothing lost: every request is in the failed place, none left in the queue.
    expect(filesIn(join(sb.queueRoot, queue))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, queueRoot))).toEqual([]);
    // On the host: the canary (the runner's environment, the outside file) is in no file the runner wrote.
    for (const dir of [
      sb.cacheDir,
      sb.workDir,
      join(sb.queueRoot, ".failed"),
      join(sb.storageRoot, BUCKET, "experiments"),
    ]) {
      expect(filesHolding(dir, canary)).toEqual([]);
    }
    expect(filesHolding(storagePath(sb, "experiments"), "the script ran")).toEqual([]);
  }, 180_000);

  test("mutable file: outside the roots, through a directory link, and a local database outside: nothing is written there", async () => {
    const sb = await makeSandbox("iso-locations-write");
    const outside = join(sb.dir, "outside");
    mkdirSync(outside, { recursive: true });
    mkdirSync(storagePath(sb), { recursive: true });
    symlinkSync(outside, storagePath(sb, "linkdir"));
    const beforeOutside = () => allFiles(outside);

    const mutableOut = request(
      sb,
      (m) => (m.experiment.artifacts.modeldir.qualified = `file://${outside}/modeldir.tar`),
    );
    const mutableLink = request(
      sb,
      (m) => (m.experiment.artifacts.modeldir.qualified = `file://${storagePath(sb, "linkdir", "modeldir.tar")}`),
    );
    const outputLink = request(
      sb,
      (m) => (m.experiment.artifacts.output.qualified = `file://${storagePath(sb, "linkdir", "output.tar")}`),
    );
    const database = request(sb, (m) => (m.config.database = { type: "local", endpoint: outside, bucket: "meta" }));
    const databaseDotDot = request(
      sb,
      (m) => (m.config.database = { type: "local", endpoint: sb.storageRoot, bucket: "../outside" }),
    );
    const queue = "local_iso_loc_write";
    const all = [mutableOut, mutableLink, outputLink, database, databaseDotDot];
    const ids = all.map((r) => enqueue(sb.queueRoot, queue, r.message));
    await serve(sb, queue, ["--file-storage-roots", sb.storageRoot]);

    const reasons = ids.map((id) => reasonOf(sb, queue, id));
    expect(reasons[0]).toContain("experiment.artifacts.modeldir.qualified");
    expect(reasons[0]).toContain("outside the directories");
    expect(reasons[1]).toMatch(/modeldir.*resolves \(symlinks followed\) to .*outside/s);
    expect(reasons[2]).toMatch(/resolves \(symlinks followed\)|goes through a symlink/);
    expect(reasons[3]).toContain("config.database.endpoint");
    expect(reasons[4]).toContain("config.database.bucket");
    expect(filesIn(join(sb.queueRoot, queue))).toEqual([]);
    // On the host: nothing at all was written outside the root, and no script ran.
    expect(beforeOutside()).toEqual([]);
    expect(allFiles(outside)).toEqual([]);
    expect(existsSync(join(outside, "meta"))).toBe(false);
    expect(filesHolding(storagePath(sb, "experiments"), "the script ran")).toEqual([]);
  }, 180_000);

  test("http(s): a name resolving to loopback is refused without --allow-private-endpoints; a redirect to metadata is refused on its hop", async () => {
    const sb = await makeSandbox("iso-locations-http");
    const hits: string[] = [];
    const server = Bun.serve({
      hostname: "0.0.0.0",
      port: 0,
      fetch(req) {
        const path = new URL(req.url).pathname;
        hits.push(path);
        if (path === "/to-metadata")
          return new Response(null, {
            status: 302,
            headers: { location: "http://169.254.169.254/latest/meta-data/iam/security-credentials/" },
          });
        if (path === "/to-link-local")
          return new Response(null, { status: 307, headers: { location: "http://[fe80::1]/x" } });
        return new Response("internal data", { headers: { etag: '"d"' } });
      },
    });
    try {
      // A DNS name (not an IP literal, not "localhost") that resolves to this machine: the check must resolve it.
      const name = hostname();
      const resolved = await lookup(name).then(
        (r) => r.address,
        () => undefined,
      );
      const viaName = resolved && classifyHost(resolved) !== "public" ? name : "localhost";
      const byName = request(
        sb,
        (m) =>
          (m.experiment.artifacts.data = {
            qualified: `http://${viaName}:${server.port}/data.bin`,
            mutable: false,
            unpack: false,
          }),
      );
      const byAddress = request(
        sb,
        (m) =>
          (m.experiment.artifacts.data = {
            qualified: `http://127.0.0.1:${server.port}/data.bin`,
            mutable: false,
            unpack: false,
          }),
      );
      const strictQueue = "local_iso_loc_http_strict";
      const strictIds = [byName, byAddress].map((r) => enqueue(sb.queueRoot, strictQueue, r.message));
      await serve(sb, strictQueue, ["--allow-private-endpoints=false"]);
      expect(reasonOf(sb, strictQueue, strictIds[0]!)).toMatch(
        viaName === "localhost"
          ? /loopback/
          : new RegExp(`${viaName}, which resolves to ${resolved!.replace(/\./g, "\\.")}`),
      );
      expect(reasonOf(sb, strictQueue, strictIds[1]!)).toContain("--allow-private-endpoints");
      expect(hits).toEqual([]); // refused before any connection

      // With loopback allowed (the operator's test server), every redirect is still checked.
      const toMetadata = request(
        sb,
        (m) =>
          (m.experiment.artifacts.data = {
            qualified: `http://127.0.0.1:${server.port}/to-metadata`,
            mutable: false,
            unpack: false,
          }),
      );
      const toLinkLocal = request(
        sb,
        (m) =>
          (m.experiment.artifacts.data = {
            qualified: `http://127.0.0.1:${server.port}/to-link-local`,
            mutable: false,
            unpack: false,
          }),
      );
      const openQueue = "local_iso_loc_http_open";
      const openIds = [toMetadata, toLinkLocal].map((r) => enqueue(sb.queueRoot, openQueue, r.message));
      await serve(sb, openQueue, ["--allow-private-endpoints"]);
      for (const id of openIds) {
        const reason = reasonOf(sb, openQueue, id);
        expect(reason).toContain("experiment.artifacts.data.qualified (redirect 1");
        expect(reason).toMatch(/metadata|link-local/);
      }
      expect(hits.sort()).toEqual(["/to-link-local", "/to-metadata"]);
      expect(filesHolding(sb.cacheDir, "internal data")).toEqual([]);
      expect(filesIn(join(sb.queueRoot, openQueue))).toEqual([]);
    } finally {
      server.stop(true);
    }
  }, 180_000);

  test("an artifact whose content does not match its hash is refused and not cached; the right hash runs", async () => {
    const sb = await makeSandbox("iso-locations-hash");
    const marker = `poisoned-${crypto.randomUUID()}`;
    mkdirSync(storagePath(sb, "data"), { recursive: true });
    writeFileSync(storagePath(sb, "data", "blob.bin"), `payload ${marker}\n`);
    const right = sha256File(storagePath(sb, "data", "blob.bin"));
    const wrong = "0".repeat(64);
    const data = (hash: string) => (m: Record<string, any>) =>
      (m.experiment.artifacts.data = {
        qualified: `file://${storagePath(sb, "data", "blob.bin")}`,
        mutable: false,
        unpack: false,
        hash,
      });
    const bad = request(sb, data(wrong));
    const queue = "local_iso_loc_hash";
    const badId = enqueue(sb.queueRoot, queue, bad.message);
    await serve(sb, queue, ["--file-storage-roots", sb.storageRoot]);
    const reason = reasonOf(sb, queue, badId);
    expect(reason).toContain("does not match its hash");
    expect(reason).toContain(right);
    expect(reason).toContain(wrong);
    expect(filesHolding(sb.cacheDir, marker)).toEqual([]);
    expect(filesHolding(storagePath(sb, "experiments"), "the script ran")).toEqual([]);

    const good = request(sb, data(`sha256:${right.toUpperCase()}`));
    const goodId = enqueue(sb.queueRoot, queue, good.message);
    await serve(sb, queue, ["--file-storage-roots", sb.storageRoot]);
    expect(reasonOf(sb, queue, goodId)).toBe("(not in the failed place)");
    expect(statSync(join(good.experimentDir, "output.tar")).size).toBeGreaterThan(0);
    expect(readFileSync(join(good.experimentDir, "output.tar")).includes("the script ran")).toBe(true);
    expect(filesHolding(join(sb.cacheDir, "artifacts"), marker).length).toBe(1);
    expect(filesIn(join(sb.queueRoot, queue))).toEqual([]);
  }, 300_000);
});
