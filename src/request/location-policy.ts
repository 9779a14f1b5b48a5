// Which locations a request may make this runner read or write. A request comes from whoever can
// write to a queue; its artifact locations, storage endpoint and database must not turn the runner
// into a reader or writer of its own files, of this machine's services or of cloud metadata (SSRF).
//
// Rules (checkLocation, checkEndpoint, checkFilePath; all lexical, no I/O):
// 1. Schemes: file:, s3:, gs:, http: and https: only. http(s) only for immutable artifacts (plain
//    URL downloads; nothing is ever uploaded there). Control characters and whitespace are refused.
// 2. file: locations are read as the file store reads them (everything after "file:", leading
//    slashes collapsed, percent-decoded) and must lie strictly under one of
//    policy.allowedFileRoots, compared after lexical normalisation. Any '..' component is refused
//    outright, also when spelled %2e%2e. An empty allowedFileRoots refuses every file: location.
//    /proc, /sys and /dev are refused even when a root contains them. This lexical check is the
//    first of two: the file store checks the REAL path again where it opens the file (symlinks
//    resolved, see storage/file/confined-path.ts), against the limits the runner was started with
//    (setRunnerLimits).
// 3. Hosts (http(s) URLs, the server component of s3://host[:port]/bucket/key, and endpoints given
//    to checkEndpoint) must not be link-local or cloud metadata addresses (169.254.0.0/16,
//    fe80::/10, fd00:ec2::254, 100.100.100.200, metadata.google.internal and its short forms,
//    instance-data): never, whatever the flags. Loopback, private and other non-global ranges
//    (classifyHost) and this machine's own interface addresses only with policy.allowPrivate
//    (--allow-private-endpoints). IPv4 written in other forms (decimal, hex, octal, IPv4-mapped or
//    NAT64 IPv6) is normalised first. DNS names are resolved by resolve-host.ts, where every
//    address a name resolves to passes the same rule.
// 4. Userinfo (user:password@) is refused in http(s) URLs and s3 hosts; the message never shows
//    the password.
// 5. gs://bucket/key names a bucket, never a host: the bucket must be a valid GCS bucket name.
//
// Every refusal is a RequestError (permanent: the request is kept with the reason) naming the field
// and the location.

import { networkInterfaces } from "node:os";
import { posix } from "node:path";
import { RequestError } from "../errors.ts";
import { isHostLike } from "./s3-location.ts";

export type LocationPolicy = {
  /** Directories under which file: locations may be read and written (absolute paths). */
  allowedFileRoots: string[];
  /** --allow-private-endpoints: loopback and private-range hosts (never link-local or metadata). */
  allowPrivate: boolean;
};

/** What checkLocation needs to know about the artifact besides its location. */
export type LocationUse = {
  /** Mutable artifacts are uploaded back: http(s) locations are refused for them. */
  mutable?: boolean;
};

/**
 * What the stores enforce where they open a file or connect, whatever the request: the file:
 * roots (undefined: not confined, as for `studio-runner submit`, which writes where its user
 * says) and whether private addresses may be connected to. The daemon sets them once at start.
 */
export type RunnerLimits = { fileRoots?: string[]; allowPrivate: boolean };

let runnerLimits: RunnerLimits = { fileRoots: undefined, allowPrivate: false };

export function setRunnerLimits(limits: RunnerLimits): void {
  runnerLimits = { fileRoots: limits.fileRoots?.map(normalRoot), allowPrivate: limits.allowPrivate };
}

export function getRunnerLimits(): RunnerLimits {
  return runnerLimits;
}

export type HostClass = "metadata" | "private" | "public";

/** Never readable or writable through file:, whatever the roots. */
export const SYSTEM_PATHS = ["/proc", "/sys", "/dev"];

const ALLOWED_SCHEMES = new Set(["file", "s3", "gs", "http", "https"]);

const METADATA_NAMES = new Set([
  "metadata.google.internal",
  "metadata.goog",
  "metadata",
  "instance-data",
  "instance-data.ec2.internal",
]);

/** The refusal texts, shared with the connect-time checks. */
export const REFUSED_METADATA = "points at a link-local or cloud metadata address";
export const REFUSED_PRIVATE =
  "points at this machine or a private network (loopback, RFC 1918, CGNAT, ULA or another non-global range), " +
  "which this runner allows only with --allow-private-endpoints";

