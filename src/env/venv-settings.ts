// The venv cache as the settings describe it (--cache-dir, --venv-*, --pip-* including the package
// sources, --max-env-builds, --allow-pip-urls), made the same way for `run` and for `env prepare/list/prune`.

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
  | "pip-index-url"
  | "pip-extra-index-url"
  | "pip-find-links"
  | "pip-no-index"
>;

const listOf = (text: string | undefined) => (text ?? "").split(/[\s,]+/).filter(Boolean);

/**
 * The operator's package sources (--pip-index-url, --pip-extra-index-url, --pip-find-links,
 * --pip-no-index) as pip's own environment variables, for every environment build. A flag left
 * unset leaves pip's own configuration (pip.conf, PIP_* already in the environment) as it is.
 */
export function pipSourceEnv(
  settings: Pick<VenvSettings, "pip-index-url" | "pip-extra-index-url" | "pip-find-links" | "pip-no-index">,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (settings["pip-index-url"]) env.PIP_INDEX_URL = settings["pip-index-url"];
  const extra = listOf(settings["pip-extra-index-url"]);
  if (extra.length) env.PIP_EXTRA_INDEX_URL = extra.join(" ");
  const links = listOf(settings["pip-find-links"]);
  if (links.length) env.PIP_FIND_LINKS = links.join(" ");
  if (settings["pip-no-index"]) env.PIP_NO_INDEX = "1";
  return env;
}

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
    // Builds take only pip's and the proxies' settings from it; the operator's flags win.
    env: { ...runnerEnv, ...pipSourceEnv(settings) },
    allowPipUrls: settings["allow-pip-urls"],
    log,
  });
}
