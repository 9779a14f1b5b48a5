// Turns a queue message into a Request: opens an encrypted, signed envelope (or refuses a plain
// request where clear text is off or the queue has a signing key), then parses it tolerantly.

import { openEnvelope } from "./envelope/envelope.ts";
import { NO_ENVELOPE_KEYS, type EnvelopeKeys } from "./envelope/keys.ts";
import type { Request } from "./model.ts";
import { parseRequest } from "./parse.ts";

export type RequestReader = (body: Uint8Array, queue: string) => Request;

export type EnvelopeSettings = { keys: EnvelopeKeys; clearTextAllowed: boolean };

/** The reader for the runner's envelope settings; without any, plain requests and no keys. */
export function requestReader(
  envelope: EnvelopeSettings = { keys: NO_ENVELOPE_KEYS, clearTextAllowed: true },
): RequestReader {
  return (body, queue) =>
    parseRequest(openEnvelope(body, queue, envelope.keys, { clearTextAllowed: envelope.clearTextAllowed }).json);
}

export const plainRequestReader: RequestReader = requestReader();
