// Fetches each artifact into its label's directory (immutable ones through the cache) and uploads
// mutable ones back when they changed; large transfers report their progress.

import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { type FileHandle, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Readable } from "node:stream";
import { directoryBytes, fingerprintDirectory, packOpenDirectory } from "../archive/pack.ts";
import type { SkippedEntry } from "../archive/walk.ts";
import { tryOpenDirectory } from "../fs/safe-open.ts";
import { layOutOpenDirectory } from "../archive/tar-layout.ts";
import { unpackArchive } from "../archive/unpack.ts";
import { formatBytes } from "../config/units.ts";
import { NotFoundError, PermanentError, RequestError } from "../errors.ts";
import type { Artifact, AwsCredentials, Credentials, Request } from "../request/model.ts";
import type { ArtifactCache } from "../storage/artifact-cache.ts";
import { expectedDigest, verifyingStream } from "../storage/content-digest.ts";
import { downloadToFile, uploadFromFile } from "../storage/file-transfer.ts";
import { GrowingFile, LOCAL_READ_BYTES, spoolInto } from "../storage/growing-file.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { REQUEST_IDENTITY_ONLY, type StorageIdentity } from "../storage/storage-identity.ts";
import { type Stores, storeFor } from "../storage/stores.ts";
import { progressMeter, type ProgressSink } from "./progress-meter.ts";
import { runWorkers } from "../storage/worker-pool.ts";
import { withUploadRetries } from "./upload-retry.ts";

/** How the runner lets a request reach its storage. */
export type StorageAccess = {
  /** --allow-env-secrets: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in config.env may sign storage requests. */
  allowEnvSecrets?: boolean;
  /** The runner's environment, for %NAME% references in config.env. */
  runnerEnv?: Record<string, string | undefined>;
  /** Whether the runner's own identity may serve an artifact without credentials (default: never). */
  identity?: StorageIdentity;
  /** The runner's stores (its GCS clients); absent: the default configuration's. */
  stores?: Stores;
};

/** AWS credentials spelled in config.env (values may be %NAME% references to the runner's variables). */
function credentialsFromConfigEnv(
  env: Record<string, string>,
  runnerEnv: Record<string, string | undefined>,
): AwsCredentials | undefined {
  const value = (name: string) => {
    const raw = env[name];
    if (raw === undefined) return undefined;
    const expanded = raw.replace(/%([A-Za-z_][A-Za-z0-9_]*)%/g, (_all, ref: string) => runnerEnv[ref] ?? "");
    return expanded || undefined;
  };
  const accessKey = value("AWS_ACCESS_KEY_ID");
  const secretAccessKey = value("AWS_SECRET_ACCESS_KEY");
  if (!accessKey || !secretAccessKey) return undefined;
  return {
    accessKey,
    secretAccessKey,
    sessionToken: value("AWS_SESSION_TOKEN"),
    region: value("AWS_REGION") ?? value("AWS_DEFAULT_REGION"),
  };
}

/**
 * Credentials for an artifact: its own, else config.storage.credentials, else (only with
 * --allow-env-secrets) those in config.env. Undefined means none: the runner's own identity serves
 * the artifact only where `access.identity` allows it (storage-identity.ts).
 */
export function credentialsFor(
  artifact: Artifact,
  request: Request,
  access: StorageAccess = {},
): Credentials | undefined {
  if (artifact.credentials?.aws) return artifact.credentials;
  if (request.config.storageCredentials?.aws) return request.config.storageCredentials;
  if (access.allowEnvSecrets) {
    const aws = credentialsFromConfigEnv(request.config.env, access.runnerEnv ?? {});
    if (aws) return { aws };
  }
  return undefined;
}

export function storeOf(artifact: Artifact, request: Request, access: StorageAccess = {}): ObjectStore {
  const pick = access.stores ? access.stores.for.bind(access.stores) : storeFor;
  return pick(
    artifact.qualified,
    {
      credentials: credentialsFor(artifact, request, access),
      endpoint: request.config.storageEndpoint,
      identity: access.identity ?? REQUEST_IDENTITY_ONLY,
    },
    `experiment.artifacts.${artifact.label}.qualified`,
  );
}

