// Builds dist/studio-runner: one self-contained executable (bun build --compile, minified, bytecode),
// with the heavy cloud SDKs evaluated on first use (build/lazy-modules.ts).

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { lazyModulesPlugin } from "./build/lazy-modules.ts";
import pkg from "./package.json" with { type: "json" };

const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() || "unknown";
const outfile = process.env.OUTFILE ?? "dist/studio-runner";
const started = performance.now();
const result = await Bun.build({
  entrypoints: ["src/main.ts"],
  compile: { outfile },
  minify: { whitespace: true, syntax: true, identifiers: true, keepNames: true },
  bytecode: true,
  format: "esm",
  sourcemap: "none",
  define: { STUDIO_RUNNER_VERSION: JSON.stringify(pkg.version), STUDIO_RUNNER_COMMIT: JSON.stringify(commit) },
  plugins: [lazyModulesPlugin(join(import.meta.dir, "src"))],
});
if (!result.success) {
  for (const message of result.logs) console.error(message);
  process.exit(1);
}
console.log(
  `built ${outfile} (studio-runner ${pkg.version}, commit ${commit}) in ${((performance.now() - started) / 1000).toFixed(1)}s`,
);
