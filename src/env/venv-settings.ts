// The venv cache as the settings describe it (--cache-dir, --venv-*, --pip-*, --max-env-builds,
// --allow-pip-urls), made the same way for `run` and for `env prepare/list/prune`.

import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { RUN_OPTIONS } from "../config/options.ts";
import type { SettingsOf } from "../config/settings.ts";
import type { PinMode } from "./pin-plan.ts";
import { VenvCache } from "./venv-cache.ts";

/** The settings the venv cache is made from. */
export type VenvSettings = Pick<
  SettingsOf<typeof RUN_OPTIONS>,
  | "pip-strict"
  | "pip-relax-pins"
  | "max-env-builds"
  | "venv-cache-size"
  | "venv-max-age"
  | "venv-reuse-superset"
  | "venv-system-site-packages"
  | "allow-pip-urls"
>;

/** --pip-strict, --pip-relax-pins (both at once is a configuration problem, see pinModeProblems). */
export function pinModeFrom(settings: Pick<VenvSettings, "pip-strict" | "pip-relax-pins">): PinMode {
  if (settings["pip-strict"]) return "strict";
  return settings["pip-relax-pins"] ? "relax" : "default";
}

export function pinModeProblems(settings: Pick<VenvSettings, "pip-strict" | "pip-relax-pins">): string[] {
  return settings["pip-strict"] && settings["pip-relax-pins"]
    ? [
        "--pip-strict and --pip-relax-pins: choose one " +
          "(strict fails on any pin it cannot meet, relax installs the nearest version)",
      ]
    : [];
}

/** --max-env-builds, 0 meaning half the cores (at least one). */
export function maxEnvBuilds(settings: Pick<VenvSettings, "max-env-builds">): number {
  const n = settings["max-env-builds"];
  return n > 0 ? n : Math.max(1, Math.floor(availableParallelism() / 2));
}

export function venvCacheFromSettings(
  settings: VenvSettings,
  cacheDir: string,
  runnerEnv: Record<string, string | undefined>,
  log: (m: string) => void,
): VenvCache {
  return new VenvCache({
    root: join(cacheDir, "venvs"),
    maxBytes: settings["venv-cache-size"],
    maxAgeMs: settings["venv-max-age"],
    pinMode: pinModeFrom(settings),
    maxBuilds: maxEnvBuilds(settings),
    reuseSuperset: settings["venv-reuse-superset"],
    systemSitePackages: settings["venv-system-site-packages"],
    env: runnerEnv, // builds take only pip's and the proxies' settings from it
    allowPipUrls: settings["allow-pip-urls"],
    log,
  });
}
