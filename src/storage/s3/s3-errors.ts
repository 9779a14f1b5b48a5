// Turns S3 SDK errors into runner faults: not found, credentials refused (permanent, naming the
// bucket and server), or infrastructure trouble worth retrying.

import { NotFoundError, PermanentError, RetryableError, RunnerFault } from "../../errors.ts";

export type S3ErrorContext = {
  /** What was being done: "GET s3://host/bucket/key". */
  operation: string;
  location: string;
  bucket: string;
  server: string;
  identity: string;
};

type SdkError = Error & { Code?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };

const REFUSED = new Set([
  "AccessDenied",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "InvalidToken",
  "ExpiredToken",
  "TokenRefreshRequired",
  "AllAccessDisabled",
  "AccountProblem",
  "InvalidSecurity",
  "Forbidden",
]);
const RETRYABLE = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
  "RequestTimeoutException",
  "PreconditionFailed",
  "OperationAborted",
]);
const WRONG_REGION = new Set([
  "PermanentRedirect",
  "AuthorizationHeaderMalformed",
  "IllegalLocationConstraintException",
]);

function codeOf(err: SdkError): string {
  const code = err.Code ?? err.name;
  return code === "Error" || code === "UnknownError" || code === "Unknown" ? "" : code;
}

/** The fault for an SDK error; secrets never appear (the SDK's messages hold none). */
export function s3Fault(err: unknown, ctx: S3ErrorContext): RunnerFault {
  if (err instanceof RunnerFault) return err;
  const e = (err instanceof Error ? err : new Error(String(err))) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  const code = codeOf(e);
  const detail =
    `${code || (status ? `HTTP ${status}` : e.name)}` +
    `${e.message && e.message !== code && e.message !== "UnknownError" ? `: ${e.message}` : ""}`;
  const cause = { cause: err };

  if (code === "NoSuchBucket") {
    return new PermanentError(`${ctx.operation}: bucket "${ctx.bucket}" does not exist on ${ctx.server}`, {}, cause);
  }
  if (code === "NoSuchKey" || code === "NotFound" || status === 404) return new NotFoundError(ctx.location);
  if (
    RETRYABLE.has(code) ||
    e.code === "ECONNRESET" ||
    e.code === "ECONNREFUSED" ||
    e.code === "ETIMEDOUT" ||
    e.code === "EPIPE"
  ) {
    return new RetryableError(`${ctx.operation} failed (server ${ctx.server}): ${detail}`, {}, cause);
  }
  if (REFUSED.has(code) || status === 403 || status === 401) {
    return new PermanentError(
      `${ctx.operation}: ${ctx.server} refused ${ctx.identity} for bucket "${ctx.bucket}" (${detail}). ` +
        "Check the credentials and their permissions" +
        `${status === 403 && !code ? "; without s3:ListBucket a missing object also reads as access denied" : ""}`,
      {},
      cause,
    );
  }
  if (WRONG_REGION.has(code) || status === 301) {
    return new PermanentError(
      `${ctx.operation}: bucket "${ctx.bucket}" on ${ctx.server} is in another region (${detail}); set the ` +
        "credentials' region or AWS_REGION",
      {},
      cause,
    );
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new PermanentError(`${ctx.operation} refused by ${ctx.server}: ${detail}`, {}, cause);
  }
  return new RetryableError(`${ctx.operation} failed (server ${ctx.server}): ${detail}`, {}, cause);
}