/**
 * Throws RequestError naming `field` when the request may not use `qualified` under `policy`.
 * `use.mutable` (the artifact is uploaded back) refuses http(s) locations.
 */
export function checkLocation(field: string, qualified: string, policy: LocationPolicy, use: LocationUse = {}): void {
  const refuse = (problem: string): never => {
    throw new RequestError(field, redact(qualified), problem);
  };
  if (typeof qualified !== "string" || qualified === "") refuse("is not a location");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(qualified)) refuse("contains whitespace or control characters");
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(qualified)?.[1]?.toLowerCase();
  if (!scheme || !ALLOWED_SCHEMES.has(scheme)) {
    refuse(
      "has a scheme this runner does not fetch from " +
        "(allowed: file:, s3://, gs://, and http(s):// for immutable artifacts)",
    );
  }
  switch (scheme) {
    case "file":
      return checkFile(qualified, policy, refuse);
    case "http":
    case "https":
      if (use.mutable)
        refuse("is an http(s) URL, which only immutable artifacts may use (nothing is uploaded to a URL)");
      return checkHttp(qualified, policy, refuse);
    case "s3":
      return checkS3(qualified, policy, refuse);
    case "gs":
      return checkGs(qualified, refuse);
  }
}

/**
 * A storage or database endpoint of a request ("http://host:port" or "host:port"): the same host
 * rules apply. `userinfo` allows user:password@ (the studioml API server's own credentials).
 */
export function checkEndpoint(
  field: string,
  endpoint: string,
  policy: LocationPolicy,
  options: { userinfo?: boolean } = {},
): void {
  const refuse = (problem: string): never => {
    throw new RequestError(field, redact(endpoint), problem);
  };
  if (typeof endpoint !== "string") return refuse("is not an endpoint");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(endpoint)) refuse("contains whitespace or control characters");
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(endpoint);
  if (m && !["http", "https"].includes(m[1]!.toLowerCase())) refuse("is not an http(s) endpoint");
  let authority = m ? m[2]! : endpoint.split("/")[0]!;
  if (authority.includes("@")) {
    if (!options.userinfo) refuse("carries user:password@; give credentials in the credentials fields");
    authority = authority.slice(authority.lastIndexOf("@") + 1);
  }
  if (authority === "") return;
  checkHost(authority, policy, refuse);
}

/** An absolute path the runner would write or read for the request (the local database's file). */
export function checkFilePath(field: string, shown: string, path: string, policy: LocationPolicy): void {
  const refuse = (problem: string): never => {
    throw new RequestError(field, shown, problem);
  };
  if (!path.startsWith("/")) refuse("is not an absolute path");
  if (path.includes("\0")) refuse("contains a NUL byte");
  checkPathUnderRoots(path, policy, refuse);
}

/** The file: path as the file store reads it, or a refusal. */
function checkFile(qualified: string, policy: LocationPolicy, refuse: (problem: string) => never): void {
  let rest: string;
  try {
    rest = decodeURIComponent(qualified.slice("file:".length));
  } catch {
    return refuse("has a malformed %-escape");
  }
  if (rest.includes("\0")) refuse("contains a NUL byte");
  checkPathUnderRoots("/" + rest.replace(/^\/+/, ""), policy, refuse);
}

function checkPathUnderRoots(path: string, policy: LocationPolicy, refuse: (problem: string) => never): void {
  if (path.split("/").includes("..")) refuse("must not contain '..'");
  const normal = posix.normalize(path);
  if (isSystemPath(normal)) refuse(`is under ${SYSTEM_PATHS.join(", ")}, which file: locations never reach`);
  const roots = policy.allowedFileRoots.map(normalRoot);
  if (!roots.some((root) => isStrictlyUnder(root, normal))) {
    refuse(
      roots.length
        ? `is outside the directories this runner allows for file: storage (${roots.join(", ")})`
        : "is a file: location, and this runner allows no directory for file: storage (--file-storage-roots)",
    );
  }
}

/** "/a/b/" → "/a/b"; "" or "/" → "/". */
export function normalRoot(root: string): string {
  return posix.normalize("/" + root.replace(/^\/+/, "")).replace(/\/+$/, "") || "/";
}

export function isStrictlyUnder(root: string, path: string): boolean {
  if (root === "/") return path !== "/";
  return path.startsWith(root + "/") && path.length > root.length + 1;
}

/** Whether a normalised absolute path is /proc, /sys, /dev or under them. */
export function isSystemPath(path: string): boolean {
  return SYSTEM_PATHS.some((p) => path === p || path.startsWith(p + "/"));
}

