// Builds the stand-in libnvidia-ml.so.1 (fake-nvml.c) with the machine's C compiler, for tests of
// the NVML FFI layouts on CPU-only machines. Returns undefined when there is no compiler.

import { dlopen, FFIType } from "bun:ffi";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join, resolve } from "node:path";

const SOURCE = join(import.meta.dir, "fake-nvml.c");

/** Path of the built library, reused while fake-nvml.c is unchanged; undefined without cc/gcc. */
export function buildFakeNvml(): string | undefined {
  const hash = new Bun.CryptoHasher("sha256").update(readFileSync(SOURCE)).digest("hex").slice(0, 16);
  const dir = resolve(import.meta.dir, "../../../.test-tmp/fake-nvml", hash);
  const out = join(dir, "libnvidia-ml.so.1");
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  for (const cc of ["cc", "gcc"]) {
    const r = spawnSync(cc, ["-shared", "-fPIC", "-O1", "-Wall", "-o", tmp, SOURCE], { encoding: "utf8" });
    if (r.status === 0) {
      renameSync(tmp, out);
      return out;
    }
  }
  return undefined;
}

/** The stand-in's test controls: make nvmlInit_v2 fail, count sessions not shut down. */
export function fakeNvmlControls(path: string) {
  const lib = dlopen(path, {
    fakeNvmlSetInitFail: { args: [FFIType.i32], returns: FFIType.void },
    fakeNvmlOpenSessions: { args: [], returns: FFIType.i32 },
  });
  return {
    setInitFail: (fail: boolean) => lib.symbols.fakeNvmlSetInitFail(fail ? 1 : 0),
    openSessions: () => lib.symbols.fakeNvmlOpenSessions(),
  };
}
