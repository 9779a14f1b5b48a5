// The run settings of the Pub/Sub backend (--google-certs, --pubsub-project, and the
// GOOGLE_APPLICATION_CREDENTIALS variable): their option table, their checks, and the backend.

import type { Settings } from "../../config/load.ts";
import type { OptionSpec } from "../../config/options.ts";
import type { QueueBackend, QueueFilter } from "../task-queue.ts";
import type { QueueLog } from "./delivery.ts";
import { PubsubProjectSet } from "./project-set.ts";
import { scanProjects, validProjectId, type ProjectSettings } from "./service-accounts.ts";
import { existsSync } from "node:fs";

export const PUBSUB_OPTIONS: OptionSpec[] = [
  {
    name: "google-certs",
    type: "path",
    description:
      "directory of Google service-account JSON files, one project each (rescanned); their Pub/Sub subscriptions are queues",
  },
  {
    name: "pubsub-project",
    type: "string",
    description:
      "Google project whose Pub/Sub subscriptions are queues, with GOOGLE_APPLICATION_CREDENTIALS or the default credentials (or PUBSUB_EMULATOR_HOST)",
  },
  {
    name: "pubsub-ack-deadline",
    type: "duration",
    description: "ack deadline of a held Pub/Sub message (10s–10m), extended every half deadline while the job runs",
    default: "60s",
  },
];

/** Pub/Sub's own bounds for an ack deadline. */
const MIN_ACK_DEADLINE_MS = 10_000;
const MAX_ACK_DEADLINE_MS = 600_000;

const text = (settings: Settings, name: string) => {
  const v = settings[name];
  return typeof v === "string" && v.trim() ? v.trim() : undefined;
};

function projectSettings(settings: Settings): ProjectSettings {
  return {
    certsDir: text(settings, "google-certs"),
    applicationCredentials: process.env.GOOGLE_APPLICATION_CREDENTIALS?.trim() || undefined,
    project: text(settings, "pubsub-project"),
  };
}

/** Problems with the Pub/Sub settings, worded like the other configuration problems. */
export function pubsubSettingsProblems(settings: Settings): string[] {
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
  settings: Settings,
  log: QueueLog,
  filter?: QueueFilter,
): QueueBackend | undefined {
  const ps = projectSettings(settings);
  if (!ps.certsDir && !ps.project && !scanProjects(ps).projects.length) return undefined;
  return new PubsubProjectSet({
    scan: () => scanProjects(ps),
    maxDeliveries: settings["max-deliveries"] as number,
    ackDeadlineS:
      typeof settings["pubsub-ack-deadline"] === "number"
        ? Math.round(settings["pubsub-ack-deadline"] / 1000)
        : undefined,
    match: settings["queue-match"] as RegExp | undefined,
    mismatch: settings["queue-mismatch"] as RegExp | undefined,
    filter,
    log,
  });
}
