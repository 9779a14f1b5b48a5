// The version this binary reports: injected by build.ts, or read from package.json in development.
// The build date is the commit's date (so the same commit builds the same bytes); the target is
// the release target the binary was built for (linux-x64, linux-arm64-musl, …).

import pkg from "../package.json" with { type: "json" };

export const VERSION: string = typeof STUDIO_RUNNER_VERSION === "string" ? STUDIO_RUNNER_VERSION : `${pkg.version}-dev`;
export const COMMIT: string = typeof STUDIO_RUNNER_COMMIT === "string" ? STUDIO_RUNNER_COMMIT : "unknown";
export const BUILD_DATE: string = typeof STUDIO_RUNNER_BUILD_DATE === "string" ? STUDIO_RUNNER_BUILD_DATE : "unknown";
export const TARGET: string =
  typeof STUDIO_RUNNER_TARGET === "string" ? STUDIO_RUNNER_TARGET : `${process.platform}-${process.arch}`;
