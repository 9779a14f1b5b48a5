// The time an attempt may run: min(max_duration, what is left of experimentLifetime, runner cap).

import type { Request } from "../request/model.ts";

export type TimeLimit = { ms: number; because: string } | undefined;

export function timeLimit(request: Request, runnerCapMs: number, nowMs = Date.now()): TimeLimit {
  const limits: Array<{ ms: number; because: string }> = [];
  const e = request.experiment;
  if (e.maxDurationMs) limits.push({ ms: e.maxDurationMs, because: "experiment.max_duration" });
  if (request.config.experimentLifetimeMs && e.timeAddedMs) {
    limits.push({
      ms: e.timeAddedMs + request.config.experimentLifetimeMs - nowMs,
      because: "config.experimentLifetime",
    });
  }
  if (runnerCapMs > 0) limits.push({ ms: runnerCapMs, because: "the runner's --max-duration" });
  if (!limits.length) return undefined;
  return limits.reduce((a, b) => (b.ms < a.ms ? b : a));
}
