// Picks the object store for a location by its scheme. The daemon makes one Stores with its GCS
// clients and passes it to the attempts; storeFor serves callers without one (default GCS clients).

import { RequestError } from "../errors.ts";
import { FileStore } from "./file/file-store.ts";
import { GcsClients } from "./gcs/gcs-clients.ts";
import { GcsStore } from "./gcs/gcs-store.ts";
import { HttpStore } from "./http/http-store.ts";
import type { ObjectStore, StoreOptions } from "./object-store.ts";
import { DEFAULT_TRANSFER, type TransferSettings } from "./parallel-ranges.ts";
import { S3Store } from "./s3/s3-store.ts";

export type StoreFactory = (location: string, options: StoreOptions) => ObjectStore;

const fileStore = new FileStore();
const httpStore = new HttpStore();

/** gs: stores with the given clients: one store for the runner's own callers, one per identity policy. */
export function gcsStoreFactory(
  clients: GcsClients = new GcsClients({}),
  transfer: TransferSettings = DEFAULT_TRANSFER,
): StoreFactory {
  const shared = new GcsStore(process.env, {}, clients, transfer);
  // The clients are pooled in GcsClients: a store per identity policy costs nothing.
  return (_location, options) => (options.identity ? new GcsStore(process.env, options, clients, transfer) : shared);
}

/** The stores of one configuration: the daemon makes one with its GCS clients and passes it down. */
export class Stores {
  private readonly factories: Record<string, StoreFactory>;

  constructor(gcsClients?: GcsClients, transfer: TransferSettings = DEFAULT_TRANSFER) {
    this.factories = {
      file: () => fileStore,
      http: () => httpStore,
      https: () => httpStore,
      s3: (_location, options) => new S3Store(options, process.env, transfer),
      gs: gcsStoreFactory(gcsClients, transfer),
    };
  }

  /** The store for a location, by its scheme; RequestError (naming `field`) for an unknown scheme. */
  for(location: string, options: StoreOptions = {}, field = "qualified"): ObjectStore {
    const factory = this.factories[schemeOf(location)];
    if (factory) return factory(location, { ...options, field: options.field ?? field });
    throw new RequestError(
      field,
      location,
      "has an unknown storage scheme (expected file:, s3://, gs:// or http(s)://)",
    );
  }
}

export function schemeOf(location: string): string {
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(location);
  return match ? match[1]!.toLowerCase() : "";
}

/**
 * Stores of the default configuration (GCS through the environment's credentials), for callers without a Stores of
 * their own.
 */
const defaultStores = new Stores();

export function storeFor(location: string, options: StoreOptions = {}, field = "qualified"): ObjectStore {
  return defaultStores.for(location, options, field);
}
