// A file descriptor's own offset, read and set through libc's lseek (bun:ffi). Bun writes a
// response body to a descriptor natively, off the JS heap, at the descriptor's offset: with one
// descriptor per part, placed at the part's first byte, a ranged GET lands where it belongs, and
// the offset says how far it has come. Where libc cannot be loaded, offsetControl() is undefined
// and callers write chunk by chunk instead.

import { dlopen, FFIType } from "bun:ffi";

const SEEK_SET = 0;
const SEEK_CUR = 1;
export const LIBC_NAMES = ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"];

export type OffsetControl = {
  /** Moves the descriptor's offset to `position`. */
  seek(fd: number, position: number): void;
  /** The descriptor's offset now: the byte after the last one written through it. */
  tell(fd: number): number;
};

let loaded: OffsetControl | null | undefined;

function load(): OffsetControl | null {
  if (process.platform !== "linux") return null;
  for (const name of LIBC_NAMES) {
    try {
      const { symbols } = dlopen(name, {
        lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
      });
      const lseek = (fd: number, offset: number, whence: number): number => {
        const at = Number(symbols.lseek(fd, offset, whence));
        if (at < 0) throw new Error(`lseek(${fd}, ${offset}, ${whence}) failed`);
        return at;
      };
      return {
        seek: (fd, position) => void lseek(fd, position, SEEK_SET),
        tell: (fd) => lseek(fd, 0, SEEK_CUR),
      };
    } catch {
      // Not this name: try the next.
    }
  }
  return null;
}

/** lseek through libc, loaded once; undefined where it cannot be (not Linux, no known libc). */
export function offsetControl(): OffsetControl | undefined {
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}
