// The run settings of encrypted and signed requests (--encrypt-dir, --request-signatures-dir,
// --response-signatures-dir, --clear-text-messages): their option specs, start-up checks and the keys they make.

import { statSync } from "node:fs";
import type { OptionSpec } from "../../config/options.ts";
import { type SettingsOf, textSetting } from "../../config/settings.ts";
import { KeyDirectories } from "./keys.ts";

export const ENVELOPE_OPTIONS = [
  {
    name: "encrypt-dir",
    type: "path",
    description:
      "open encrypted requests: directory with encryption/ssh-privatekey (PEM RSA key, passphrase-protected) " +
      "and passphrase/ssh-passphrase, as the Go runner mounts them",
  },
  {
    name: "request-signatures-dir",
    type: "path",
    description:
      "verify signed requests: one file per queue-name prefix (the file name) holding an `ssh-ed25519 AAAA…` " +
      "public key; the longest prefix wins",
  },
  {
    name: "response-signatures-dir",
    type: "path",
    description:
      "encrypt reports to <queue>_response: one file per queue-name prefix " +
      "holding the experimenter's PEM RSA public key",
  },
  {
    name: "clear-text-messages",
    type: "boolean",
    description: "accept plain (unencrypted) requests; false refuses them",
    defaultText:
      "true without --encrypt-dir, false with it " +
      "(a runner that decrypts accepts plain requests only when this is set to true explicitly)",
  },
] as const satisfies readonly OptionSpec[];

/** The envelope settings, any of them possibly absent. */
export type EnvelopeOptionSettings = Partial<SettingsOf<typeof ENVELOPE_OPTIONS>>;

/** True when plain requests are accepted: as set, else only when no --encrypt-dir is set. */
export function clearTextAllowed(settings: EnvelopeOptionSettings): boolean {
  const explicit = settings["clear-text-messages"];
  if (typeof explicit === "boolean") return explicit;
  return !textSetting(settings["encrypt-dir"]);
}

/** Problems with the envelope settings: unreadable directories or keys (never a secret). */
export function envelopeSettingsProblems(settings: EnvelopeOptionSettings): string[] {
  const problems: string[] = [];
  for (const name of ["encrypt-dir", "request-signatures-dir", "response-signatures-dir"] as const) {
    const dir = textSetting(settings[name]);
    if (!dir) continue;
    try {
      if (!statSync(dir).isDirectory()) problems.push(`--${name}: ${dir} is not a directory`);
    } catch (err) {
      problems.push(`--${name}: ${(err as Error).message}`);
    }
  }
  if (problems.length) return problems;
  const keys = envelopeKeysFromSettings(settings);
  if (keys) problems.push(...keys.problems());
  if (settings["clear-text-messages"] === false && !textSetting(settings["encrypt-dir"])) {
    problems.push("--clear-text-messages=false needs --encrypt-dir: no request could be accepted");
  }
  if (textSetting(settings["encrypt-dir"]) && !textSetting(settings["request-signatures-dir"])) {
    problems.push("--encrypt-dir needs --request-signatures-dir: encrypted requests must be signed");
  }
  return problems;
}

/** The keys when any envelope directory is set, else undefined (plain requests only). */
export function envelopeKeysFromSettings(
  settings: EnvelopeOptionSettings,
  onProblem?: (problem: string) => void,
): KeyDirectories | undefined {
  const encryptDir = textSetting(settings["encrypt-dir"]);
  const requestSignaturesDir = textSetting(settings["request-signatures-dir"]);
  const responseSignaturesDir = textSetting(settings["response-signatures-dir"]);
  if (!encryptDir && !requestSignaturesDir && !responseSignaturesDir) return undefined;
  return new KeyDirectories({ encryptDir, requestSignaturesDir, responseSignaturesDir, onProblem });
}
