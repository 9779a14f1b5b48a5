// Whose identity serves a request's storage when the request brings no credentials of its own:
// by default nobody's (the request is refused before anything is sent); with
// `--storage-identity runner`, the runner's own (AWS default chain, --google-certs), but only for
// the places --storage-identity-allow lists for the request's queue.

import { errorMessage } from "../errors.ts";
import { isHostLike } from "../request/s3-location.ts";
import { commaList } from "../config/comma-list.ts";

/**
 * One object a request wants reached: its scheme, server (host[:port], when the location or endpoint names one), bucket
 * and key.
 */
export type StoragePlace = { scheme: "s3" | "gs"; host?: string; bucket: string; key: string };

/**
 * Decides, per object, whether the runner's own identity may serve a request that brought no
 * credentials. A request with credentials is never asked about: only its own are used.
 */
export interface StorageIdentity {
  /** Undefined when the runner's identity may serve `place`; else the end of a refusal ("… is refused because …"). */
  refusal(place: StoragePlace): string | undefined;
}

/** The runner itself (the submit command, tools, tests): its own identity serves everything. */
export const RUNNER_IDENTITY: StorageIdentity = { refusal: () => undefined };

/** Queue kinds an allow-list entry may name before its prefix ("rabbitmq:rmq_team_a=…"). */
const QUEUE_KINDS = ["local", "rabbitmq", "sqs", "pubsub"] as const;

/**
 * One --storage-identity-allow entry: queues whose name starts with `queuePrefix` (of `kind`, or any) may use the
 * runner's identity for `place`.
 */
export type IdentityGrant = { kind?: string; queuePrefix: string; place: StoragePlace; text: string };

export type StorageIdentitySetting = { mode: "request" | "runner"; grants: IdentityGrant[] };

/** A key that S3/GCS or an HTTP path could read as another one: "." or ".." segments, or "//". */
const UNSAFE_KEY = /(^|\/)\.{1,2}(\/|$)|\/\//;

function parsePlace(text: string): StoragePlace {
  const m = /^(s3|gs):\/\/(.+)$/i.exec(text);
  if (!m) throw new Error("the place must be s3://[host:port/]bucket/prefix or gs://bucket/prefix");
  const scheme = m[1]!.toLowerCase() as "s3" | "gs";
  const rest = m[2]!.includes("/") ? m[2]! : `${m[2]}/`;
  if (scheme === "gs") {
    const slash = rest.indexOf("/");
    const bucket = rest.slice(0, slash);
    if (!bucket) throw new Error("no bucket");
    return { scheme, bucket, key: rest.slice(slash + 1) };
  }
  // "s3://host:port/bucket/prefix" names a server; "s3://bucket/prefix" a bucket on AWS.
  const parts = rest.split("/");
  const named = isHostLike(parts[0]!);
  const bucket = named ? parts[1] : parts[0];
  if (!bucket) throw new Error("no bucket");
  return {
    scheme,
    host: named ? parts[0]!.toLowerCase() : undefined,
    bucket,
    key: parts.slice(named ? 2 : 1).join("/"),
  };
}

/**
 * Parses --storage-identity-allow: comma-separated `[kind:]queue-prefix=scheme://[host:port/]bucket/prefix`.
 * Throws with the entry that is wrong.
 */
export function parseIdentityGrants(text: string): IdentityGrant[] {
  const grants: IdentityGrant[] = [];
  for (const entry of commaList(text)) {
    const eq = entry.indexOf("=");
    if (eq < 0) throw new Error(`--storage-identity-allow: "${entry}" is not queue-prefix=scheme://bucket/prefix`);
    let queue = entry.slice(0, eq).trim();
    let kind: string | undefined;
    const colon = queue.indexOf(":");
    if (colon >= 0 && (QUEUE_KINDS as readonly string[]).includes(queue.slice(0, colon))) {
      kind = queue.slice(0, colon);
      queue = queue.slice(colon + 1);
    }
    try {
      const place = parsePlace(entry.slice(eq + 1).trim());
      if (UNSAFE_KEY.test(place.key)) throw new Error("the prefix has '.', '..' or empty path segments");
      grants.push({ kind, queuePrefix: queue, place, text: entry });
    } catch (err) {
      throw new Error(`--storage-identity-allow: "${entry}": ${errorMessage(err)}`);
    }
  }
  return grants;
}

