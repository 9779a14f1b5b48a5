// CRC32C (Castagnoli) eight bytes at a step, for the library's integrity checks: its own byte-at-a-
// time version runs at ~32 MB/s under Bun and bounded GCS transfers to that speed.

import type { CRC32CValidator } from "@google-cloud/storage";

const POLYNOMIAL_REFLECTED = 0x82f63b78;
const TABLE_SIZE = 256;
const SLICES = 8;

/** TABLES[k * 256 + n]: the CRC of byte n followed by k zero bytes. */
const TABLES = (() => {
  const t = new Int32Array(SLICES * TABLE_SIZE);
  for (let n = 0; n < TABLE_SIZE; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL_REFLECTED : c >>> 1;
    t[n] = c;
  }
  for (let k = 1; k < SLICES; k++) {
    for (let n = 0; n < TABLE_SIZE; n++) {
      const prev = t[(k - 1) * TABLE_SIZE + n]!;
      t[k * TABLE_SIZE + n] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
})();

/** The CRC32C of `data` continued from `crc` (0 to start). */
export function crc32cUpdate(crc: number, data: Uint8Array): number {
  const t = TABLES;
  let c = ~crc;
  let i = 0;
  const end8 = data.length - (data.length % 8);
  for (; i < end8; i += 8) {
    c ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    c =
      t[7 * 256 + (c & 0xff)]! ^
      t[6 * 256 + ((c >>> 8) & 0xff)]! ^
      t[5 * 256 + ((c >>> 16) & 0xff)]! ^
      t[4 * 256 + (c >>> 24)]! ^
      t[3 * 256 + data[i + 4]!]! ^
      t[2 * 256 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
  }
  for (; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** A validator in the shape @google-cloud/storage asks of its `crc32cGenerator`. */
export class FastCrc32c implements CRC32CValidator {
  private crc = 0;

  update(data: Buffer): void {
    this.crc = crc32cUpdate(this.crc, data);
  }

  /** Base64 of the big-endian value, as GCS reports it. */
  toString(): string {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.crc);
    return out.toString("base64");
  }

  validate(value: string): boolean {
    return value === this.toString();
  }
}
