// What a delivered request must pass before it runs, besides its envelope: its age
// (--max-request-age, by experiment.time_added, which the client sets and, for envelopes, signs)
// and replay protection (a completed experiment's key is not run again). Refusals are the
// request's fault: the runner keeps it in the failed place with the reason.

import { formatDuration } from "../config/units.ts";
import type { Delivery } from "../queue/task-queue.ts";
import type { Request } from "./model.ts";
import type { ReplayGuard } from "./replay-guard.ts";

export type AdmissionOptions = {
  /** --max-request-age; 0 = no limit. */
  maxAgeMs: number;
  replay?: ReplayGuard;
  now?: () => number;
};

export class RequestAdmission {
  private readonly now: () => number;

  constructor(private readonly options: AdmissionOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Why this delivery must be refused, or undefined. The age is checked on a first delivery only:
   * a message the broker delivers again (after a runner fault or a crash), or one this runner
   * started before and gave back uncounted (a drain), was accepted young.
   */
  refusal(request: Request, delivery: Pick<Delivery, "body" | "deliveryCount">): string | undefined {
    const maxAgeMs = this.options.maxAgeMs;
    // Given back uncounted (a drain) after it started here: it was accepted young.
    const startedHere = this.options.replay?.wasStarted(request.experiment.key) ?? false;
    if (maxAgeMs > 0 && delivery.deliveryCount <= 1 && !startedHere) {
      const added = request.experiment.timeAddedMs;
      if (added === undefined)
        return (
          "experiment.time_added: (missing) is required while --max-request-age is set " +
          `(${formatDuration(maxAgeMs)}): the request's age cannot be told`
        );
      const ageMs = this.now() - added;
      if (ageMs > maxAgeMs) {
        return (
          `experiment.time_added: ${added / 1000} (${new Date(added).toISOString()}) ` +
          `makes the request ${formatDuration(ageMs)} old, ` +
          `older than --max-request-age ${formatDuration(maxAgeMs)}: refused`
        );
      }
    }
    return this.options.replay?.refusal(request.experiment.key, delivery.body);
  }

  /** Admitted: the experiment is recorded as started, and as completed once the delivery's ack succeeds. */
  track(delivery: Delivery, request: Request): Delivery {
    const replay = this.options.replay;
    if (!replay) return delivery;
    replay.started(request.experiment.key, request.experiment.timeAddedMs);
    return {
      get id() {
        return delivery.id;
      },
      get queue() {
        return delivery.queue;
      },
      get body() {
        return delivery.body;
      },
      get deliveryCount() {
        return delivery.deliveryCount;
      },
      get revoked() {
        return delivery.revoked;
      },
      extendLease: () => delivery.extendLease(),
      ack: async () => {
        await delivery.ack();
        replay.completed(request.experiment.key, delivery.body, request.experiment.timeAddedMs);
      },
      nack: (reason, options) => delivery.nack(reason, options),
      reject: (reason) => delivery.reject(reason),
    };
  }
}
