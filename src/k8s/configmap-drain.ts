// Applies the drain ConfigMap to the runner: STATE moves it between running, suspended and
// terminating (applied when the map's STATE changes, so a SIGUSR1/SIGUSR2 given since is not
// undone by an unrelated edit of the map); QUEUE_MATCH / QUEUE_MISMATCH replace the live queue
// filter at once. A value that cannot be used is logged with its key and value, and the previous
// setting is kept.

import type { RunnerState } from "../observe/events.ts";
import type { LiveQueueFilter } from "../queue/live-filter.ts";
import type { Logger } from "../log/logger.ts";
import type { ConfigMapData } from "./configmap-watch.ts";
import { DrainStateError, filterOverrideOf, runnerStateOf, STATE_KEY } from "./drain-state.ts";

/** What the map steers: the runner's maintenance state. */
export type StateTarget = { setState(state: RunnerState, reason: string): void };

export class ConfigMapDrain {
  /** The STATE text last acted on ("" for none); undefined before the map was first read. */
  private lastState: string | undefined;

  constructor(
    private readonly target: StateTarget,
    private readonly filter: LiveQueueFilter,
    private readonly log: Pick<Logger, "info" | "error">,
    /** Names the map in log lines and state reasons, e.g. "ConfigMap studio/studioml-go-runner". */
    private readonly where: string,
  ) {}

  /**
   * The map's data now (undefined: the map does not exist). source names where the data came
   * from in log lines and state reasons, when not the map given to the constructor.
   */
  apply(data: ConfigMapData | undefined, source: string = this.where): void {
    const { changes, problems } = this.filter.apply(filterOverrideOf(data));
    for (const p of problems)
      this.log.error(
        `${source}: ${p.message}; ` +
          `keeping ${describe(p.field === "QUEUE_MATCH" ? this.filter.match : this.filter.mismatch)}`,
      );
    if (changes.length) this.log.info(`${source}: ${changes.join("; ")} (applies from the next queue discovery)`);
    const stateText = data?.[STATE_KEY]?.trim() ?? "";
    if (this.lastState === undefined && stateText === "") {
      this.lastState = "";
      return; // nothing asked at start: the runner keeps its state
    }
    if (stateText === this.lastState) return;
    this.lastState = stateText;
    try {
      const state = runnerStateOf(stateText || undefined);
      this.target.setState(
        state,
        stateText ? `${source} ${STATE_KEY}=${stateText}` : `${source} no longer sets ${STATE_KEY}`,
      );
    } catch (err) {
      if (!(err instanceof DrainStateError)) throw err;
      this.log.error(`${source}: ${err.message}`);
    }
  }
}

const describe = (re: RegExp | undefined) => (re ? `/${re.source}/` : "no regex");
