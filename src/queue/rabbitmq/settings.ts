// The run settings of the RabbitMQ backend (--amqp-url, --amqp-mgt-url, --amqp-queues,
// --amqp-queue-type): checked with the other settings, and turned into a backend.

import type { Settings } from "../../config/load.ts";
import type { QueueFilter } from "../task-queue.ts";
import { AddressError, managementAddress, parseAmqpUrl } from "./broker-address.ts";
import type { QueueType } from "./conventions.ts";
import type { QueueLog } from "./delivery.ts";
import { RabbitQueueBackend } from "./rabbitmq-queue.ts";
import { commaList } from "../../config/comma-list.ts";

const text = (settings: Settings, name: string) => {
  const v = settings[name];
  return typeof v === "string" && v.trim() ? v.trim() : undefined;
};

/** Problems with the RabbitMQ settings, worded like the other configuration problems (no passwords). */
export function rabbitSettingsProblems(settings: Settings): string[] {
  const url = text(settings, "amqp-url");
  const problems: string[] = [];
  if (!url) {
    for (const name of ["amqp-mgt-url", "amqp-queues"])
      if (text(settings, name)) problems.push(`--${name} is set but --amqp-url is not`);
    return problems;
  }
  try {
    const address = parseAmqpUrl(url);
    try {
      managementAddress(address, text(settings, "amqp-mgt-url"));
    } catch (err) {
      if (!(err instanceof AddressError)) throw err;
      problems.push(`--amqp-mgt-url: ${err.message}`);
    }
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    problems.push(`--amqp-url: ${err.message}`);
  }
  return problems;
}

export function fallbackQueueList(settings: Settings): string[] {
  return commaList(text(settings, "amqp-queues"));
}

/** The backend when --amqp-url is set (settings already checked); filter: a live queue filter read at each discovery. */
export function rabbitBackendFromSettings(
  settings: Settings,
  log: QueueLog,
  filter?: QueueFilter,
): RabbitQueueBackend | undefined {
  const url = text(settings, "amqp-url");
  if (!url) return undefined;
  return new RabbitQueueBackend({
    url,
    managementUrl: text(settings, "amqp-mgt-url"),
    fallbackQueues: fallbackQueueList(settings),
    queueType: (settings["amqp-queue-type"] as QueueType | undefined) ?? "classic",
    maxDeliveries: settings["max-deliveries"] as number,
    match: settings["queue-match"] as RegExp | undefined,
    mismatch: settings["queue-mismatch"] as RegExp | undefined,
    filter,
    log,
  });
}
