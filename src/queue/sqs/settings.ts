// The run settings of the SQS backend (--sqs-certs, --aws-region, --sqs-endpoint, --sqs-visibility):
// their option specs, their checks, and the backend they make.

import { DEFAULT_MAX_DELIVERIES, type OptionSpec, type RUN_OPTIONS } from "../../config/options.ts";
import { type SettingsOf, type SomeSettings, textSetting } from "../../config/settings.ts";
import type { QueueBackend, QueueFilter } from "../task-queue.ts";
import { AccountError, readAccounts } from "./accounts.ts";
import type { QueueLog } from "./delivery.ts";
import { SqsQueueBackend } from "./sqs-queue.ts";

/** Minimum lease: a renewal every half lease must have time to land. */
const MIN_VISIBILITY_MS = 2_000;
/** SQS's own maximum for one visibility timeout. */
const MAX_VISIBILITY_MS = 12 * 60 * 60 * 1000;

export const SQS_OPTIONS = [
  {
    name: "sqs-certs",
    type: "path",
    description:
      "serve SQS: a directory with one sub-directory per AWS account, " +
      "each holding AWS `credentials` and `config` files (profile default)",
  },
  {
    name: "aws-region",
    type: "string",
    description: "AWS region of the SQS accounts whose config file names none",
    defaultText: "$AWS_REGION, $AWS_DEFAULT_REGION or us-east-1",
  },
  {
    name: "sqs-endpoint",
    type: "string",
    description: "SQS-compatible server to use instead of AWS, e.g. http://127.0.0.1:4566",
    defaultText: "$AWS_ENDPOINT_URL_SQS or $AWS_ENDPOINT_URL, else AWS",
  },
  {
    name: "sqs-visibility",
    type: "duration",
    description: "visibility lease of a held SQS message, renewed every half lease",
    default: "5m",
  },
] as const satisfies readonly OptionSpec[];

/** The settings the SQS backend reads. */
export type SqsSettings = Partial<SettingsOf<typeof SQS_OPTIONS>> &
  SomeSettings<typeof RUN_OPTIONS, "max-deliveries" | "queue-match" | "queue-mismatch">;

function endpointOf(settings: SqsSettings, env: Record<string, string | undefined>): string | undefined {
  return (
    textSetting(settings["sqs-endpoint"]) ??
    (env.AWS_ENDPOINT_URL_SQS?.trim() || undefined) ??
    (env.AWS_ENDPOINT_URL?.trim() || undefined)
  );
}

/** Problems with the SQS settings, worded like the other configuration problems (never a secret). */
export function sqsSettingsProblems(
  settings: SqsSettings,
  env: Record<string, string | undefined> = process.env,
): string[] {
  const certs = textSetting(settings["sqs-certs"]);
  const problems: string[] = [];
  if (!certs) {
    if (textSetting(settings["sqs-endpoint"])) problems.push("--sqs-endpoint is set but --sqs-certs is not");
    return problems;
  }
  try {
    readAccounts(certs);
  } catch (err) {
    if (!(err instanceof AccountError)) throw err;
    problems.push(`--sqs-certs: ${err.message}`);
  }
  const endpoint = endpointOf(settings, env);
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint))
    problems.push(`SQS endpoint ${JSON.stringify(endpoint)} must start with http:// or https://`);
  const visibility = settings["sqs-visibility"];
  if (typeof visibility === "number" && (visibility < MIN_VISIBILITY_MS || visibility > MAX_VISIBILITY_MS))
    problems.push("--sqs-visibility must be between 2s and 12h");
  return problems;
}

/** The backend when --sqs-certs is set (settings already checked), else undefined; filter: a live queue filter read
 * at each discovery. */
export function sqsBackendFromSettings(
  settings: SqsSettings,
  log: QueueLog,
  env: Record<string, string | undefined> = process.env,
  filter?: QueueFilter,
): QueueBackend | undefined {
  const certs = textSetting(settings["sqs-certs"]);
  if (!certs) return undefined;
  const visibility = settings["sqs-visibility"];
  return new SqsQueueBackend({
    accounts: readAccounts(certs),
    region:
      textSetting(settings["aws-region"]) ??
      (env.AWS_REGION?.trim() || undefined) ??
      (env.AWS_DEFAULT_REGION?.trim() || undefined),
    endpoint: endpointOf(settings, env),
    leaseMs: typeof visibility === "number" && visibility > 0 ? visibility : undefined,
    maxDeliveries: settings["max-deliveries"] ?? DEFAULT_MAX_DELIVERIES,
    match: settings["queue-match"],
    mismatch: settings["queue-mismatch"],
    filter,
    log,
  });
}
