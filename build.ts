// Builds dist/studio-runner (this machine's target), or with --release (npm run release) the
// release archives of every Linux target in dist/release (build/release.ts).

import { buildIdentity, compileBinary } from "./build/compile.ts";

const started = performance.now();
if (process.argv.includes("--release")) {
  const { buildRelease } = await import("./build/release.ts");
  await buildRelease();
} else {
  const outfile = process.env.OUTFILE ?? "dist/studio-runner";
  const id = buildIdentity();
  try {
    await compileBinary(outfile, id);
  } catch (err) {
    for (const message of (err as AggregateError).errors ?? [err]) console.error(message);
    process.exit(1);
  }
  console.log(
    `built ${outfile} (studio-runner ${id.version}, commit ${id.commit}) in ${((performance.now() - started) / 1000).toFixed(1)}s`,
  );
}