function checkHttp(qualified: string, policy: LocationPolicy, refuse: (problem: string) => never): void {
  let url: URL;
  try {
    url = new URL(qualified);
  } catch {
    return refuse("is not a valid URL");
  }
  // WHATWG URL drops an empty userinfo ("http://@host"), so look at the text as well.
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(qualified)?.[1] ?? "";
  if (url.username || url.password || authority.includes("@"))
    refuse("carries user:password@ (refused for URL artifacts)");
  if (!url.hostname) refuse("names no host");
  checkHost(url.host, policy, refuse);
}

function checkS3(qualified: string, policy: LocationPolicy, refuse: (problem: string) => never): void {
  const m = /^s3:\/\/([^/]+)\/(.+)$/i.exec(qualified);
  if (!m) return refuse("is not an s3://[host[:port]/]bucket/key location");
  const first = m[1]!;
  if (first.includes("@")) refuse("carries user:password@; give credentials in the credentials fields");
  if (isHostLike(first)) checkHost(first, policy, refuse);
}

function checkGs(qualified: string, refuse: (problem: string) => never): void {
  const m = /^gs:\/\/([^/]+)\/(.+)$/i.exec(qualified);
  if (!m) return refuse("is not a gs://bucket/key location");
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(m[1]!)) refuse("names an invalid GCS bucket");
}

/** Host rules for "host", "host:port", "[v6]:port" and the forms the URL parser normalises. */
function checkHost(authority: string, policy: LocationPolicy, refuse: (problem: string) => never): void {
  const host = hostnameOf(authority);
  if (host === undefined) return refuse("names a host that is not valid");
  const problem = hostProblem(classifyHost(host), policy);
  if (problem) refuse(problem);
}

/** The host name of "host[:port]" as the URL parser normalises it (lower case, IPv4 dotted), or undefined. */
export function hostnameOf(authority: string): string | undefined {
  try {
    return new URL(`http://${authority}/`).hostname.toLowerCase().replace(/\.$/, "");
  } catch {
    return undefined;
  }
}

/** Why a host of this class is refused under the policy, or undefined when it may be used. */
export function hostProblem(kind: HostClass, policy: { allowPrivate: boolean }): string | undefined {
  if (kind === "metadata") return REFUSED_METADATA;
  if (kind === "private" && !policy.allowPrivate) return REFUSED_PRIVATE;
  return undefined;
}

/** Whether a host is an IP literal (dotted IPv4 or IPv6) rather than a DNS name that must be resolved. */
export function isIpLiteral(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  return parseIPv4(host) !== undefined || (host.includes(":") && parseIPv6(host) !== undefined);
}

/**
 * "metadata" for link-local and metadata services; "private" for loopback, private and other
 * non-global ranges, localhost names and this machine's own interface addresses; "public" for
 * every other address and for DNS names (which resolve-host.ts resolves and classifies).
 */
export function classifyHost(hostname: string): HostClass {
  const host = hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
  if (METADATA_NAMES.has(host)) return "metadata";
  if (host === "localhost" || host.endsWith(".localhost")) return "private";
  const v4 = parseIPv4(host);
  if (v4) return atLeastPrivateIfOwn(host, classifyIPv4(v4));
  if (host.includes(":")) {
    const v6 = parseIPv6(host);
    if (!v6) return "public";
    return atLeastPrivateIfOwn(host, classifyIPv6(v6));
  }
  return "public";
}

/** An address of one of this machine's interfaces reaches its services bound to 0.0.0.0 / ::. */
function atLeastPrivateIfOwn(address: string, kind: HostClass): HostClass {
  if (kind !== "public") return kind;
  return ownAddresses().has(address.replace(/%.*$/, "")) ? "private" : kind;
}

let ownCache: { atMs: number; addresses: Set<string> } | undefined;
const OWN_ADDRESSES_TTL_MS = 30_000;

function ownAddresses(): Set<string> {
  const now = Date.now();
  if (ownCache && now - ownCache.atMs < OWN_ADDRESSES_TTL_MS) return ownCache.addresses;
  const addresses = new Set<string>();
  try {
    for (const list of Object.values(networkInterfaces()))
      for (const i of list ?? []) addresses.add(i.address.toLowerCase());
  } catch {
    // no interface list: only the ranges apply
  }
  ownCache = { atMs: now, addresses };
  return addresses;
}

