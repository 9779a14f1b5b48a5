// The version this binary reports: injected by build.ts, or read from package.json in development.

import pkg from "../package.json" with { type: "json" };

export const VERSION: string = typeof STUDIO_RUNNER_VERSION === "string" ? STUDIO_RUNNER_VERSION : `${pkg.version}-dev`;
export const COMMIT: string = typeof STUDIO_RUNNER_COMMIT === "string" ? STUDIO_RUNNER_COMMIT : "unknown";
