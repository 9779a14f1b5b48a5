// Fetches each artifact into its label's directory (immutable ones through the cache) and uploads
// mutable ones back when they changed.

import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { fingerprintDirectory, packDirectory } from "../archive/pack.ts";
import { unpackArchive } from "../archive/unpack.ts";
import { formatBytes } from "../config/units.ts";
import { NotFoundError, PermanentError } from "../errors.ts";
import type { Artifact, Request } from "../request/model.ts";
import type { ArtifactCache } from "../storage/artifact-cache.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { storeFor } from "../storage/stores.ts";

export function storeOf(artifact: Artifact, request: Request): ObjectStore {
  return storeFor(artifact.qualified, {
    credentials: artifact.credentials?.aws ? artifact.credentials : request.config.storageCredentials,
    endpoint: request.config.storageEndpoint,
  }, `experiment.artifacts.${artifact.label}.qualified`);
}

export type FetchResult = { label: string; files: number; bytes: number; cached: boolean; existed: boolean };

export async function fetchArtifact(
  artifact: Artifact,
  dir: string,
  request: Request,
  options: { cache: ArtifactCache; budgetBytes?: number },
): Promise<FetchResult> {
  await mkdir(dir, { recursive: true });
  const store = storeOf(artifact, request);
  const info = await store.head(artifact.qualified);
  if (!info) {
    if (artifact.mutable) return { label: artifact.label, files: 0, bytes: 0, cached: false, existed: false };
    throw new PermanentError(`immutable artifact "${artifact.label}" is missing: ${artifact.qualified} does not exist`, { phase: "fetch" });
  }
  if (options.budgetBytes && info.sizeBytes > options.budgetBytes) {
    throw new PermanentError(`artifact "${artifact.label}" is ${formatBytes(info.sizeBytes)}, over the experiment's disk budget of ${formatBytes(options.budgetBytes)}`);
  }
  const singleFileName = basename(artifact.key ?? artifact.qualified);
  const unpackOptions = { budgetBytes: options.budgetBytes, singleFileName };
  let cached = false;
  let source;
  if (!artifact.mutable) {
    const local = await options.cache.fetch(store, artifact.qualified, info.version);
    cached = local.hit;
    source = createReadStream(local.path);
  } else {
    try {
      source = await store.get(artifact.qualified);
    } catch (err) {
      if (err instanceof NotFoundError) return { label: artifact.label, files: 0, bytes: 0, cached: false, existed: false };
      throw err;
    }
  }
  if (!artifact.unpack) {
    // Kept as the object is, compressed or not, under the key's file name.
    await pipeline(source, createWriteStream(join(dir, singleFileName)));
    return { label: artifact.label, files: 1, bytes: info.sizeBytes, cached, existed: true };
  }
  const result = await unpackArchive(source, dir, unpackOptions);
  return { label: artifact.label, files: result.files, bytes: result.bytes, cached, existed: true };
}

/** Uploads mutable artifacts whose directory changed since the last upload (or download). */
export class ArtifactUploader {
  private readonly last = new Map<string, string>();
  private readonly existed = new Map<string, boolean>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly request: Request,
    private readonly dirs: Record<string, string>,
  ) {}

  /** Remember the state right after fetching, so untouched artifacts are not uploaded. */
  async baseline(label: string, existed: boolean) {
    this.existed.set(label, existed);
    this.last.set(label, await fingerprintDirectory(this.dirs[label]!));
  }

  /** Upload changed artifacts (all labels, or those given); serialised so uploads never overlap. */
  upload(labels?: string[], options: { includeMissing?: boolean } = {}): Promise<string[]> {
    const run = this.queue.then(() => this.doUpload(labels, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doUpload(labels: string[] | undefined, options: { includeMissing?: boolean }): Promise<string[]> {
    const uploaded: string[] = [];
    const artifacts = Object.values(this.request.experiment.artifacts).filter(
      (a) => a.mutable && (!labels || labels.includes(a.label)) && this.dirs[a.label],
    );
    for (const artifact of artifacts) {
      const dir = this.dirs[artifact.label]!;
      const print = await fingerprintDirectory(dir);
      const neverStored = options.includeMissing && this.existed.get(artifact.label) === false;
      if (print === this.last.get(artifact.label) && !neverStored) continue;
      const key = artifact.key ?? artifact.qualified;
      const gzip = /\.(tar\.gz|tgz)$/i.test(key);
      await storeOf(artifact, this.request).put(artifact.qualified, packDirectory(dir, { gzip }));
      this.last.set(artifact.label, print);
      this.existed.set(artifact.label, true);
      uploaded.push(artifact.label);
    }
    return uploaded;
  }
}
