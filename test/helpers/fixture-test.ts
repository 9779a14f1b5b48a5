// Defines tests that each get a fresh fixture, cleaned up whatever the test's outcome.

import { test } from "bun:test";

export function fixtureTest<F extends { cleanup(): Promise<void> }>(
  make: () => F | Promise<F>,
  defaults: { timeoutMs?: number; skip?: boolean } = {},
) {
  return (name: string, fn: (fixture: F) => Promise<void>, timeoutMs = defaults.timeoutMs) =>
    test.skipIf(!!defaults.skip)(
      name,
      async () => {
        const fixture = await make();
        try {
          await fn(fixture);
        } finally {
          await fixture.cleanup();
        }
      },
      timeoutMs,
    );
}
