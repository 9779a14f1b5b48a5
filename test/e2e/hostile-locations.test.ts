// Artifact locations the runner refuses before fetching anything, from the compiled binary: a
// cloud metadata address, and file: paths outside --file-storage-roots. Each request is kept in
// the failed place with a reason naming the field, and its script never runs.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { enqueue, filesIn, makeSandbox, RunnerProcess, SHARED_CACHE, simpleExperiment } from "../helpers/e2e.ts";

const SCRIPT = "open('ran.txt', 'w').write('ran')\nprint('the script ran', flush=True)\n";

describe("hostile artifact locations", () => {
  test("a metadata URL and a file: path outside the allowed roots are refused, naming the field; nothing runs", async () => {
    const sb = await makeSandbox("hostile-locations", { cacheDir: SHARED_CACHE });
    const metadata = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      delete m.config.database;
      m.experiment.artifacts.data = {
        qualified: "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        mutable: false,
        unpack: false,
      };
    });
    const outside = simpleExperiment(sb.storageRoot, { "main.py": SCRIPT }, (m) => {
      delete m.config.database;
    });
    const a = enqueue(sb.queueRoot, "local_meta", metadata.message);
    const b = enqueue(sb.queueRoot, "local_outside", outside.message);
    // The metadata URL is refused whatever the roots; the workspace of the second lies outside them.
    const r1 = new RunnerProcess(sb, [
      "--file-storage-roots",
      sb.storageRoot,
      "--queue-match",
      "^local_meta$",
      "--limit-idle-duration",
      "3s",
    ]);
    expect(await r1.exited).toBe(0);
    const r2 = new RunnerProcess(sb, [
      "--file-storage-roots",
      join(sb.dir, "elsewhere"),
      "--queue-match",
      "^local_outside$",
      "--limit-idle-duration",
      "3s",
    ]);
    expect(await r2.exited).toBe(0);
    const runner = { stderr: r1.stderr + r2.stderr };
    const reason = (id: string) =>
      readFileSync(
        join(sb.queueRoot, ".failed", id === a ? "local_meta" : "local_outside", `${id}.reason.json`),
        "utf8",
      );
    expect(reason(a)).toContain("experiment.artifacts.data.qualified");
    expect(reason(a)).toMatch(/metadata|link-local/);
    expect(reason(b)).toContain("experiment.artifacts.");
    expect(reason(b)).toMatch(/file-storage-roots|allowed|outside/);
    expect(filesIn(join(sb.queueRoot, "local_meta"))).toEqual([]);
    expect(filesIn(join(sb.queueRoot, "local_outside"))).toEqual([]);
    expect(runner.stderr).not.toContain("the script ran");
    expect(
      existsSync(join(metadata.experimentDir, "output.tar")) &&
        readFileSync(join(metadata.experimentDir, "output.tar")).includes("the script ran"),
    ).toBe(false);
  }, 120_000);
});
