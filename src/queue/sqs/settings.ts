// The run settings of the SQS backend (--sqs-certs or --sqs-default-account, --aws-region,
// --sqs-endpoint, --sqs-visibility): their option specs, their checks, and the backend they make.
// --sqs-certs and --sqs-default-account are exclusive: a certs directory may itself hold an account
// named "default", and one runner serving two identities by accident is worse than a refusal.

import { DEFAULT_MAX_DELIVERIES, type OptionSpec, type RUN_OPTIONS } from "../../config/options.ts";
import { type SettingsOf, type SomeSettings, textSetting } from "../../config/settings.ts";
import type { QueueBackend, QueueFilter } from "../task-queue.ts";
import { AccountError, readAccounts, type SqsAccount } from "./accounts.ts";
import { chainSummary, defaultChainAccount } from "./default-account.ts";
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
    name: "sqs-default-account",
    type: "boolean",
    description:
      "serve SQS with one account, default, whose credentials the AWS SDK's default chain finds " +
      "(AWS_ACCESS_KEY_ID…, AWS_PROFILE and the shared files, web identity, instance role); not with --sqs-certs",
    default: "false",
  },
  {
    name: "aws-region",
    type: "string",
    description:
      "AWS region of the SQS accounts whose config file names none, and of --sqs-default-account " +
      "(then its profile's region)",
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
  const chain = settings["sqs-default-account"] === true;
  const problems: string[] = [];
  if (!certs && !chain) {
    if (textSetting(settings["sqs-endpoint"]))
      problems.push("--sqs-endpoint is set but neither --sqs-certs nor --sqs-default-account is");
    return problems;
  }
  if (certs && chain)
    problems.push(
      "--sqs-certs and --sqs-default-account are both set: choose one " +
        "(the accounts of the directory, or the AWS SDK's default credential chain)",
    );
  if (certs) {
    try {
      readAccounts(certs);
    } catch (err) {
      if (!(err instanceof AccountError)) throw err;
      problems.push(`--sqs-certs: ${err.message}`);
    }
  }
  const endpoint = endpointOf(settings, env);
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint))
    problems.push(`SQS endpoint ${JSON.stringify(endpoint)} must start with http:// or https://`);
  const visibility = settings["sqs-visibility"];
  if (typeof visibility === "number" && (visibility < MIN_VISIBILITY_MS || visibility > MAX_VISIBILITY_MS))
    problems.push("--sqs-visibility must be between 2s and 12h");
  return problems;
}

/** The accounts to serve: those of --sqs-certs, or the one of --sqs-default-account (logged, without secrets). */
function accountsOf(settings: SqsSettings, log: QueueLog, env: Record<string, string | undefined>): SqsAccount[] {
  const certs = textSetting(settings["sqs-certs"]);
  if (certs) return readAccounts(certs);
  const account = defaultChainAccount(settings["aws-region"], env);
  log.info(
    `SQS account ${account.name}: credentials from ${chainSummary(env)}; ` +
      `region ${account.region} (from ${account.regionFrom})`,
  );
  return [{ name: account.name, region: account.region }];
}

/** The backend when --sqs-certs or --sqs-default-account is set (settings already checked), else undefined;
 * filter: a live queue filter read at each discovery. */
export function sqsBackendFromSettings(
  settings: SqsSettings,
  log: QueueLog,
  env: Record<string, string | undefined> = process.env,
  filter?: QueueFilter,
): QueueBackend | undefined {
  if (!textSetting(settings["sqs-certs"]) && settings["sqs-default-account"] !== true) return undefined;
  const visibility = settings["sqs-visibility"];
  return new SqsQueueBackend({
    accounts: accountsOf(settings, log, env),
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
