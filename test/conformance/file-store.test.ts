// The store conformance suite on file: storage, in both location spellings clients use.

import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore, filePath } from "../../src/storage/file/file-store.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import { storeFor } from "../../src/storage/stores.ts";
import { storeConformance } from "./store-conformance.ts";

storeConformance("file (file:///abs/path form)", async () => {
  const root = await mkdtemp(join(tmpdir(), "fs-"));
  return { store: new FileStore(), locationOf: (k) => `file://${root}/bucket/${k}`, cleanup: () => rm(root, { recursive: true, force: true }) };
});

storeConformance("file (python client's file://abs/path form)", async () => {
  const root = await mkdtemp(join(tmpdir(), "fs-"));
  return { store: storeFor(`file:/${root}/x`), locationOf: (k) => `file:/${root}/bucket/${k}`, cleanup: () => rm(root, { recursive: true, force: true }) };
});

describe("storage locations", () => {
  test("file: locations collapse leading slashes into one absolute path", () => {
    expect(filePath("file:///tmp/store/b/k")).toBe("/tmp/store/b/k");
    expect(filePath("file://tmp/store/b/k")).toBe("/tmp/store/b/k");
    expect(filePath("file:/tmp/store/b/k")).toBe("/tmp/store/b/k");
  });

  test("'..' in a file: location is refused", () => {
    expect(() => filePath("file:///tmp/../etc/passwd")).toThrow(/\.\./);
  });

  test("gs:// is served by the GCS store; unknown schemes name the field", () => {
    expect(storeFor("gs://b/k")).toBeInstanceOf(GcsStore);
    expect(() => storeFor("ftp://x/y", {}, "experiment.artifacts.workspace.qualified")).toThrow(/experiment\.artifacts\.workspace\.qualified/);
  });
});
