// The venv cache as the settings describe it (--cache-dir, --venv-*, --pip-*, --max-env-builds,
// --allow-pip-urls), made the same way for `run` and for `env prepare/list/prune`.

import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Settings } from "../config/load.ts";
import type { PinMode } from "./pin-plan.ts";
import { VenvCache } from "./venv-cache.ts";

/** --pip-strict, --pip-relax-pins (both at once is a configuration problem, see pinModeProblems). */
export function pinModeFrom(settings: Settings): PinMode {
  if (settings["pip-strict"]) return "strict";
  return settings["pip-relax-pins"] ? "relax" : "default";
}

export function pinModeProblems(settings: Settings): string[] {
  return settings["pip-strict"] && settings["pip-relax-pins"]
    ? [
        "--pip-strict and --pip-relax-pins: choose one (strict fails on any pin it cannot meet, relax installs the nearest version)",
      ]
    : [];
}

/** --max-env-builds, 0 meaning half the cores (at least one). */
export function maxEnvBuilds(settings: Settings): number {
  const n = Number(settings["max-env-builds"] ?? 0);
  return n > 0 ? n : Math.max(1, Math.floor(availableParallelism() / 2));
}

export function venvCacheFromSettings(
  settings: Settings,
  cacheDir: string,
  runnerEnv: Record<string, string | undefined>,
  log: (m: string) => void,
): VenvCache {
  return new VenvCache({
    root: join(cacheDir, "venvs"),
    maxBytes: settings["venv-cache-size"] as number,
    maxAgeMs: settings["venv-max-age"] as number,
    pinMode: pinModeFrom(settings),
    maxBuilds: maxEnvBuilds(settings),
    reuseSuperset: settings["venv-reuse-superset"] as boolean,
    systemSitePackages: settings["venv-system-site-packages"] as boolean,
    env: runnerEnv, // builds take only pip's and the proxies' settings from it
    allowPipUrls: settings["allow-pip-urls"] as boolean,
    log,
  });
}
