// Picks the object store for a location by its scheme. gs: stores use the default GCS clients
// until the daemon registers a factory with its own (gcsStoreFactory).

import { PermanentError, RequestError } from "../errors.ts";
import { FileStore } from "./file/file-store.ts";
import type { GcsClients } from "./gcs/gcs-clients.ts";
import { GcsStore } from "./gcs/gcs-store.ts";
import { HttpStore } from "./http/http-store.ts";
import type { ObjectStore, StoreOptions } from "./object-store.ts";
import { S3Store } from "./s3/s3-store.ts";

export type StoreFactory = (location: string, options: StoreOptions) => ObjectStore;

const fileStore = new FileStore();
const httpStore = new HttpStore();

/** gs: stores with the given clients: one store for the runner's own callers, one per identity policy. */
export function gcsStoreFactory(clients?: GcsClients): StoreFactory {
  const shared = new GcsStore(process.env, {}, clients);
  // The clients are pooled in GcsClients: a store per identity policy costs nothing.
  return (_location, options) => (options.identity ? new GcsStore(process.env, options, clients) : shared);
}

const factories: Record<string, StoreFactory> = {
  file: () => fileStore,
  http: () => httpStore,
  https: () => httpStore,
  s3: (_location, options) => new S3Store(options),
  gs: gcsStoreFactory(),
};

/** Backends not built into this version are recognised and refused with a clear reason. */
const NOT_YET = new Set<string>();

export function registerStore(scheme: string, factory: StoreFactory): void {
  factories[scheme] = factory;
  NOT_YET.delete(scheme);
}

export function schemeOf(location: string): string {
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(location);
  return match ? match[1]!.toLowerCase() : "";
}

export function storeFor(location: string, options: StoreOptions = {}, field = "qualified"): ObjectStore {
  const scheme = schemeOf(location);
  const factory = factories[scheme];
  if (factory) return factory(location, { ...options, field: options.field ?? field });
  if (NOT_YET.has(scheme)) {
    throw new PermanentError(`${field}: ${scheme}:// storage is not yet supported by this runner (${location})`, {
      field,
    });
  }
  throw new RequestError(field, location, "has an unknown storage scheme (expected file:, s3://, gs:// or http(s)://)");
}