/**
 * The sha256 an artifact's bytes must have (its `hash`), with the error a mismatch becomes; none
 * when it gives no hash or one that is not about its content (noted in the experiment's log).
 */
function digestCheck(
  artifact: Artifact,
  progress?: ProgressSink,
): { sha256: string; mismatch: (actualHex: string) => Error } | undefined {
  if (artifact.hash === undefined || artifact.hash === "") return undefined;
  const field = `experiment.artifacts.${artifact.label}.hash`;
  const expected = expectedDigest(field, artifact.hash, artifact.qualified);
  if (!expected.verify) {
    progress?.(`artifact ${artifact.label}: its hash is not checked: ${expected.reason}`);
    return undefined;
  }
  return {
    sha256: expected.sha256,
    mismatch: (actual) =>
      new PermanentError(
        `artifact "${artifact.label}" (${artifact.qualified}) does not match its hash: ` +
          `its content's sha256 is ${actual}, ${field} is ${expected.sha256}; nothing of it is used or cached`,
        { field, phase: "fetch" },
      ),
  };
}

/** bytes: unpacked size; transferredBytes: what came from storage (0 on a cache hit). */
export type FetchResult = {
  label: string;
  files: number;
  bytes: number;
  cached: boolean;
  existed: boolean;
  transferredBytes: number;
};

/**
 * A store's refusal names the location's field generically ("qualified": the file store and the
 * http store know no labels): name the artifact's own field instead.
 */
function namingArtifact<T>(artifact: Artifact, work: Promise<T>): Promise<T> {
  return work.catch((err: unknown) => {
    const generic = err instanceof RequestError ? err.context.field : undefined;
    if (generic === "qualified" || generic?.startsWith("qualified (")) {
      const field = `experiment.artifacts.${artifact.label}.qualified`;
      (err as RequestError).message = field + (err as RequestError).message.slice("qualified".length);
      (err as RequestError).context.field = field + generic.slice("qualified".length);
    }
    throw err;
  });
}

export function fetchArtifact(
  artifact: Artifact,
  dir: string,
  request: Request,
  options: StorageAccess & { cache: ArtifactCache; budgetBytes?: number; progress?: ProgressSink },
): Promise<FetchResult> {
  return namingArtifact(artifact, fetchArtifactInto(artifact, dir, request, options));
}

