// Covers src/task/steps/fetch.ts: the workspace is unpacked from file storage, mutable artifacts
// not in storage yet start empty, a registry image is taken as given, and a missing immutable
// artifact fails the attempt naming the artifact.

import { describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fetchStep } from "../../../src/task/steps/fetch.ts";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { logStep } from "../../../src/task/steps/log.ts";
import { harness, prepareAll, textOf } from "../../helpers/attempt-harness.ts";

describe("fetch step", () => {
  test("the workspace is unpacked; mutable artifacts start empty, said in the log", async () => {
    const h = harness({ "main.py": "print('fetched')\n", "data/x.txt": "x" });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, fetchStep]);
    expect(textOf(join(s.dirs!.workspace!, "main.py"))).toBe("print('fetched')\n");
    expect(textOf(join(s.dirs!.workspace!, "data", "x.txt"))).toBe("x");
    await s.log!.flush();
    const log = textOf(join(s.dirs!.output!, "output"));
    expect(log).toMatch(/artifact workspace: 2 file\(s\)/);
    expect(log).toContain("artifact modeldir: not in storage yet, starting empty");
    expect(s.image).toBeUndefined();
  });

  test("a registry image is used as given", async () => {
    const h = harness(undefined, (m) => {
      m.experiment.artifacts._singularity = { mutable: false, unpack: false, qualified: "docker://python:3.12" };
    });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep, fetchStep]);
    expect(s.image).toBe("docker://python:3.12");
  });

  test("a missing workspace fails the attempt for good, naming the artifact", async () => {
    const h = harness();
    rmSync(join(h.storageRoot, "studioml-artifacts", "blobstore"), { recursive: true });
    const s = h.state();
    await prepareAll(s, [layoutStep, logStep]);
    const err = await fetchStep.prepare!(s).then(
      () => undefined,
      (e) => e,
    );
    expect(err.retryable).toBe(false);
    expect(err.context.phase).toStartWith("fetch");
    expect(err.message).toContain("blobstore/");
  });
});
