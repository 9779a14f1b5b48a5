// Turns AWS SDK errors of SQS calls into typed runner faults: refused credentials are permanent, the rest retryable
// (credentials the SDK's default chain could not find yet too: a role or a mounted token may still come).

import { PermanentError, RetryableError, type RunnerFault } from "../../errors.ts";

const ACCESS_REFUSED = new Set([
  "AccessDenied",
  "AccessDeniedException",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "InvalidSecurity",
  "AuthFailure",
  "ExpiredToken",
  "MissingAuthenticationToken",
  "KMS.AccessDeniedException",
]);

const MISSING_QUEUE = new Set(["QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"]);

/** SQS says the queue does not exist. */
export class QueueMissingError extends PermanentError {}

function errorName(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string };
  return String(e?.Code ?? e?.name ?? e?.code ?? "Error");
}

/** A fault naming the call, the queue and the endpoint; never credentials. */
export function sqsFault(err: unknown, operation: string, where: string): RunnerFault {
  if (err instanceof PermanentError || err instanceof RetryableError) return err;
  const name = errorName(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const detail = err instanceof Error && err.message && err.message !== name ? `: ${err.message}` : "";
  const text = `SQS ${operation} on ${where} failed (${name}${status ? `, HTTP ${status}` : ""})${detail}`;
  if (MISSING_QUEUE.has(name) || /NonExistentQueue/.test(name)) return new QueueMissingError(text, {}, { cause: err });
  if (name === "CredentialsProviderError")
    return new RetryableError(
      `${text}: no credentials found; the AWS SDK's default chain looks at AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ` +
        "AWS_PROFILE and the shared credentials/config files, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, " +
        "and the container or instance role",
      {},
      { cause: err },
    );
  if (ACCESS_REFUSED.has(name) || status === 403) {
    return new PermanentError(
      `${text}: the credentials were refused; check the account's credentials and its SQS permissions`,
      {},
      { cause: err },
    );
  }
  return new RetryableError(text, {}, { cause: err });
}
