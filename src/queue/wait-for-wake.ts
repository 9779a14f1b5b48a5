// The shape of QueueBackend.waitForWork: a bounded wait that ends early on abort or when one of
// the backend's wakers is called.

export function waitForWake(ms: number, signal?: AbortSignal, wakers?: Set<() => void>): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      wakers?.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
    wakers?.add(done);
  });
}
