// Queue discovery through the RabbitMQ management API, as the Go runner does it: the queues
// bound to the StudioML.topic exchange.

import { RetryableError } from "../../errors.ts";
import type { ManagementAddress } from "./broker-address.ts";
import { EXCHANGE } from "./conventions.ts";

type Binding = { source?: unknown; destination?: unknown; destination_type?: unknown };

/** Names of the queues bound to StudioML.topic in the vhost; [] when the exchange does not exist. */
export async function listStudioQueues(api: ManagementAddress, vhost: string, timeoutMs: number): Promise<string[]> {
  const url =
    `${api.baseUrl}/api/exchanges/${encodeURIComponent(vhost)}/` + `${encodeURIComponent(EXCHANGE)}/bindings/source`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { accept: "application/json", ...(api.authorization ? { authorization: api.authorization } : {}) },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new RetryableError(
      `management API at ${api.redacted} unreachable: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
  if (response.status === 404) return [];
  if (!response.ok)
    throw new RetryableError(`management API at ${api.redacted} answered ${response.status} ${response.statusText}`);
  let doc: unknown;
  try {
    doc = await response.json();
  } catch (err) {
    throw new RetryableError(`management API at ${api.redacted} sent something that is not JSON`, {}, { cause: err });
  }
  if (!Array.isArray(doc))
    throw new RetryableError(
      `management API at ${api.redacted} sent an unexpected answer for the bindings of ${EXCHANGE}`,
    );
  const names = new Set<string>();
  for (const b of doc as Binding[]) {
    if (b.source === EXCHANGE && b.destination_type === "queue" && typeof b.destination === "string")
      names.add(b.destination);
  }
  return [...names].sort();
}
