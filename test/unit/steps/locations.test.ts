// Covers src/task/steps/locations.ts: artifacts and the database where the rules allow them pass;
// a metadata address, a file: path outside the roots, or a broker's request naming file: storage
// are refused naming the field, and the attempt is marked so nothing is written there.

import { describe, expect, test } from "bun:test";
import { locationPolicy, locationsStep } from "../../../src/task/steps/locations.ts";
import { harness } from "../../helpers/attempt-harness.ts";

const refusal = (p: Promise<void>) =>
  p.then(
    () => undefined,
    (e: Error) => e,
  );

describe("locations step", () => {
  test("file: storage under the runner's own root passes for a local queue", async () => {
    const h = harness();
    const s = h.state();
    await locationsStep.prepare!(s);
    expect(s.locationsRefused).toBeUndefined();
  });

  test("a metadata address is refused naming the field", async () => {
    const h = harness(undefined, (m) => {
      m.experiment.artifacts.modeldir.qualified = "s3://169.254.169.254/bucket/modeldir.tar";
    });
    const s = h.state();
    const err = await refusal(locationsStep.prepare!(s));
    expect(err?.message).toContain("experiment.artifacts.modeldir.qualified");
    expect(s.locationsRefused).toBe(true);
  });

  test("file: locations from a broker's queue are refused without --file-storage-roots", async () => {
    const h = harness();
    const s = h.state({ control: { ...h.control, source: "rabbitmq" } });
    const err = await refusal(locationsStep.prepare!(s));
    expect(err?.message).toContain("experiment.artifacts.");
    expect(s.locationsRefused).toBe(true);
    expect(locationPolicy(h.ctx, "rabbitmq").allowedFileRoots).toEqual([]);
    expect(locationPolicy({ ...h.ctx, fileStorageRoots: ["/data"] }, "rabbitmq").allowedFileRoots).toEqual(["/data"]);
  });
});