async function fetchArtifactInto(
  artifact: Artifact,
  dir: string,
  request: Request,
  options: StorageAccess & { cache: ArtifactCache; budgetBytes?: number; progress?: ProgressSink },
): Promise<FetchResult> {
  await mkdir(dir, { recursive: true });
  const digest = digestCheck(artifact, options.progress);
  const store = storeOf(artifact, request, options);
  const info = await store.head(artifact.qualified);
  if (!info) {
    if (artifact.mutable)
      return { label: artifact.label, files: 0, bytes: 0, cached: false, existed: false, transferredBytes: 0 };
    throw new PermanentError(
      `immutable artifact "${artifact.label}" is missing: ${artifact.qualified} does not exist`,
      { phase: "fetch" },
    );
  }
  if (options.budgetBytes && info.sizeBytes > options.budgetBytes) {
    throw new PermanentError(
      `artifact "${artifact.label}" is ${formatBytes(info.sizeBytes)}, ` +
        `over the experiment's disk budget of ${formatBytes(options.budgetBytes)}`,
    );
  }
  const singleFileName = basename(artifact.key ?? artifact.qualified);
  const unpackOptions = { budgetBytes: options.budgetBytes, singleFileName };
  const meter = progressMeter(
    `downloading ${artifact.label} (${artifact.qualified})`,
    info.sizeBytes,
    options.progress,
  );
  let cached = false;
  let source: Readable;
  let downloadFault = (): unknown => undefined;
  let scratch: string | undefined;
  if (!artifact.mutable) {
    // Immutable artifacts go through the cache: downloaded into it once, unpacked from the copy.
    const local = await options.cache.read(store, artifact.qualified, info.version, {
      onBytes: meter.add,
      ...digest,
      known: info,
    });
    cached = local.hit;
    source = local.stream;
    downloadFault = local.failure;
  } else {
    // Mutable ones (checkpoints of an earlier attempt) into a scratch file next to the cache.
    scratch = await options.cache.scratchPath();
    try {
      await downloadToFile(store, artifact.qualified, scratch, { known: info, onBytes: meter.add });
    } catch (err) {
      await rm(scratch, { force: true });
      if (err instanceof NotFoundError)
        return { label: artifact.label, files: 0, bytes: 0, cached: false, existed: false, transferredBytes: 0 };
      throw err;
    }
    source = createReadStream(scratch, { highWaterMark: LOCAL_READ_BYTES });
    if (digest) {
      let mismatch: Error | undefined;
      source = verifyingStream(source, digest.sha256, (actual) => (mismatch = digest.mismatch(actual)));
      downloadFault = () => mismatch;
    }
  }
  const fetched = (files: number, bytes: number): FetchResult => {
    meter.finished(); // the reader got to the end: so did the download
    return {
      label: artifact.label,
      files,
      bytes,
      cached,
      existed: true,
      transferredBytes: cached ? 0 : info.sizeBytes,
    };
  };
  try {
    if (!artifact.unpack) {
      // Kept as the object is, compressed or not, under the key's file name.
      await pipeline(source, createWriteStream(join(dir, singleFileName)));
      return fetched(1, info.sizeBytes);
    }
    const result = await unpackArchive(source, dir, unpackOptions);
    return fetched(result.files, result.bytes);
  } catch (err) {
    source.destroy();
    // A download that broke, or a copy that no longer matches its hash, is the storage's fault
    // (retryable), not the archive's.
    throw downloadFault() ?? err;
  } finally {
    if (scratch) await rm(scratch, { force: true });
  }
}

/**
 * A container image from storage (the `_singularity` artifact): downloaded once into the
 * immutable-artifact cache, keyed by the object's version, and used from there without a copy.
 */
export function fetchImageFile(
  artifact: Artifact,
  request: Request,
  options: StorageAccess & { cache: ArtifactCache; progress?: ProgressSink },
): Promise<{ path: string; cached: boolean; bytes: number }> {
  return namingArtifact(artifact, fetchImageInto(artifact, request, options));
}

async function fetchImageInto(
  artifact: Artifact,
  request: Request,
  options: StorageAccess & { cache: ArtifactCache; progress?: ProgressSink },
): Promise<{ path: string; cached: boolean; bytes: number }> {
  const digest = digestCheck(artifact, options.progress);
  const store = storeOf(artifact, request, options);
  const info = await store.head(artifact.qualified);
  if (!info)
    throw new PermanentError(`container image "${artifact.label}" is missing: ${artifact.qualified} does not exist`, {
      phase: "fetch",
    });
  const meter = progressMeter(
    `downloading ${artifact.label} (${artifact.qualified})`,
    info.sizeBytes,
    options.progress,
  );
  const local = await options.cache.fetch(store, artifact.qualified, info.version, {
    onBytes: meter.add,
    ...digest,
    known: info,
  });
  meter.finished();
  return { path: local.path, cached: local.hit, bytes: info.sizeBytes };
}

/** How many left-out names one note lists before it only counts the rest. */
const SKIPPED_NAMES_SHOWN = 10;
/** Artifacts packed and sent at once (each large one has its own parts in flight too). */
const ARTIFACT_UPLOADS_AT_ONCE = 4;

export type UploadOptions = {
  /** Also artifacts never stored before, even if unchanged since the fetch. */
  includeMissing?: boolean;
  /** The job has exited and nothing of it runs: its files hold still (see upload()). */
  jobGone?: boolean;
};

/** A note about entries left out of an artifact's tar (names quoted, never a link's target or content). */
function skippedNote(label: string, skipped: SkippedEntry[]): string {
  const shown = skipped.slice(0, SKIPPED_NAMES_SHOWN).map((s) => `${JSON.stringify(s.rel)}: ${s.why}`);
  const more = skipped.length > SKIPPED_NAMES_SHOWN ? `; and ${skipped.length - SKIPPED_NAMES_SHOWN} more` : "";
  return (
    `artifact ${label}: ${skipped.length} entr${skipped.length === 1 ? "y" : "ies"} not stored as they were: ` +
    `${shown.join("; ")}${more}`
  );
}

