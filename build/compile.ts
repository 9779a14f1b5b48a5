// One studio-runner executable (bun build --compile, minified, bytecode) for a Bun target, with
// the heavy cloud SDKs evaluated on first use (lazy-modules.ts) and the build's identity baked in.
// The build date is the commit's own date, not the clock: the same commit builds the same bytes.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { lazyModulesPlugin } from "./lazy-modules.ts";

export type BuildIdentity = { version: string; commit: string; buildDate: string; commitEpochS: number };

const git = (args: string[]) => spawnSync("git", args, { encoding: "utf8" }).stdout?.trim() ?? "";

export function buildIdentity(): BuildIdentity {
  const epoch = Number(git(["log", "-1", "--format=%ct"]));
  return {
    version: pkg.version,
    commit: git(["rev-parse", "--short", "HEAD"]) || "unknown",
    buildDate: git(["log", "-1", "--format=%cI"]) || "unknown",
    commitEpochS: Number.isFinite(epoch) && epoch > 0 ? epoch : 0,
  };
}

/**
 * Compiles src/main.ts into `outfile`. `target` is a release target ("linux-arm64-musl") built
 * with Bun's matching runtime ("bun-linux-arm64-musl", fetched by Bun once and cached); without
 * it, this machine's own.
 */
export async function compileBinary(outfile: string, id: BuildIdentity, target?: string): Promise<void> {
  const result = await Bun.build({
    entrypoints: [join(import.meta.dir, "../src/main.ts")],
    compile: target ? { outfile, target: `bun-${target}` as Bun.Build.CompileTarget } : { outfile },
    minify: { whitespace: true, syntax: true, identifiers: true, keepNames: true },
    bytecode: true,
    format: "esm",
    sourcemap: "none",
    define: {
      STUDIO_RUNNER_VERSION: JSON.stringify(id.version),
      STUDIO_RUNNER_COMMIT: JSON.stringify(id.commit),
      STUDIO_RUNNER_BUILD_DATE: JSON.stringify(id.buildDate),
      STUDIO_RUNNER_TARGET: JSON.stringify(target ?? `${process.platform}-${process.arch}`),
    },
    plugins: [lazyModulesPlugin(join(import.meta.dir, "../src"))],
  });
  if (!result.success) throw new AggregateError(result.logs, `building ${outfile} failed`);
}
