// Resolves the DNS names a request makes the runner connect to and checks every address they
// resolve to with the host rules of location-policy.ts: a name that resolves to a metadata,
// loopback or private address is refused like the address itself. The stores that connect
// themselves (http artifacts, the http database) connect to the address checked here
// (storage/http/guarded-request.ts); for the others (S3, Firebase SDKs) this is a check before the
// SDK resolves the name again, so a DNS answer that changes in between is not caught there.

import { lookup } from "node:dns/promises";
import { RequestError, RetryableError } from "../errors.ts";
import {
  checkLocation,
  classifyHost,
  hostnameOf,
  hostProblem,
  isIpLiteral,
  redact,
  type HostClass,
  type LocationPolicy,
  type LocationUse,
} from "./location-policy.ts";
import { isHostLike } from "./s3-location.ts";

export type ResolvedAddress = { address: string; family: number };
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

/** The system resolver (getaddrinfo: /etc/hosts, then DNS), every address. */
export const systemResolver: Resolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** Test seams: another resolver, another address classification. */
export type ResolveOptions = { resolver?: Resolver; classify?: (host: string) => HostClass };

/**
 * Every address `hostname` resolves to, each checked; RequestError (naming `field` and `shown`)
 * when any is refused, RetryableError when the name cannot be resolved now. IP literals are
 * checked as they are, without a lookup.
 */
export async function resolveChecked(
  field: string,
  shown: string,
  hostname: string,
  policy: Pick<LocationPolicy, "allowPrivate">,
  options: ResolveOptions = {},
): Promise<ResolvedAddress[]> {
  const classify = options.classify ?? classifyHost;
  const host = hostname.replace(/^\[|\]$/g, "");
  const own = hostProblem(classify(host), policy);
  if (own) throw new RequestError(field, redact(shown), own);
  if (isIpLiteral(host)) return [{ address: host, family: host.includes(":") ? 6 : 4 }];
  let addresses: ResolvedAddress[];
  try {
    addresses = await (options.resolver ?? systemResolver)(host);
  } catch (err) {
    throw new RetryableError(
      `${field}: cannot resolve ${host} to check where it points: ${(err as Error).message}`,
      { field },
      { cause: err },
    );
  }
  if (!addresses.length) throw new RetryableError(`${field}: ${host} resolves to no address`, { field });
  for (const a of addresses) {
    const problem = hostProblem(classify(a.address), policy);
    if (problem)
      throw new RequestError(field, redact(shown), `names ${host}, which resolves to ${a.address} and ${problem}`);
  }
  return addresses;
}

/** The host a location or endpoint makes the runner connect to, when it names one. */
export function connectHostOf(location: string): string | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(location)?.[1]?.toLowerCase();
  if (scheme === "http" || scheme === "https") {
    try {
      return new URL(location).hostname || undefined;
    } catch {
      return undefined;
    }
  }
  if (scheme === "s3") {
    const first = /^s3:\/\/([^/]+)\//i.exec(location)?.[1];
    return first && isHostLike(first) ? hostnameOf(first) : undefined;
  }
  if (scheme === "file" || scheme === "gs") return undefined;
  // "host:port" endpoints without a scheme
  const authority = location.split("/")[0]!;
  return authority ? hostnameOf(authority.slice(authority.lastIndexOf("@") + 1)) : undefined;
}

/** checkLocation, then the host it names (if any) resolved and every address checked. */
export async function checkLocationResolved(
  field: string,
  qualified: string,
  policy: LocationPolicy,
  use: LocationUse = {},
  options: ResolveOptions = {},
): Promise<void> {
  checkLocation(field, qualified, policy, use);
  const host = connectHostOf(qualified);
  if (host) await resolveChecked(field, qualified, host, policy, options);
}
