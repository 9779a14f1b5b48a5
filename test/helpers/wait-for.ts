// The tests' one way to wait for something to happen: poll a probe until it gives a truthy value
// (undefined, null, false, 0 and "" count as "not yet", and so does a probe that throws), or fail
// naming what was awaited. Tests wait for the event itself this way instead of sleeping a fixed time.

type NotYet = undefined | null | false | 0 | "";
export type Probe<T> = () => T | NotYet | Promise<T | NotYet>;

export async function waitFor<T>(what: string, probe: Probe<T>, timeoutMs = 120_000, everyMs = 100): Promise<T> {
  const deadlineMs = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (value) return value as T;
    if (Date.now() > deadlineMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}
