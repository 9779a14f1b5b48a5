// The run settings of the Pub/Sub backend (--google-certs, --pubsub-project, and the
// GOOGLE_APPLICATION_CREDENTIALS variable): their option table, their checks, and the backend.

import { GOOGLE_CERTS_OPTION } from "../../config/google-certs.ts";
import { DEFAULT_MAX_DELIVERIES, type OptionSpec, type RUN_OPTIONS } from "../../config/options.ts";
import { type SettingsOf, type SomeSettings, textSetting } from "../../config/settings.ts";
import type { QueueBackend, QueueFilter } from "../task-queue.ts";
import type { QueueLog } from "./delivery.ts";
import { PubsubProjectSet } from "./project-set.ts";
import { scanProjects, validProjectId, type ProjectSettings } from "./service-accounts.ts";
import { existsSync } from "node:fs";

/** --google-certs is declared with the other Google settings; Pub/Sub reads it for its projects. */
export const PUBSUB_OPTIONS = [
  GOOGLE_CERTS_OPTION,
  {
    name: "pubsub-project",
    type: "string",
    description:
      "Google project whose Pub/Sub subscriptions are queues, with GOOGLE_APPLICATION_CREDENTIALS " +
      "or the default credentials (or PUBSUB_EMULATOR_HOST)",
  },
  {
    name: "pubsub-ack-deadline",
    type: "duration",
    description: "ack deadline of a held Pub/Sub message (10s–10m), extended every half deadline while the job runs",
    default: "60s",
  },
] as const satisfies readonly OptionSpec[];

/** The settings the Pub/Sub backend reads. */
export type PubsubSettings = Partial<SettingsOf<typeof PUBSUB_OPTIONS>> &
  SomeSettings<typeof RUN_OPTIONS, "max-deliveries" | "queue-match" | "queue-mismatch">;

/** Pub/Sub's own bounds for an ack deadline. */
const MIN_ACK_DEADLINE_MS = 10_000;
const MAX_ACK_DEADLINE_MS = 600_000;

function projectSettings(settings: PubsubSettings): ProjectSettings {
  return {
    certsDir: textSetting(settings["google-certs"]),
    applicationCredentials: process.env.GOOGLE_APPLICATION_CREDENTIALS?.trim() || undefined,
    project: textSetting(settings["pubsub-project"]),
  };
}

/** Problems with the Pub/Sub settings, worded like the other configuration problems. */
export function pubsubSettingsProblems(settings: PubsubSettings): string[] {
  const ps = projectSettings(settings);
  const problems: string[] = [];
  if (ps.project && !validProjectId(ps.project))
    problems.push(`--pubsub-project: ${JSON.stringify(ps.project)} is not a Google project id`);
  if (ps.project && ps.applicationCredentials && !existsSync(ps.applicationCredentials)) {
    problems.push(`GOOGLE_APPLICATION_CREDENTIALS: ${ps.applicationCredentials} does not exist`);
  }
  if (ps.certsDir) problems.push(...scanProjects({ certsDir: ps.certsDir }).problems);
  const deadline = settings["pubsub-ack-deadline"];
  if (typeof deadline === "number" && (deadline < MIN_ACK_DEADLINE_MS || deadline > MAX_ACK_DEADLINE_MS))
    problems.push("--pubsub-ack-deadline must be between 10s and 10m");
  return problems;
}

/**
 * The backend when --google-certs, --pubsub-project, or a GOOGLE_APPLICATION_CREDENTIALS file
 * naming a project is set (settings already checked). filter: a live queue filter read at each discovery.
 */
export function pubsubBackendFromSettings(
  settings: PubsubSettings,
  log: QueueLog,
  filter?: QueueFilter,
): QueueBackend | undefined {
  const ps = projectSettings(settings);
  if (!ps.certsDir && !ps.project && !scanProjects(ps).projects.length) return undefined;
  return new PubsubProjectSet({
    scan: () => scanProjects(ps),
    maxDeliveries: settings["max-deliveries"] ?? DEFAULT_MAX_DELIVERIES,
    ackDeadlineS:
      settings["pubsub-ack-deadline"] === undefined ? undefined : Math.round(settings["pubsub-ack-deadline"] / 1000),
    match: settings["queue-match"],
    mismatch: settings["queue-mismatch"],
    filter,
    log,
  });
}
