// Follows a request put on a local queue until it is done, then reads its log and result.

import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { extract } from "tar-stream";
import { decompress } from "../archive/compression.ts";
import type { ObjectStore } from "../storage/object-store.ts";

export type FollowResult =
  | { state: "finished"; log: string; exitMsg?: string }
  | { state: "failed"; reason: string; log?: string }
  | { state: "timeout" };

async function stillQueued(queueRoot: string, queue: string, id: string): Promise<boolean> {
  if (existsSync(join(queueRoot, queue, id))) return true;
  try {
    return (await readdir(join(queueRoot, ".inflight", queue))).some((n) => n.startsWith(`${id}@@`));
  } catch {
    return false;
  }
}

/** The first non-empty member of a tar object (how studioml reads output.tar), or undefined. */
export async function firstMember(store: ObjectStore, location: string, name?: string): Promise<string | undefined> {
  if (!(await store.head(location))) return undefined;
  const { stream } = await decompress(await store.get(location));
  const ex = extract();
  stream.pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    const member = entry.header.name.replace(/^(\.\/)+/, "");
    if (entry.header.type === "file" && chunks.length && (!name || member === name)) {
      ex.destroy();
      return Buffer.concat(chunks).toString("utf8");
    }
  }
  return undefined;
}

/** Where a request can be watched: the local queue's own places, or only storage (brokers). */
export type FollowPlace = { kind: "local"; queueRoot: string; queue: string; id: string } | { kind: "storage" };

/** The runner's last line for an experiment it gave up on (see task/attempt.ts). */
const GAVE_UP = /^\[studio-runner\] experiment failed[^\n]*$/m;

export async function follow(opts: {
  place: FollowPlace;
  store: ObjectStore;
  outputLocation: string;
  resultsLocation: string;
  timeoutMs: number;
}): Promise<FollowResult> {
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : Infinity;
  const place = opts.place;
  for (;;) {
    if (place.kind === "local" && !(await stillQueued(place.queueRoot, place.queue, place.id))) break;
    if (place.kind === "storage") {
      // _results is uploaded last, after every other artifact; a refused request leaves only its log.
      if (await opts.store.head(opts.resultsLocation).catch(() => undefined)) break;
      const log = (await opts.store.head(opts.outputLocation).catch(() => undefined))
        ? await firstMember(opts.store, opts.outputLocation).catch(() => undefined)
        : undefined;
      const gaveUp = log ? GAVE_UP.exec(log) : null;
      if (gaveUp) return { state: "failed", reason: gaveUp[0].replace("[studio-runner] ", ""), log };
    }
    if (Date.now() > deadline) return { state: "timeout" };
    await Bun.sleep(place.kind === "local" ? 250 : 1000);
  }
  const log = await firstMember(opts.store, opts.outputLocation).catch(() => undefined);
  if (place.kind === "local") {
    const failedReason = join(place.queueRoot, ".failed", place.queue, `${place.id}.reason.json`);
    if (existsSync(failedReason)) {
      const doc = JSON.parse(await readFile(failedReason, "utf8"));
      return { state: "failed", reason: doc.summary ?? "failed", log };
    }
  }
  let exitMsg: string | undefined;
  const results = await firstMember(opts.store, opts.resultsLocation, "_results.json").catch(() => undefined);
  if (results) exitMsg = JSON.parse(results).exit_msg;
  return { state: "finished", log: log ?? "", exitMsg };
}
