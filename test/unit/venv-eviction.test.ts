// Venv cache eviction: by age, by total size (least recently used first), and leftovers of
// crashed builds; entries in use or being built by another process are left alone.

import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VenvCache } from "../../src/env/venv-cache.ts";

function fakeVenv(root: string, hash: string, sizeBytes: number, usedAgoMs: number) {
  const dir = join(root, hash);
  mkdirSync(join(dir, "bin"), { recursive: true });
  writeFileSync(join(dir, "bin", "python"), "");
  const marker = join(dir, ".studio-runner-venv.json");
  writeFileSync(
    marker,
    JSON.stringify({ hash, sizeBytes, failed: [], requirements: [], builtAt: "", buildMs: 0, interpreter: "" }),
  );
  const t = new Date(Date.now() - usedAgoMs);
  utimesSync(marker, t, t);
}

describe("venv cache eviction", () => {
  test("old entries go; then the least recently used until the cache fits", async () => {
    const root = await mkdtemp(join(tmpdir(), "venvs-"));
    fakeVenv(root, "old", 10, 3 * 3600_000);
    fakeVenv(root, "lru", 60, 60_000);
    fakeVenv(root, "recent", 60, 1_000);
    fakeVenv(root, "locked", 60, 120_000);
    mkdirSync(join(root, "locked.lock"));
    const cache = new VenvCache({ root, maxBytes: 130, maxAgeMs: 3600_000, pinMode: "default", env: {} });
    await cache.evict();
    expect(existsSync(join(root, "old"))).toBe(false);
    expect(existsSync(join(root, "lru"))).toBe(false);
    expect(existsSync(join(root, "recent"))).toBe(true);
    expect(existsSync(join(root, "locked"))).toBe(true);
    await rm(root, { recursive: true, force: true });
  });

  test("a half-built environment left by a crash is removed once it is stale", async () => {
    const root = await mkdtemp(join(tmpdir(), "venvs-"));
    mkdirSync(join(root, "crashed", "bin"), { recursive: true });
    const old = new Date(Date.now() - 3600_000);
    utimesSync(join(root, "crashed"), old, old);
    mkdirSync(join(root, "building-now", "bin"), { recursive: true });
    const cache = new VenvCache({ root, maxBytes: 1e12, maxAgeMs: 1e12, pinMode: "default", env: {} });
    await cache.evict();
    expect(existsSync(join(root, "crashed"))).toBe(false);
    expect(existsSync(join(root, "building-now"))).toBe(true);
    await rm(root, { recursive: true, force: true });
  });
});
