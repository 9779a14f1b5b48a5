// The broker's addresses: the AMQP URL parsed for amqplib, the management API URL (derived from
// the AMQP URL the way the Go runner does), and forms of both that are safe to log.

import type { Options } from "amqplib";

export type AmqpAddress = {
  connect: Options.Connect;
  vhost: string;
  /** The URL with its password replaced by "***": the only form that may be logged. */
  redacted: string;
  /** Literal secrets to mask in any message that might echo them. */
  secrets: string[];
};

export type ManagementAddress = {
  /** scheme://host:port[/prefix], no credentials, no trailing slash. */
  baseUrl: string;
  authorization?: string;
  redacted: string;
};

const DEFAULT_HEARTBEAT_S = 20;
const MANAGEMENT_PORT_OFFSET = 10_000;

export class AddressError extends Error {}

/** Parse amqp[s]://user:password@host:port/vhost?heartbeat=N. Throws AddressError. */
export function parseAmqpUrl(text: string): AmqpAddress {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new AddressError("is not a URL (example: amqp://user:password@host:5672/%2f)");
  }
  const protocol = url.protocol.replace(/:$/, "");
  if (protocol !== "amqp" && protocol !== "amqps") throw new AddressError("must start with amqp:// or amqps://");
  if (!url.hostname) throw new AddressError("has no host");
  const port = url.port ? Number(url.port) : protocol === "amqp" ? 5672 : 5671;
  const username = url.username ? decodeURIComponent(url.username) : "guest";
  const password = url.password ? decodeURIComponent(url.password) : url.username ? "" : "guest";
  const path = url.pathname.replace(/^\//, "");
  const vhost = path ? decodeURIComponent(path) : "/";
  const heartbeat = url.searchParams.get("heartbeat");
  const frameMax = url.searchParams.get("frame_max") ?? url.searchParams.get("frameMax");
  return {
    connect: {
      protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port,
      username,
      password,
      vhost,
      heartbeat: heartbeat !== null && Number.isInteger(Number(heartbeat)) ? Number(heartbeat) : DEFAULT_HEARTBEAT_S,
      ...(frameMax !== null && Number.isInteger(Number(frameMax)) ? { frameMax: Number(frameMax) } : {}),
    },
    vhost,
    redacted: redactUrl(text.trim()),
    secrets: password && password !== "guest" ? [password, url.password] : [],
  };
}

/**
 * The management API: --amqp-mgt-url when given (its credentials, else the AMQP URL's), otherwise
 * http://<amqp host>:<amqp port + 10000> with the AMQP URL's credentials.
 */
export function managementAddress(amqp: AmqpAddress, mgtUrl?: string): ManagementAddress {
  let user = amqp.connect.username ?? "guest";
  let password = amqp.connect.password ?? "guest";
  let base: URL;
  if (mgtUrl?.trim()) {
    try {
      base = new URL(mgtUrl.trim());
    } catch {
      throw new AddressError("is not a URL (example: http://user:password@host:15672)");
    }
    if (base.protocol !== "http:" && base.protocol !== "https:")
      throw new AddressError("must start with http:// or https://");
    if (base.username) {
      user = decodeURIComponent(base.username);
      password = decodeURIComponent(base.password);
    }
  } else {
    const host = amqp.connect.hostname!.includes(":") ? `[${amqp.connect.hostname}]` : amqp.connect.hostname!;
    base = new URL(`http://${host}:${(amqp.connect.port ?? 5672) + MANAGEMENT_PORT_OFFSET}/`);
  }
  base.username = "";
  base.password = "";
  base.search = "";
  base.hash = "";
  const baseUrl = base.toString().replace(/\/+$/, "");
  return {
    baseUrl,
    authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
    redacted: `${baseUrl} (user ${user})`,
  };
}

/** A URL with any password replaced by "***" (text that is not a URL is returned masked whole). */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return text.replace(/\/\/([^/:@\s]*):[^@/\s]*@/g, "//$1:***@");
  }
}

/** Remove literal secrets from text that may have come from a library or the broker. */
export function maskSecrets(text: string, secrets: string[]): string {
  let out = redactUrl(text);
  for (const s of secrets) if (s) out = out.split(s).join("***");
  return out;
}
