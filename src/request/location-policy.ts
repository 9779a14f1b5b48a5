// Which artifact locations a request may make this runner read or write. A request comes from
// whoever can write to a queue; its `qualified` locations must not turn the runner into a reader of
// its own files or of cloud metadata services (SSRF).
//
// Rules (checkLocation):
// 1. Schemes: file:, s3:, gs:, http: and https: only. http(s) only for immutable artifacts (plain
//    URL downloads; nothing is ever uploaded there). Control characters and whitespace are refused.
// 2. file: locations are read as the file store reads them (everything after "file:", leading
//    slashes collapsed, percent-decoded) and must lie strictly under one of
//    policy.allowedFileRoots, compared after lexical normalisation (no realpath). Any '..'
//    component is refused outright, also when spelled %2e%2e. An empty allowedFileRoots refuses
//    every file: location. Symlinks inside a root are NOT resolved here: the caller must check,
//    at fetch/upload time, that the real path is still under the real root.
// 3. Hosts (http(s) URLs, the server component of s3://host[:port]/bucket/key, and a storage
//    endpoint given to checkEndpoint) must not be link-local or cloud metadata addresses:
//    169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200, metadata.google.internal (and
//    its short forms), instance-data(.ec2.internal); nor loopback (127.0.0.0/8, ::1, 0.0.0.0/8,
//    ::, localhost, *.localhost) unless policy.allowLoopback. IPv4 written in other forms
//    (decimal, hex, octal, IPv4-mapped or NAT64 IPv6) is normalised first. Names are not
//    resolved: a DNS name that resolves to such an address must be caught when connecting.
// 4. Userinfo (user:password@) is refused in http(s) URLs and s3 hosts; the message never shows
//    the password.
// 5. gs://bucket/key names a bucket, never a host: the bucket must be a valid GCS bucket name.
//
// Every refusal is a RequestError (permanent: the request is kept with the reason) naming the field
// and the location.

import { posix } from "node:path";
import { RequestError } from "../errors.ts";
import { isHostLike } from "../storage/s3/s3-location.ts";

export type LocationPolicy = {
  /** Directories under which file: locations may be read and written (absolute paths). */
  allowedFileRoots: string[];
  /** Whether loopback hosts (127.0.0.0/8, ::1, localhost) may be used: test servers, local MinIO. */
  allowLoopback: boolean;
};

/** What checkLocation needs to know about the artifact besides its location. */
export type LocationUse = {
  /** Mutable artifacts are uploaded back: http(s) locations are refused for them. */
  mutable?: boolean;
};

const ALLOWED_SCHEMES = new Set(["file", "s3", "gs", "http", "https"]);

const METADATA_NAMES = new Set([
  "metadata.google.internal",
  "metadata.goog",
  "metadata",
  "instance-data",
  "instance-data.ec2.internal",
]);

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
    refuse("has a scheme this runner does not fetch from (allowed: file:, s3://, gs://, and http(s):// for immutable artifacts)");
  }
  switch (scheme) {
    case "file":
      return checkFile(qualified, policy, refuse);
    case "http":
    case "https":
      if (use.mutable) refuse("is an http(s) URL, which only immutable artifacts may use (nothing is uploaded to a URL)");
      return checkHttp(qualified, policy, refuse);
    case "s3":
      return checkS3(qualified, policy, refuse);
    case "gs":
      return checkGs(qualified, refuse);
  }
}

/**
 * The storage endpoint of a request (config.storage.endpoint: "http://host:port" or "host:port"),
 * which s3:// locations without a server of their own are fetched from: the same host rules apply.
 */