type Range4 = [number, number, number, number, number];

/** IPv4 ranges that are not globally reachable (IANA special-purpose registry), besides link-local. */
const PRIVATE_V4: Range4[] = [
  [0, 0, 0, 0, 8], // "this network", 0.0.0.0
  [10, 0, 0, 0, 8],
  [100, 64, 0, 0, 10], // CGNAT
  [127, 0, 0, 0, 8],
  [172, 16, 0, 0, 12],
  [192, 0, 0, 0, 24], // IETF protocol assignments
  [192, 0, 2, 0, 24], // documentation
  [192, 168, 0, 0, 16],
  [198, 18, 0, 0, 15], // benchmarking
  [198, 51, 100, 0, 24],
  [203, 0, 113, 0, 24],
  [224, 0, 0, 0, 4], // multicast
  [240, 0, 0, 0, 4], // reserved, broadcast
];

function inRange4(addr: number[], [a, b, c, d, bits]: Range4): boolean {
  const value = ((addr[0]! << 24) | (addr[1]! << 16) | (addr[2]! << 8) | addr[3]!) >>> 0;
  const base = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (value & mask) === (base & mask);
}

function classifyIPv4(addr: number[]): HostClass {
  const [a, b, c, d] = addr;
  if (a === 169 && b === 254) return "metadata";
  if (a === 100 && b === 100 && c === 100 && d === 200) return "metadata";
  return PRIVATE_V4.some((r) => inRange4(addr, r)) ? "private" : "public";
}

const stricter = (x: HostClass, y: HostClass): HostClass =>
  x === "metadata" || y === "metadata" ? "metadata" : x === "private" || y === "private" ? "private" : "public";

function classifyIPv6(words: number[]): HostClass {
  const zeroUpTo = (n: number) => words.slice(0, n).every((w) => w === 0);
  const embedded = (hi: number, lo: number) => classifyIPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  if (zeroUpTo(7) && (words[7] === 1 || words[7] === 0)) return "private"; // ::1 and ::
  if ((words[0]! & 0xffc0) === 0xfe80) return "metadata"; // fe80::/10 link-local
  if (words[0] === 0xfd00 && words[1] === 0x0ec2 && words.slice(2, 7).every((w) => w === 0) && words[7] === 0x0254)
    return "metadata";
  // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d: never public, metadata when it embeds one.
  if (zeroUpTo(5) && (words[5] === 0xffff || words[5] === 0))
    return stricter("private", embedded(words[6]!, words[7]!));
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0))
    return embedded(words[6]!, words[7]!); // NAT64
  if (words[0] === 0x2002) return embedded(words[1]!, words[2]!); // 6to4 embeds an IPv4 address
  if (words[0] === 0x64 && words[1] === 0xff9b && words[2] === 1) return "private"; // local-use NAT64
  if (words[0] === 0x100 && zeroUpTo(4)) return "private"; // discard-only 100::/64
  if (words[0] === 0x2001 && words[1] === 0x0db8) return "private"; // documentation
  if ((words[0]! & 0xfe00) === 0xfc00) return "private"; // ULA fc00::/7
  if ((words[0]! & 0xffc0) === 0xfec0) return "private"; // site-local (deprecated)
  if ((words[0]! & 0xff00) === 0xff00) return "private"; // multicast
  return "public";
}

/** Dotted IPv4 as the URL parser leaves it (it has already turned decimal/hex/octal forms into dotted). */
function parseIPv4(host: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : undefined;
}

function parseIPv6(host: string): number[] | undefined {
  let text = host.replace(/%.*$/, ""); // zone id
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const p = v4.slice(1).map(Number);
    if (p.some((x) => x > 255)) return undefined;
    text = text.slice(0, v4.index) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const parse = (s: string) =>
    s === "" ? [] : s.split(":").map((w) => (/^[0-9a-f]{1,4}$/i.test(w) ? parseInt(w, 16) : NaN));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return undefined;
  const words = [...head, ...Array(fill).fill(0), ...tail];
  return words.length === 8 && words.every((w) => Number.isInteger(w)) ? words : undefined;
}

/** The location as it may be shown: the password of a user:password@ part replaced. */
export function redact(location: string): string {
  return location.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*)@/i, (_all, scheme: string, userinfo: string) => {
    const user = userinfo.split(":")[0] ?? "";
    return `${scheme}${user ? `${user}:***` : "***"}@`;
  });
}
