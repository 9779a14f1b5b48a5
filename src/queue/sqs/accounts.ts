// SQS accounts: each sub-directory of --sqs-certs holds AWS `credentials` and `config` files (profile default).

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export type SqsAccount = {
  /** The sub-directory name, or "default" for the SDK's own chain; used in logs. */
  name: string;
  region?: string;
  /** Absent: the SDK's default chain (environment, ~/.aws, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
};

export class AccountError extends Error {}

/** The [section] → key → value map of an AWS ini file. */
export function parseIni(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+|\s+$/g, "");
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1]!.trim().replace(/^profile\s+/, "");
      current = sections.get(name) ?? new Map();
      sections.set(name, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq > 0 && current) current.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return sections;
}

/** One account from a directory holding `credentials` and/or `config` (profile `default`). */
export function readAccount(dir: string, name: string): SqsAccount {
  const credentialsFile = join(dir, "credentials");
  const configFile = join(dir, "config");
  if (!existsSync(credentialsFile)) throw new AccountError(`${dir}: no credentials file`);
  const credentials = parseIni(readFileSync(credentialsFile, "utf8")).get("default");
  const id = credentials?.get("aws_access_key_id");
  const secret = credentials?.get("aws_secret_access_key");
  if (!id || !secret)
    throw new AccountError(`${credentialsFile}: profile [default] needs aws_access_key_id and aws_secret_access_key`);
  const config = existsSync(configFile) ? parseIni(readFileSync(configFile, "utf8")).get("default") : undefined;
  const token = credentials?.get("aws_session_token");
  return {
    name,
    region: config?.get("region") || credentials?.get("region") || undefined,
    credentials: { accessKeyId: id, secretAccessKey: secret, ...(token ? { sessionToken: token } : {}) },
  };
}

/** Every account under the --sqs-certs directory, in name order; throws AccountError listing what is wrong. */
export function readAccounts(certsDir: string): SqsAccount[] {
  if (!existsSync(certsDir) || !statSync(certsDir).isDirectory())
    throw new AccountError(`${certsDir} is not a directory`);
  const names = readdirSync(certsDir)
    .filter((n) => !n.startsWith(".") && statSync(join(certsDir, n)).isDirectory())
    .sort();
  if (!names.length)
    throw new AccountError(`${certsDir} has no account sub-directories (each with credentials and config files)`);
  return names.map((n) => readAccount(join(certsDir, n), n));
}
