// Keeps the memory of large S3 transfers bounded under Bun: its collector lags far behind the
// short-lived multi-MiB buffers that part uploads and downloads churn through (measured: RSS
// 250–300 MB above the baseline for a 1 GiB upload), so a full collection every few MiB moved
// holds RSS near the buffers actually in use at ~15 ms per collection.

// Every 16 MiB, not 8: each collection stops the transfer (~15 ms), and at 8 MiB they took about
// 1.3 s of a 1 GiB download. Measured with bench/transfer.ts (1 GiB down and up through s3rver):
// every 8 MiB, peak RSS 169 MB; every 16 MiB, 188 MB and 1.5 × faster down; every 32 MiB,
// 216 MB (over the 200 MB target) and 1.8 × faster down.
const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;
let sinceCollectBytes = 0;

/** Count bytes moved by any S3 transfer in this process; collect garbage every 16 MiB. */
export function noteTransferredBytes(bytes: number): void {
  sinceCollectBytes += bytes;
  if (sinceCollectBytes < COLLECT_EVERY_BYTES) return;
  sinceCollectBytes = 0;
  Bun.gc(true);
}
