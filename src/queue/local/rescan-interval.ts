// How often a local queue root is rescanned besides its change notifications (inotify): often on
// network filesystems, where other machines' writes raise no notification here, and seldom on
// local ones, where the scan is only a safety net and an idle runner should cost next to nothing.

import { statfsSync } from "node:fs";

export const NETWORK_FS_RESCAN_MS = 1000;
export const LOCAL_FS_RESCAN_MS = 5000;

/** statfs f_type magic numbers of filesystems shared over a network (linux/magic.h and others). */
const NETWORK_FS_TYPES = new Set<number>([
  0x6969, // NFS
  0xff534d42, // CIFS
  0xfe534d42, // SMB2
  0x517b, // SMB
  0x65735546, // FUSE (sshfs, s3fs, gcsfuse …)
  0x00c36400, // Ceph
  0x01021997, // 9p (v9fs)
  0x47504653, // GPFS
  0x0bd00bd0, // Lustre
  0x6b414653, // AFS
  0x5346414f, // OpenAFS
  0x013111a8, // IBRIX
  0x19830326, // Fhgfs / BeeGFS
]);

/** True when the path is on a network filesystem, or when that cannot be told. */
export function onNetworkFilesystem(path: string): boolean {
  try {
    return NETWORK_FS_TYPES.has(Number(statfsSync(path).type) >>> 0);
  } catch {
    return true;
  }
}

/** The fallback rescan interval for a queue root. */
export function rescanIntervalMs(root: string): number {
  return onNetworkFilesystem(root) ? NETWORK_FS_RESCAN_MS : LOCAL_FS_RESCAN_MS;
}
