// The SQS account of --sqs-default-account: named "default", with no credentials of its own, so the
// SQS client gets none and the AWS SDK's default chain finds them (AWS_ACCESS_KEY_ID…, AWS_PROFILE
// with the shared credentials/config files, web identity from AWS_WEB_IDENTITY_TOKEN_FILE +
// AWS_ROLE_ARN, the container or instance role). The region is chosen here, once, so that logs can
// say which it is and where it came from: --aws-region, AWS_REGION, AWS_DEFAULT_REGION, the
// profile's region in the shared files, else us-east-1. Nothing here reads or logs a secret.

import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { SqsAccount } from "./accounts.ts";
import { parseIni } from "./accounts.ts";

export const DEFAULT_ACCOUNT_NAME = "default";
export const FALLBACK_REGION = "us-east-1";

type Env = Record<string, string | undefined>;

/** A region and where it was found, for the start-up log. */
export type ChosenRegion = { region: string; from: string };

const setting = (v: string | undefined) => v?.trim() || undefined;

/** The shared files the SDK reads: AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/…. */
function sharedFiles(env: Env): { config: string; credentials: string } {
  const home = setting(env.HOME) ?? homedir();
  return {
    config: setting(env.AWS_CONFIG_FILE) ?? join(home, ".aws", "config"),
    credentials: setting(env.AWS_SHARED_CREDENTIALS_FILE) ?? join(home, ".aws", "credentials"),
  };
}

/** The `region` of a profile in one ini file, or undefined (unreadable files count as absent). */
function regionIn(file: string, profile: string): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return setting(parseIni(readFileSync(file, "utf8")).get(profile)?.get("region"));
  } catch {
    return undefined;
  }
}

/** The region of the default account, first of: flag, AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1. */
export function defaultAccountRegion(flagRegion: string | undefined, env: Env): ChosenRegion {
  const flag = setting(flagRegion);
  // The run command reads AWS_REGION into --aws-region itself (its variable), so either may be the source.
  if (flag) return { region: flag, from: "--aws-region or AWS_REGION" };
  for (const name of ["AWS_REGION", "AWS_DEFAULT_REGION"]) {
    const value = setting(env[name]);
    if (value) return { region: value, from: name };
  }
  const profile = setting(env.AWS_PROFILE) ?? "default";
  const files = sharedFiles(env);
  for (const file of [files.config, files.credentials]) {
    const region = regionIn(file, profile);
    if (region) return { region, from: `profile ${profile} in ${file}` };
  }
  return { region: FALLBACK_REGION, from: "the default" };
}

/** The one account of --sqs-default-account: no credentials, so the SDK's default chain supplies them. */
export function defaultChainAccount(flagRegion: string | undefined, env: Env): SqsAccount & { regionFrom: string } {
  const chosen = defaultAccountRegion(flagRegion, env);
  return { name: DEFAULT_ACCOUNT_NAME, region: chosen.region, regionFrom: chosen.from };
}

/** Which sources the chain may use here, by name only (never a value), for the start-up log. */
export function chainSummary(env: Env): string {
  const present: string[] = [];
  if (setting(env.AWS_ACCESS_KEY_ID)) present.push("AWS_ACCESS_KEY_ID");
  if (setting(env.AWS_PROFILE)) present.push(`AWS_PROFILE=${setting(env.AWS_PROFILE)}`);
  if (setting(env.AWS_WEB_IDENTITY_TOKEN_FILE) && setting(env.AWS_ROLE_ARN)) present.push("web identity");
  const found = present.length ? `; set here: ${present.join(", ")}` : "";
  return (
    "the AWS SDK's default credential chain (environment, shared profile files, web identity, " +
    `container or instance role)${found}`
  );
}
