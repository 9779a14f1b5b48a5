// Fences an experiment's results by attempt: each attempt records itself next to the
// experiment's output in storage when it starts, and checks before every upload that no newer
// attempt has taken over since. A runner that lost its lease (and whose request is now being run
// by another attempt) then stops instead of overwriting the newer attempt's results.
// The check and the upload that follows are not one atomic step: the window is one upload long.

import { Readable } from "node:stream";
import { PermanentError } from "../errors.ts";
import type { Request } from "../request/model.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import { storeOf, type StorageAccess } from "./artifacts.ts";

/** Another attempt of the same experiment took over: this one must not upload or ack. */
export class SupersededError extends PermanentError {}

export type AttemptMark = { attempt: string; delivery: number; host: string; runnerId: string; startedAt: string };

/** The marker's name, beside output.tar. */
export const ATTEMPT_MARKER = "_studio_runner_attempt.json";

export class AttemptFence {
  private claimed = false;

  private constructor(
    private readonly store: ObjectStore,
    readonly location: string,
    readonly mark: AttemptMark,
  ) {}

  /** The fence for a request, kept beside its output artifact; none when it has no output. */
  static for(request: Request, access: StorageAccess, mark: AttemptMark): AttemptFence | undefined {
    const output = request.experiment.artifacts.output;
    if (!output?.mutable || !/\/[^/]+$/.test(output.qualified)) return undefined;
    const location = output.qualified.replace(/\/[^/]+$/, `/${ATTEMPT_MARKER}`);
    return new AttemptFence(storeOf(output, request, access), location, mark);
  }

  /** This attempt is now the experiment's current one. */
  async claim(): Promise<void> {
    await this.store.put(this.location, Readable.from([Buffer.from(JSON.stringify(this.mark))]));
    this.claimed = true;
  }

  /** Throws SupersededError when another attempt has claimed the experiment since. */
  async check(): Promise<void> {
    if (!this.claimed) return;
    const current = await this.read();
    if (!current || current.attempt === this.mark.attempt) return;
    throw new SupersededError(
      `superseded by a newer attempt of this experiment (delivery ${current.delivery} on ${current.host}, ` +
        `started ${current.startedAt}): this attempt stops without uploading`,
    );
  }

  private async read(): Promise<AttemptMark | undefined> {
    if (!(await this.store.head(this.location))) return undefined;
    const chunks: Buffer[] = [];
    for await (const c of await this.store.get(this.location)) chunks.push(Buffer.from(c as Uint8Array));
    try {
      return JSON.parse(Buffer.concat(chunks).toString("utf8")) as AttemptMark;
    } catch {
      return undefined;
    }
  }
}
