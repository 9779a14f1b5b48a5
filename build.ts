// Builds dist/studio-runner: one self-contained executable (bun build --compile, minified, bytecode).

import { spawnSync } from "node:child_process";
import pkg from "./package.json" with { type: "json" };

const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout?.trim() || "unknown";
const outfile = process.env.OUTFILE ?? "dist/studio-runner";
const args = [
  "build",
  "--compile",
  "--minify",
  "--keep-names",
  "--bytecode",
  "--format=esm",
  "--sourcemap=none",
  `--define=STUDIO_RUNNER_VERSION=${JSON.stringify(pkg.version)}`,
  `--define=STUDIO_RUNNER_COMMIT=${JSON.stringify(commit)}`,
  "src/main.ts",
  "--outfile",
  outfile,
];
const started = performance.now();
const result = spawnSync(process.execPath, args, { stdio: "inherit" });
if (result.status !== 0) process.exit(result.status ?? 1);
console.log(`built ${outfile} (studio-runner ${pkg.version}, commit ${commit}) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
