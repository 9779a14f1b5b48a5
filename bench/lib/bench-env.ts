// The environment every process the bench starts gets: no cloud metadata probes, pip pointed at
// the machine's offline wheelhouse when it has one (as test/run.sh does).

import { existsSync } from "node:fs";

import { NO_METADATA_ENV } from "../../test/helpers/s3-server.ts";

/** The same no-metadata settings the tests use (one definition, in the S3 test helper). */
export { NO_METADATA_ENV };

/** pip settings for the runner and for the hand-made peer venvs alike. */
export function pipEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PIP_RETRIES: process.env.PIP_RETRIES ?? "0",
    PIP_DISABLE_PIP_VERSION_CHECK: "1",
  };
  if (process.env.PIP_INDEX_URL) env.PIP_INDEX_URL = process.env.PIP_INDEX_URL;
  else if (existsSync("/opt/pypi/simple")) {
    env.PIP_INDEX_URL = "file:///opt/pypi/simple";
    if (existsSync("/opt/pypi-more/simple")) env.PIP_EXTRA_INDEX_URL = "file:///opt/pypi-more/simple";
  }
  return env;
}

/** Apply both to this process, so children and in-process SDK clients inherit them. */
export function applyBenchEnv(): void {
  Object.assign(process.env, NO_METADATA_ENV, pipEnv());
}
