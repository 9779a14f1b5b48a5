// Reports for local directory queues: each report is a file in `<root>/<queue>_response/`, written
// beside and renamed into place (readers never see half a report), named so that the names sort
// in the order the reports were sent. Sent only when that directory exists.

import { stat, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { responseQueueName, type ResponsePublisher, type ResponseTarget } from "../response-publisher.ts";

const SEQUENCE_DIGITS = 9;

export class LocalResponsePublisher implements ResponsePublisher {
  readonly kind = "local";
  private sequence = 0;

  constructor(private readonly root: string) {}

  async target(workQueue: string): Promise<ResponseTarget | undefined> {
    if (workQueue.includes("/") || workQueue.startsWith(".")) return undefined;
    const dir = join(this.root, responseQueueName(workQueue));
    try {
      if (!(await stat(dir)).isDirectory()) return undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return {
      where: dir,
      send: async (body) => {
        const name = `${Date.now()}-${String(++this.sequence).padStart(SEQUENCE_DIGITS, "0")}-${process.pid}`;
        const tmp = join(dir, `.${name}.tmp`);
        await writeFile(tmp, body);
        await rename(tmp, join(dir, name));
      },
    };
  }

  async close(): Promise<void> {}
}
