// The storage interface every backend (file:, s3://, gs://, http GET) implements.

import type { Readable } from "node:stream";
import type { Credentials } from "../request/model.ts";
import type { GrowingFile } from "./growing-file.ts";
import type { StorageIdentity } from "./storage-identity.ts";

export type ObjectInfo = {
  sizeBytes: number;
  modifiedMs: number;
  /** Changes whenever the content changes (ETag, generation, or size+mtime). */
  version: string;
};

export interface ObjectStore {
  /** Metadata, or undefined when the object does not exist. */
  head(location: string): Promise<ObjectInfo | undefined>;
  /** A stream of the object's bytes (over one connection); NotFoundError when it does not exist. */
  get(location: string): Promise<Readable>;
  /** Store the stream's bytes; readers see the old object or the whole new one, never a part. */
  put(location: string, body: Readable): Promise<ObjectInfo>;
  delete(location: string): Promise<void>;
  /**
   * Optional, for stores that move large objects faster through a file than through a stream
   * (parallel ranges written at their offsets, parts sent from file slices): the object's bytes
   * into `path` (created or replaced), and a file's bytes as the object. Callers go through
   * file-transfer.ts, which falls back to get()/put() where a store has neither.
   */
  getFile?(location: string, path: string, options?: FileTransferOptions): Promise<void>;
  putFile?(location: string, path: string, options?: FileTransferOptions): Promise<ObjectInfo>;
  /**
   * Optional, for stores that send parts side by side: bytes whose size is known before the
   * first is sent and any range of which can be read again (a tar laid out over its files, see
   * archive/tar-layout.ts), as the object. The upload uses no local copy at all.
   */
  putSource?(
    location: string,
    source: UploadSource,
    options?: Pick<FileTransferOptions, "onBytes">,
  ): Promise<ObjectInfo>;
}

/** Bytes of a known size, any range of which is a request body the runtime can send (again). */
export type UploadSource = {
  sizeBytes: number;
  /** The bytes [start, end): a Blob the runtime reads itself (a file's slice), or a stream of them. */
  body(start: number, end: number): Blob | ReadableStream<Uint8Array>;
  /** Called before the object is made: throws when the bytes can no longer be what was laid out. */
  check?(): void;
};

export type FileTransferOptions = {
  /** What head() said of the object just before (getFile). */
  known?: ObjectInfo;
  /** Hears about the bytes moved as they go (progress lines, metrics). */
  onBytes?: (bytes: number) => void;
  /**
   * getFile: told how much of the file's start is written, so a reader can follow the download
   * (the caller says when it is whole). putFile: the file is still being written; parts are sent
   * as they become whole, and the object is complete once the file is.
   */
  growing?: GrowingFile;
};

export type StoreOptions = {
  /** The request's own credentials: when given, the only ones used (never the runner's, not even after a refusal). */
  credentials?: Credentials;
  endpoint?: string;
  /**
   * Without `credentials`: whether the runner's own identity may serve the object. Absent means
   * the runner itself is the caller (submit, tools); a request's storage always passes one.
   */
  identity?: StorageIdentity;
  /** The request field that named the location, for refusals ("experiment.artifacts.workspace.qualified"). */
  field?: string;
};

/**
 * Reads a body that will not be sent (the put was refused before a byte was read) to its end:
 * a producer left half-way (a directory being packed) would otherwise fail later with nobody
 * listening, once its files are gone.
 */
export async function discard(body: Readable): Promise<void> {
  try {
    for await (const _ of body);
  } catch {
    // its fault is not the one being reported
  }
}
