// An object's body as HTTP clients hand it over (a Node stream, or a fetch web stream), and how to
// stop reading one and give its connection back.

import { Readable } from "node:stream";

export type ByteBody = Readable | ReadableStream<Uint8Array>;

/** Stop reading a body and release its connection. */
export function dropBody(body: ByteBody, reason?: Error): void {
  if (body instanceof Readable) body.destroy(reason);
  else body.cancel(reason).catch(() => undefined);
}
