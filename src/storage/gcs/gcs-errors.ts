// Turns @google-cloud/storage errors into runner faults: not found, credentials refused (permanent,
// naming the bucket), or infrastructure trouble worth retrying.

import { NotFoundError, PermanentError, RetryableError, RunnerFault } from "../../errors.ts";

export type GcsErrorContext = {
  /** What was being done: "GET gs://bucket/key". */
  operation: string;
  location: string;
  bucket: string;
  /** For messages: "Google Cloud Storage", or the custom endpoint's URL. */
  server: string;
  /** Who the requests are made as, for messages (never a secret). */
  identity: string;
};

type LibraryError = Error & { code?: number | string; status?: number; response?: { status?: number } };

const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNABORTED",
  "ERR_STREAM_PREMATURE_CLOSE",
]);
/** The library's own integrity failures: the bytes were damaged or cut short on the way. */
const INTEGRITY_CODES = new Set(["CONTENT_DOWNLOAD_MISMATCH", "FILE_NO_UPLOAD", "FILE_NO_UPLOAD_DELETE"]);

function statusOf(e: LibraryError): number | undefined {
  if (typeof e.code === "number") return e.code;
  if (typeof e.response?.status === "number") return e.response.status;
  if (typeof e.status === "number") return e.status;
  return undefined;
}

/** First line of a message, shortened: library messages may carry whole response bodies. */
const brief = (message: string) => {
  const line = message.split("\n")[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
};

/** Whether the server refused the caller (401/403): another identity may be accepted. */
export function isAccessDenied(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof RunnerFault) return false;
  const status = statusOf(err as LibraryError);
  return status === 401 || status === 403;
}

/** The fault for a library error; secrets never appear (the library's messages hold none). */
export function gcsFault(err: unknown, ctx: GcsErrorContext): RunnerFault {
  if (err instanceof RunnerFault) return err;
  const e = (err instanceof Error ? err : new Error(String(err))) as LibraryError;
  const status = statusOf(e);
  const code = typeof e.code === "string" ? e.code : "";
  const label = status ? `HTTP ${status}` : code || e.name;
  const text = e.message ? brief(e.message) : "";
  const detail = text.startsWith(label) ? text : `${label}${text ? `: ${text}` : ""}`;
  const cause = { cause: err };

  if (status === 404) {
    if (/bucket/i.test(e.message) && !/object|no such key/i.test(e.message)) {
      return new PermanentError(
        `${ctx.operation}: bucket "${ctx.bucket}" does not exist on ${ctx.server} (${detail})`,
        {},
        cause,
      );
    }
    return new NotFoundError(ctx.location);
  }
  if (status === 401 || status === 403) {
    return new PermanentError(
      `${ctx.operation}: ${ctx.server} refused ${ctx.identity} for bucket "${ctx.bucket}" (${detail}). Check the ` +
        "service account and its permissions on the bucket",
      {},
      cause,
    );
  }
  if (
    /Could not load the default credentials|Could not refresh access token|invalid_grant|No key or keyFile set/i.test(
      e.message,
    )
  ) {
    return new PermanentError(
      `${ctx.operation}: no usable Google credentials for bucket "${ctx.bucket}" (${detail})`,
      {},
      cause,
    );
  }
  if (
    INTEGRITY_CODES.has(code) ||
    NETWORK_CODES.has(code) ||
    status === undefined ||
    status === 408 ||
    status === 429 ||
    status >= 500
  ) {
    return new RetryableError(`${ctx.operation} failed (${ctx.server}, bucket "${ctx.bucket}"): ${detail}`, {}, cause);
  }
  return new PermanentError(`${ctx.operation} refused by ${ctx.server} (bucket "${ctx.bucket}"): ${detail}`, {}, cause);
}
