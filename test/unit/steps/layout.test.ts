// Covers src/task/steps/layout.ts: one folder per artifact, a read-only artifact mapping that is
// never written through a planted link, the owner record, and a cleanup that removes it all
// (a finished experiment's only once it is acked; kept with --debug).

import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { layoutStep } from "../../../src/task/steps/layout.ts";
import { harness } from "../../helpers/attempt-harness.ts";

const finished = { kind: "finished" as const, exit: { code: 0, signal: null }, reason: "exited with code 0" };

describe("layout step", () => {
  test("lays out the attempt's directory, mapping and job environment; cleanup removes it", async () => {
    const h = harness();
    const s = h.state();
    await layoutStep.prepare!(s);
    expect(Object.keys(s.dirs!).sort()).toEqual(Object.keys(h.request.experiment.artifacts).concat().sort());
    expect(existsSync(s.dirs!.output!)).toBe(true);
    const mapping = join(s.attemptDir, "artifact-mapping.json");
    expect(JSON.parse(readFileSync(mapping, "utf8"))).toEqual(s.dirs);
    expect(lstatSync(mapping).mode & 0o777).toBe(0o444);
    expect(s.jobEnv!.env.STUDIOML_EXPERIMENT).toBe(h.request.experiment.key);
    const owners = join(h.ctx.workingDir, "studio-runner", ".owners");
    expect(readdirSync(owners)).toHaveLength(1);
    // A finished experiment's directory outlives the cleanup until its delivery is settled (acked).
    await layoutStep.cleanup!(s, finished);
    expect(existsSync(s.attemptDir)).toBe(true);
    expect(s.afterSettle).toHaveLength(1);
    for (const work of s.afterSettle) await work();
    expect(existsSync(s.attemptDir)).toBe(false);
    expect(readdirSync(owners)).toHaveLength(0);
    await layoutStep.cleanup!(s, finished); // idempotent
    for (const work of s.afterSettle) await work();
  });

  test("any other ending removes the directory in the cleanup, before the request can be taken again", async () => {
    const h = harness();
    const s = h.state();
    await layoutStep.prepare!(s);
    await layoutStep.cleanup!(s, { kind: "superseded", reason: "a newer attempt" });
    expect(existsSync(s.attemptDir)).toBe(false);
    expect(s.afterSettle).toHaveLength(0);
  });

  test("--debug keeps the directory", async () => {
    const h = harness(undefined, undefined, { keepDirectories: true });
    const s = h.state();
    await layoutStep.prepare!(s);
    await layoutStep.cleanup!(s, finished);
    for (const work of s.afterSettle) await work();
    expect(existsSync(s.dirs!.output!)).toBe(true);
  });

  test("an unwritable place is a retryable fault naming the phase; a link planted at the mapping is not followed", async () => {
    const h = harness();
    const blocked = h.state();
    mkdirSync(join(blocked.attemptDir, ".."), { recursive: true });
    writeFileSync(blocked.attemptDir, "a file where the directory goes");
    const err = await layoutStep.prepare!(blocked).then(
      () => undefined,
      (e) => e,
    );
    expect(err.retryable).toBe(true);
    expect(err.context.phase).toBe("lay out the experiment's directory");

    const planted = h.state({ attemptDir: join(h.ctx.workingDir, "studio-runner", "k", "planted") });
    const outside = join(h.dir, "outside.json");
    writeFileSync(outside, "untouched");
    mkdirSync(planted.attemptDir, { recursive: true });
    symlinkSync(outside, join(planted.attemptDir, "artifact-mapping.json"));
    await layoutStep.prepare!(planted).catch(() => undefined);
    expect(readFileSync(outside, "utf8")).toBe("untouched");
  });
});
