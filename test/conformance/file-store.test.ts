// The store conformance suite on file: storage, in both location spellings clients use.

import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { RequestError } from "../../src/errors.ts";
import { FileStore, filePath } from "../../src/storage/file/file-store.ts";
import { GcsStore } from "../../src/storage/gcs/gcs-store.ts";
import { storeFor } from "../../src/storage/stores.ts";
import { storeConformance } from "./store-conformance.ts";

storeConformance("file (file:///abs/path form)", async () => {
  const root = await mkdtemp(join(tmpdir(), "fs-"));
  return {
    store: new FileStore(),
    locationOf: (k) => `file://${root}/bucket/${k}`,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

storeConformance("file, confined to a root (as in the runner)", async () => {
  const root = await mkdtemp(join(tmpdir(), "fs-"));
  return {
    store: new FileStore({ roots: [root] }),
    locationOf: (k) => `file:/${root}/bucket/${k}`,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

storeConformance("file (python client's file://abs/path form)", async () => {
  const root = await mkdtemp(join(tmpdir(), "fs-"));
  return {
    store: storeFor(`file:/${root}/x`),
    locationOf: (k) => `file:/${root}/bucket/${k}`,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
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
    expect(() => storeFor("ftp://x/y", {}, "experiment.artifacts.workspace.qualified")).toThrow(
      /experiment\.artifacts\.workspace\.qualified/,
    );
  });
});

describe("a file store confined to its roots (real path checked where it opens)", () => {
  async function setup() {
    const dir = await mkdtemp(join(tmpdir(), "fs-confined-"));
    const root = join(dir, "storage");
    const outside = join(dir, "outside");
    mkdirSync(join(root, "b"), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, "secret.txt"), "host secret");
    writeFileSync(join(root, "b", "ok.txt"), "inside");
    return {
      dir,
      root,
      outside,
      store: new FileStore({ roots: [root] }),
      done: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const text = async (r: Readable) => {
    const chunks: Buffer[] = [];
    for await (const c of r) chunks.push(Buffer.from(c));
    return Buffer.concat(chunks).toString();
  };

  test("reads inside the root; lexically outside, /proc and /dev are refused", async () => {
    const t = await setup();
    expect(await text(await t.store.get(`file://${t.root}/b/ok.txt`))).toBe("inside");
    await expect(t.store.get(`file://${t.outside}/secret.txt`)).rejects.toBeInstanceOf(RequestError);
    const everywhere = new FileStore({ roots: ["/"] });
    await expect(everywhere.get("file:///proc/self/environ")).rejects.toThrow(/\/proc/);
    await expect(everywhere.head("file:///dev/null")).rejects.toThrow(/\/dev/);
    await t.done();
  });

  test("a symlink inside the root pointing outside is refused (file and directory links)", async () => {
    const t = await setup();
    symlinkSync(join(t.outside, "secret.txt"), join(t.root, "b", "link.txt"));
    symlinkSync(t.outside, join(t.root, "b", "dirlink"));
    symlinkSync("/proc/self", join(t.root, "b", "proc"));
    for (const loc of [
      `file://${t.root}/b/link.txt`,
      `file://${t.root}/b/dirlink/secret.txt`,
      `file://${t.root}/b/proc/environ`,
    ]) {
      await expect(t.store.get(loc)).rejects.toBeInstanceOf(RequestError);
      await expect(t.store.head(loc)).rejects.toBeInstanceOf(RequestError);
    }
    // Not there yet (a mutable artifact's first run): a directory link out of the root is refused already.
    await expect(t.store.head(`file://${t.root}/b/dirlink/not-yet/modeldir.tar`)).rejects.toBeInstanceOf(RequestError);
    expect(await t.store.head(`file://${t.root}/b/not-yet/modeldir.tar`)).toBeUndefined();
    // A link that stays inside the root is fine.
    symlinkSync(join(t.root, "b", "ok.txt"), join(t.root, "b", "inner.txt"));
    expect(await text(await t.store.get(`file://${t.root}/b/inner.txt`))).toBe("inside");
    await t.done();
  });

  test("writes never go through a symlink: a linked directory is refused, a linked final name is replaced", async () => {
    const t = await setup();
    symlinkSync(t.outside, join(t.root, "b", "dirlink"));
    await expect(
      t.store.put(`file://${t.root}/b/dirlink/new.tar`, Readable.from([Buffer.from("x")])),
    ).rejects.toBeInstanceOf(RequestError);
    expect(existsSync(join(t.outside, "new.tar"))).toBe(false);
    symlinkSync(join(t.outside, "secret.txt"), join(t.root, "b", "out.tar"));
    await t.store.put(`file://${t.root}/b/out.tar`, Readable.from([Buffer.from("results")]));
    expect(readFileSync(join(t.outside, "secret.txt"), "utf8")).toBe("host secret");
    expect(lstatSync(join(t.root, "b", "out.tar")).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(t.root, "b", "out.tar"), "utf8")).toBe("results");
    await expect(t.store.put(`file://${t.outside}/x.tar`, Readable.from([Buffer.from("x")]))).rejects.toBeInstanceOf(
      RequestError,
    );
    expect(existsSync(join(t.outside, "x.tar"))).toBe(false);
    await t.done();
  });

  test("a root that is itself a symlink works (its real path is the root)", async () => {
    const t = await setup();
    const alias = join(t.dir, "alias");
    symlinkSync(t.root, alias);
    const store = new FileStore({ roots: [alias] });
    expect(await text(await store.get(`file://${alias}/b/ok.txt`))).toBe("inside");
    await store.put(`file://${alias}/b/new/deep.tar`, Readable.from([Buffer.from("deep")]));
    expect(readFileSync(join(t.root, "b", "new", "deep.tar"), "utf8")).toBe("deep");
    await t.done();
  });

  test("no roots: every file: location is refused", async () => {
    const store = new FileStore({ roots: [] });
    await expect(store.get("file:///tmp/x")).rejects.toThrow(/--file-storage-roots/);
  });
});