export function checkEndpoint(field: string, endpoint: string, policy: LocationPolicy): void {
  const refuse = (problem: string): never => {
    throw new RequestError(field, redact(endpoint), problem);
  };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(endpoint)) refuse("contains whitespace or control characters");
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(endpoint);
  if (m && !["http", "https"].includes(m[1]!.toLowerCase())) refuse("is not an http(s) endpoint");
  const authority = m ? m[2]! : endpoint.split("/")[0]!;
  if (authority.includes("@")) refuse("carries user:password@; give credentials in the credentials fields");
  if (authority === "") return;
  checkHost(authority, policy, refuse);
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
  const path = "/" + rest.replace(/^\/+/, "");
  if (path.split("/").includes("..")) refuse("must not contain '..'");
  const normal = posix.normalize(path);
  const roots = policy.allowedFileRoots.map((r) => posix.normalize("/" + r.replace(/^\/+/, "")).replace(/\/+$/, "") || "/");
  if (!roots.some((root) => isStrictlyUnder(root, normal))) {
    refuse(
      roots.length
        ? `is outside the directories this runner allows for file: storage (${roots.join(", ")})`
        : "is a file: location, and this runner allows no directory for file: storage",
    );
  }
}

function isStrictlyUnder(root: string, path: string): boolean {
  if (root === "/") return path !== "/";
  return path.startsWith(root + "/") && path.length > root.length + 1;
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
  if (url.username || url.password || authority.includes("@")) refuse("carries user:password@ (refused for URL artifacts)");
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
  let host: string;
  try {
    host = new URL(`http://${authority}/`).hostname.toLowerCase();
  } catch {
    return refuse("names a host that is not valid");
  }
  host = host.replace(/\.$/, "");
  const kind = classifyHost(host);
  if (kind === "metadata") refuse("points at a link-local or cloud metadata address");
  if (kind === "loopback" && !policy.allowLoopback) refuse("points at this machine (loopback), which this runner does not allow");
}

/** "metadata" for link-local and metadata services, "loopback", or "public" (anything else). */
export function classifyHost(hostname: string): "metadata" | "loopback" | "public" {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  if (METADATA_NAMES.has(host)) return "metadata";
  if (host === "localhost" || host.endsWith(".localhost")) return "loopback";
  const v4 = parseIPv4(host);
  if (v4) return classifyIPv4(v4);
  if (host.includes(":")) {
    const v6 = parseIPv6(host);
    if (!v6) return "public";
    return classifyIPv6(v6);
  }
  return "public";
}

function classifyIPv4([a, b, c, d]: number[]): "metadata" | "loopback" | "public" {
  if (a === 169 && b === 254) return "metadata";
  if (a === 100 && b === 100 && c === 100 && d === 200) return "metadata";
  if (a === 127 || a === 0) return "loopback";
  return "public";
}

function classifyIPv6(words: number[]): "metadata" | "loopback" | "public" {
  const zeroUpTo = (n: number) => words.slice(0, n).every((w) => w === 0);
  if (zeroUpTo(7) && (words[7] === 1 || words[7] === 0)) return "loopback"; // ::1 and ::
  if ((words[0]! & 0xffc0) === 0xfe80) return "metadata"; // fe80::/10 link-local
  if (words[0] === 0xfd00 && words[1] === 0x0ec2 && words.slice(2, 7).every((w) => w === 0) && words[7] === 0x0254) return "metadata";
  const embedded = (hi: number, lo: number) => [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
  // IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d.
  if (zeroUpTo(5) && (words[5] === 0xffff || words[5] === 0)) return classifyIPv4(embedded(words[6]!, words[7]!));
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return classifyIPv4(embedded(words[6]!, words[7]!));
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
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((w) => (/^[0-9a-f]{1,4}$/.test(w) ? parseInt(w, 16) : NaN)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return undefined;
  const words = [...head, ...Array(fill).fill(0), ...tail];
  return words.length === 8 && words.every((w) => Number.isInteger(w)) ? words : undefined;
}

/** The location as it may be shown: the password of a user:password@ part replaced. */
function redact(location: string): string {
  return location.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*)@/i, (_all, scheme: string, userinfo: string) => {
    const user = userinfo.split(":")[0] ?? "";
    return `${scheme}${user ? `${user}:***` : "***"}@`;
  });
}