/**
 * Uploads mutable artifacts whose directory changed since the last upload (or download). The
 * directories are the job's: they are packed relative to their descriptors, never following a
 * link (src/archive/walk.ts); an artifact whose directory is itself a link is not uploaded.
 */
export class ArtifactUploader {
  private readonly last = new Map<string, string>();
  private readonly existed = new Map<string, boolean>();
  private queue: Promise<unknown> = Promise.resolve();
  private spoolDir?: Promise<string>;

  constructor(
    private readonly request: Request,
    private readonly dirs: Record<string, string>,
    private readonly options: StorageAccess & {
      progress?: ProgressSink;
      beforeUpload?: () => Promise<void>;
      onUploaded?: (label: string, bytes: number) => void;
      /** Hears about each retried upload (besides the experiment's log, where `progress` puts it). */
      onRetry?: (message: string) => void;
      /** Hears about artifacts not uploaded and entries left out (links, FIFOs, swaps), besides `progress`. */
      onSkipped?: (message: string) => void;
      /** A path of the runner's own for a packed artifact before it is sent (default: a private temp dir). */
      spoolPath?: () => Promise<string>;
    } = {},
  ) {}

  private async spoolPath(): Promise<string> {
    if (this.options.spoolPath) return this.options.spoolPath();
    this.spoolDir ??= mkdtemp(join(tmpdir(), "studio-runner-spool-"));
    return join(await this.spoolDir, `${crypto.randomUUID()}.tar`);
  }

  /** Remember the state right after fetching, so untouched artifacts are not uploaded. */
  async baseline(label: string, existed: boolean) {
    this.existed.set(label, existed);
    this.last.set(label, await fingerprintDirectory(this.dirs[label]!));
  }

