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

export async function follow(opts: {
  queueRoot: string;
  queue: string;
  id: string;
  store: ObjectStore;
  outputLocation: string;
  resultsLocation?: string;
  timeoutMs: number;
  onState?: (state: string) => void;
}): Promise<FollowResult> {
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : Infinity;
  while (await stillQueued(opts.queueRoot, opts.queue, opts.id)) {
    if (Date.now() > deadline) return { state: "timeout" };
    await Bun.sleep(250);
  }
  const log = await firstMember(opts.store, opts.outputLocation).catch(() => undefined);
  const failedReason = join(opts.queueRoot, ".failed", opts.queue, `${opts.id}.reason.json`);
  if (existsSync(failedReason)) {
    const doc = JSON.parse(await readFile(failedReason, "utf8"));
    return { state: "failed", reason: doc.summary ?? "failed", log };
  }
  let exitMsg: string | undefined;
  if (opts.resultsLocation) {
    const results = await firstMember(opts.store, opts.resultsLocation, "_results.json").catch(() => undefined);
    if (results) exitMsg = JSON.parse(results).exit_msg;
  }
  return { state: "finished", log: log ?? "", exitMsg };
}
