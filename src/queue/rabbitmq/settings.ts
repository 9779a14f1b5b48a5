// The run settings of the RabbitMQ backend (--amqp-url, --amqp-mgt-url, --amqp-queues,
// --amqp-queue-type): checked with the other settings, and turned into a backend.

import { DEFAULT_MAX_DELIVERIES, type RUN_OPTIONS } from "../../config/options.ts";
import { type SomeSettings, textSetting } from "../../config/settings.ts";
import type { QueueFilter } from "../task-queue.ts";
import { AddressError, managementAddress, parseAmqpUrl } from "./broker-address.ts";
import type { QueueLog } from "./delivery.ts";
import { RabbitQueueBackend } from "./rabbitmq-queue.ts";
import { commaList } from "../../config/comma-list.ts";

/** The settings the RabbitMQ backend reads. */
export type RabbitSettings = SomeSettings<
  typeof RUN_OPTIONS,
  "amqp-url" | "amqp-mgt-url" | "amqp-queues" | "amqp-queue-type" | "max-deliveries" | "queue-match" | "queue-mismatch"
>;

/** Problems with the RabbitMQ settings, worded like the other configuration problems (no passwords). */
export function rabbitSettingsProblems(settings: RabbitSettings): string[] {
  const url = textSetting(settings["amqp-url"]);
  const problems: string[] = [];
  if (!url) {
    for (const name of ["amqp-mgt-url", "amqp-queues"] as const)
      if (textSetting(settings[name])) problems.push(`--${name} is set but --amqp-url is not`);
    return problems;
  }
  try {
    const address = parseAmqpUrl(url);
    try {
      managementAddress(address, textSetting(settings["amqp-mgt-url"]));
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

export function fallbackQueueList(settings: RabbitSettings): string[] {
  return commaList(textSetting(settings["amqp-queues"]));
}

/** The backend when --amqp-url is set (settings already checked); filter: a live queue filter read at each
 * discovery. */
export function rabbitBackendFromSettings(
  settings: RabbitSettings,
  log: QueueLog,
  filter?: QueueFilter,
): RabbitQueueBackend | undefined {
  const url = textSetting(settings["amqp-url"]);
  if (!url) return undefined;
  return new RabbitQueueBackend({
    url,
    managementUrl: textSetting(settings["amqp-mgt-url"]),
    fallbackQueues: fallbackQueueList(settings),
    queueType: settings["amqp-queue-type"] ?? "classic",
    maxDeliveries: settings["max-deliveries"] ?? DEFAULT_MAX_DELIVERIES,
    match: settings["queue-match"],
    mismatch: settings["queue-mismatch"],
    filter,
    log,
  });
}