  /**
   * Upload changed artifacts (all labels, or those given); serialised so uploads never overlap.
   * `jobGone`: the job has exited and nothing of it runs any more, so its files hold still: a
   * store that sends parts side by side then gets the tar laid out over the files (no spool).
   */
  upload(labels?: string[], options: UploadOptions = {}): Promise<string[]> {
    const run = this.queue.then(() => this.doUpload(labels, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private note(message: string) {
    this.options.progress?.(message);
    this.options.onSkipped?.(message);
  }

  private async doUpload(labels: string[] | undefined, options: UploadOptions): Promise<string[]> {
    const uploaded: string[] = [];
    const artifacts = Object.values(this.request.experiment.artifacts).filter(
      (a) => a.mutable && (!labels || labels.includes(a.label)) && this.dirs[a.label],
    );
    const changed: Array<{ artifact: (typeof artifacts)[number]; print: string }> = [];
    for (const artifact of artifacts) {
      const print = await fingerprintDirectory(this.dirs[artifact.label]!);
      const neverStored = options.includeMissing && this.existed.get(artifact.label) === false;
      if (print !== this.last.get(artifact.label) || neverStored) changed.push({ artifact, print });
    }
    // Nothing to send: no need to ask storage whether this attempt is still the current one.
    if (!changed.length) return uploaded;
    await this.options.beforeUpload?.();
    // A few artifacts at a time (the small ones need not wait behind a large one); a spool file
    // is removed while the next artifacts go, and all are gone before this returns.
    const removals: Array<Promise<unknown>> = [];
    const done = new Set<string>();
    let next = 0;
    try {
      await runWorkers(Math.min(ARTIFACT_UPLOADS_AT_ONCE, changed.length), async () => {
        const item = changed[next++];
        if (!item) return false;
        if (await this.uploadOne(item.artifact, item.print, removals, options.jobGone ?? false))
          done.add(item.artifact.label);
        return true;
      });
    } finally {
      await Promise.all(removals);
    }
    // In the order the artifacts were listed, whatever order they finished in.
    for (const { artifact } of changed) if (done.has(artifact.label)) uploaded.push(artifact.label);
    return uploaded;
  }

  /**
   * The tar laid out over the directory's files and sent from them (archive/tar-layout.ts);
   * undefined when a layout is not worth it (many small files), the directory then still open.
   */
  private async sendLaidOut(
    putSource: NonNullable<ObjectStore["putSource"]>,
    location: string,
    dir: FileHandle,
    onBytes: (bytes: number) => void,
  ): Promise<{ sizeBytes: number; skipped: SkippedEntry[] } | undefined> {
    let layout;
    try {
      layout = await layOutOpenDirectory(dir);
    } catch (err) {
      await dir.close();
      throw err;
    }
    if (!layout) return undefined;
    try {
      await putSource(location, layout.source, { onBytes });
      return { sizeBytes: layout.source.sizeBytes, skipped: layout.skipped };
    } finally {
      await layout.close();
      await dir.close();
    }
  }

  /** Packs and sends one changed artifact; false when its directory was not there to send. */
  private async uploadOne(
    artifact: Artifact,
    print: string,
    removals: Array<Promise<unknown>>,
    jobGone: boolean,
  ): Promise<boolean> {
    const dir = this.dirs[artifact.label]!;
    const key = artifact.key ?? artifact.qualified;
    const gzip = /\.(tar\.gz|tgz)$/i.test(key);
    const expectedBytes = this.options.progress ? await directoryBytes(dir) : 0;
    let sentBytes = 0;
    let refused: string | undefined;
    let skipped: SkippedEntry[] = [];
    let layOut = jobGone;
    // A transient storage fault packs and sends the whole artifact again, after a back-off.
    await withUploadRetries(
      `upload of ${artifact.label} to ${artifact.qualified}`,
      async () => {
        // The directory is opened once, without following a link: what is packed is what was opened.
        const opened = await tryOpenDirectory(dir);
        if ("not" in opened) {
          refused = opened.not;
          return;
        }
        skipped = [];
        const store = storeOf(artifact, this.request, this.options);
        // The tar's size is known only once it is packed: the files' total stands in for it.
        const meter = progressMeter(
          `uploading ${artifact.label} (${artifact.qualified})`,
          gzip ? undefined : expectedBytes,
          this.options.progress,
        );
        if (layOut && store.putSource && !gzip) {
          layOut = false; // should this try fail, the next one packs the ordinary way
          const laidOut = await this.sendLaidOut(
            store.putSource.bind(store),
            artifact.qualified,
            opened.dir,
            meter.add,
          );
          if (laidOut) {
            skipped = laidOut.skipped;
            sentBytes = laidOut.sizeBytes;
            meter.finished();
            return;
          }
        }
        // Packed into a file of the runner's own (the job cannot reach it) while the parts already
        // whole are sent from it: in parallel, straight from disk, and a retried part is read again.
        const spool = await this.spoolPath();
        const growing = new GrowingFile();
        const packed = packOpenDirectory(opened.dir, { gzip, onSkipped: (s) => (skipped = s) });
        try {
          const packing = spoolInto(packed, spool, growing);
          packing.catch(() => undefined);
          await uploadFromFile(store, artifact.qualified, spool, {
            onBytes: meter.add,
            growing,
          }).catch((err) => {
            packed.destroy(); // nobody will send the rest
            throw err;
          });
          sentBytes = await packing;
          meter.finished();
        } finally {
          removals.push(rm(spool, { force: true }).catch(() => undefined));
        }
      },
      (message) => {
        this.options.progress?.(message);
        this.options.onRetry?.(message);
      },
    );
    this.last.set(artifact.label, print);
    if (refused) {
      // Never the link's target: the stored copy (if any) stays as it was.
      this.note(
        `artifact ${artifact.label}: its directory is ${refused === "missing" ? "missing" : refused}; ` +
          "not uploaded (links are never followed), the stored copy is left as it was",
      );
      return false;
    }
    if (skipped.length) this.note(skippedNote(artifact.label, skipped));
    this.options.onUploaded?.(artifact.label, sentBytes);
    this.existed.set(artifact.label, true);
    return true;
  }
}