function placeMatches(grant: StoragePlace, place: StoragePlace): boolean {
  return (
    grant.scheme === place.scheme &&
    (grant.host ?? "") === (place.host?.toLowerCase() ?? "") &&
    grant.bucket === place.bucket &&
    place.key.startsWith(grant.key) &&
    !UNSAFE_KEY.test(place.key)
  );
}

export function describePlace(place: StoragePlace): string {
  return `${place.scheme}://${place.host ? `${place.host}/` : ""}${place.bucket}/${place.key}`;
}

/** Requests' storage with no runner identity at all (the default, --storage-identity request). */
export const REQUEST_IDENTITY_ONLY: StorageIdentity = storageIdentityFor(undefined, "", undefined);

/** The decision for requests from one queue (`queue`: its name; `kind`: local, rabbitmq, sqs or pubsub). */
export function storageIdentityFor(
  setting: StorageIdentitySetting | undefined,
  queue: string,
  kind: string | undefined,
): StorageIdentity {
  const mode = setting?.mode ?? "request";
  if (mode === "request") {
    return {
      refusal: () =>
        "brings no credentials, and this runner serves a request's storage only with the request's own " +
        "credentials (--storage-identity request): put credentials in the request, or have the operator allow " +
        "the runner's identity for this place (--storage-identity runner with --storage-identity-allow)",
    };
  }
  const grants = (setting?.grants ?? []).filter((g) => (!g.kind || g.kind === kind) && queue.startsWith(g.queuePrefix));
  return {
    refusal: (place) =>
      grants.some((g) => placeMatches(g.place, place))
        ? undefined
        : `brings no credentials and is outside --storage-identity-allow for queue "${queue}" (${
            grants.length
              ? "the runner's own identity serves only " +
                `${grants.map((g) => describePlace(g.place) + "…").join(", ")} for it`
              : "no entry names this queue"
          }): put credentials in the request, or have the operator add the place to --storage-identity-allow`,
  };
}

/** The setting from --storage-identity and --storage-identity-allow; throws on a bad entry. */
export function storageIdentitySetting(mode: unknown, allow: unknown): StorageIdentitySetting {
  return {
    mode: mode === "runner" ? "runner" : "request",
    grants: parseIdentityGrants(typeof allow === "string" ? allow : ""),
  };
}

/** Problems of the two settings, for the start-up check. */
export function storageIdentityProblems(mode: unknown, allow: unknown): string[] {
  try {
    storageIdentitySetting(mode, allow);
    return [];
  } catch (err) {
    return [errorMessage(err)];
  }
}

/** Start-up log lines: what the setting lends, and settings that do nothing. */
export function describeStorageIdentity(setting: StorageIdentitySetting): { info: string[]; warn: string[] } {
  if (setting.mode === "request") {
    return {
      info: ["requests' storage is reached only with the requests' own credentials (--storage-identity request)"],
      warn: setting.grants.length
        ? ["--storage-identity-allow is ignored: it applies only with --storage-identity runner"]
        : [],
    };
  }
  if (!setting.grants.length)
    return {
      info: [],
      warn: [
        "--storage-identity runner with an empty --storage-identity-allow: the runner's identity serves no request",
      ],
    };
  const lines = setting.grants.map(
    (g) => `${g.kind ? `${g.kind} ` : ""}queues "${g.queuePrefix}…" → ${describePlace(g.place)}…`,
  );
  const loose = setting.grants.filter((g) => g.place.key && !g.place.key.endsWith("/")).map((g) => g.text);
  return {
    info: [`the runner's own storage identity serves requests without credentials only for: ${lines.join("; ")}`],
    warn: loose.length
      ? [
          `--storage-identity-allow: ${loose.join(", ")}: a prefix not ending in "/" also matches longer names ` +
            "beside it",
        ]
      : [],
  };
}
