// Keeps the memory of large S3 transfers bounded under Bun: its collector lags far behind the
// short-lived multi-MiB buffers that part uploads and downloads churn through (measured: RSS
// 250–300 MB above the baseline for a 1 GiB upload), so a full collection every few MiB moved
// holds RSS near the buffers actually in use (measured: +70 MB) at ~15 ms per collection.

const COLLECT_EVERY_BYTES = 8 * 1024 * 1024;
let sinceCollectBytes = 0;

/** Count bytes moved by any S3 transfer in this process; collect garbage every 8 MiB. */
export function noteTransferredBytes(bytes: number): void {
  sinceCollectBytes += bytes;
  if (sinceCollectBytes < COLLECT_EVERY_BYTES) return;
  sinceCollectBytes = 0;
  Bun.gc(true);
}
