// The one place an attempt's delivery is settled: ack a finished experiment, give back what the
// runner could not finish (shutdown, a newer attempt, an infrastructure fault), keep in the failed
// place what the request itself got wrong.

import type { Logger } from "../log/logger.ts";
import type { Delivery } from "../queue/task-queue.ts";
import type { Ending } from "./attempt-state.ts";

export type AttemptOutcome =
  | { kind: "finished"; exitCode: number | null; reason: string }
  | { kind: "requeued" | "failed"; reason: string }
  | { kind: "rejected"; reason: string };

/** `who` names the attempt in the runner's log ("experiment KEY", or queue/id before the key is known). */
export async function settle(delivery: Delivery, ending: Ending, log: Logger, who: string): Promise<AttemptOutcome> {
  switch (ending.kind) {
    case "finished":
      await delivery.ack();
      log.info(`${who} finished: ${ending.reason}`, { exitCode: ending.exit.code });
      return { kind: "finished", exitCode: ending.exit.code, reason: ending.reason };
    case "shutdown": {
      const outcome = await delivery.nack(ending.reason, { countDelivery: false });
      log.info(`${who} checkpointed and requeued for shutdown`);
      return { kind: outcome, reason: ending.reason };
    }
    case "superseded": {
      log.warn(`${who}: ${ending.reason}`);
      const outcome = await delivery.nack(ending.reason, { countDelivery: false }).catch(() => "requeued" as const);
      return { kind: outcome, reason: ending.reason };
    }
    case "fault":
      if (ending.fault.retryable) {
        const outcome = await delivery.nack(ending.reason);
        log.warn(`${who}: ${ending.reason}; ${outcome === "requeued" ? "requeued" : "moved to the failed place"}`);
        return { kind: outcome, reason: ending.reason };
      }
      await delivery.reject(ending.reason);
      log.error(`${who} rejected: ${ending.reason}`);
      return { kind: "rejected", reason: ending.reason };
  }
}
