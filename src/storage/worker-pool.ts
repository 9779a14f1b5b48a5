// A fixed number of workers taking turns at shared work (the parts of one transfer): the first
// that fails stops the others (the signal they were given is aborted) and its fault is thrown.

/**
 * Runs `workers` loops of `step` until each says there is nothing left (false). The first step
 * that throws aborts `signal` for every other step and is what this rejects with, once all
 * loops have stopped.
 */
export async function runWorkers(workers: number, step: (signal: AbortSignal) => Promise<boolean>): Promise<void> {
  const stop = new AbortController();
  let failure: { err: unknown } | undefined;
  const loop = async () => {
    while (!stop.signal.aborted && (await step(stop.signal)));
  };
  await Promise.all(
    Array.from({ length: Math.max(1, workers) }, () =>
      loop().catch((err) => {
        failure ??= { err };
        stop.abort();
      }),
    ),
  );
  if (failure) throw failure.err;
}
