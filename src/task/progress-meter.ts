// Progress lines of a large transfer: every ~10% (of the total, when known) or 10 s once it is past
// 64 MiB, then one summary with the size, the time and the rate.

import { formatBytes, formatDuration } from "../config/units.ts";

/** Where progress lines of large transfers go (the experiment's log or the runner's). */
export type ProgressSink = (message: string) => void;

/** Transfers at least this large report progress. */
export const PROGRESS_MIN_BYTES = 64 * 1024 * 1024;
const PROGRESS_STEP_FRACTION = 0.1;
const PROGRESS_EVERY_MS = 10_000;

export type ProgressMeter = {
  /** Count bytes moved (safe to pass around as a callback). */
  add: (bytes: number) => void;
  /** Say the summary line (once, and only for a transfer past the threshold). */
  finished: () => void;
};

export function progressMeter(what: string, totalBytes: number | undefined, sink?: ProgressSink): ProgressMeter {
  if (!sink || (totalBytes !== undefined && totalBytes < PROGRESS_MIN_BYTES)) {
    return { add: () => undefined, finished: () => undefined };
  }
  const startedMs = Date.now();
  let bytes = 0;
  let lastMs = startedMs;
  let lastFraction = 0;
  let summarized = false;
  const rate = () => `${formatBytes((bytes / Math.max(1, Date.now() - startedMs)) * 1000)}/s`;
  return {
    add: (n) => {
      bytes += n;
      const now = Date.now();
      const fraction = totalBytes ? bytes / totalBytes : 0;
      const stepped = totalBytes !== undefined && fraction - lastFraction >= PROGRESS_STEP_FRACTION;
      if (bytes >= PROGRESS_MIN_BYTES && (stepped || now - lastMs >= PROGRESS_EVERY_MS)) {
        lastMs = now;
        lastFraction = fraction;
        const share = totalBytes
          ? ` of ${formatBytes(totalBytes)} (${Math.min(100, Math.floor(fraction * 100))}%)`
          : "";
        sink(`${what}: ${formatBytes(bytes)}${share}, ${rate()}`);
      }
    },
    finished: () => {
      if (summarized || bytes < PROGRESS_MIN_BYTES) return;
      summarized = true;
      sink(`${what}: done, ${formatBytes(bytes)} in ${formatDuration(Date.now() - startedMs)} (${rate()})`);
    },
  };
}
