// What one `doctor` check found: a line of the table (name, status, what was seen) and, when it is
// not OK, what the operator can do about it.

export type CheckStatus = "ok" | "warn" | "fail";

export type CheckResult = {
  /** Short name of what was checked ("python", "queue rabbitmq", "disk cache-dir" …). */
  name: string;
  status: CheckStatus;
  /** What was found: versions, paths, counts, or the error. Never a secret. */
  detail: string;
  /** How to fix a failure or warning. */
  fix?: string;
};

export const ok = (name: string, detail: string): CheckResult => ({ name, status: "ok", detail });
export const warn = (name: string, detail: string, fix?: string): CheckResult => ({
  name,
  status: "warn",
  detail,
  fix,
});
export const fail = (name: string, detail: string, fix?: string): CheckResult => ({
  name,
  status: "fail",
  detail,
  fix,
});

/** The promise, or a rejection naming `what` after timeoutMs. */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer within ${Math.round(timeoutMs / 1000)} s`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
