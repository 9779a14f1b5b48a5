// Which Host (and Origin) values the --prom-address endpoint answers. A web page whose name an
// attacker re-points at this machine (DNS rebinding) reaches the endpoint with its own name in
// Host; refusing names the operator did not list defeats that. Answered, on the listening port:
// localhost and loopback addresses, the address the endpoint is bound to, this machine's host name,
// and any address of this machine's interfaces (a literal address cannot be rebound: Kubernetes
// probes and Prometheus' pod discovery send the pod IP). --http-allowed-hosts adds names: `name`
// on any port, `name:port` on that port only.

import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { commaList } from "../config/comma-list.ts";

export type HostPort = { host: string; port?: number };

/** "name", "name:port", "1.2.3.4:port", "[v6]:port", "[v6]" → lower-case host (no brackets, no final dot) and port. */
export function parseHostPort(text: string): HostPort | undefined {
  const t = text.trim().toLowerCase();
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(t);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (isIP(host) !== 6) return undefined;
  } else {
    const m = /^([a-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(t);
    if (!m) return undefined;
    host = m[1]!.replace(/\.$/, "");
    portText = m[2];
    if (!host) return undefined;
  }
  if (portText === undefined) return { host };
  const port = Number(portText);
  return port <= 65_535 ? { host, port } : undefined;
}

const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "";

/** Problems with --http-allowed-hosts, worded like the other configuration problems. */
export function allowedHostsProblems(text: string): string[] {
  return commaList(text)
    .filter((e) => !parseHostPort(e))
    .map((e) => `--http-allowed-hosts: ${JSON.stringify(e)} is not a host name or address with an optional :port`);
}

/** How often the interface addresses are read again when a Host names an address not seen yet. */
const INTERFACES_REREAD_MS = 5_000;

export type HostAllowListOptions = {
  /** The host --prom-address names ("0.0.0.0" for ":9090"). */
  boundHost: string;
  /** The port it listens on (the real one when --prom-address asked for port 0). */
  port: number;
  /** This machine's host name (os.hostname()). */
  machineName: string;
  /** --http-allowed-hosts, comma-separated. */
  allowed: string;
  /** This machine's interface addresses; os.networkInterfaces() by default. */
  interfaceAddresses?: () => string[];
  nowMs?: () => number;
};

export class HostAllowList {
  private readonly names: Set<string>;
  private readonly anyPort = new Set<string>();
  private readonly exact = new Set<string>();
  private addresses = new Set<string>();
  private addressesReadMs = -Infinity;
  private readonly readAddresses: () => string[];
  private readonly nowMs: () => number;

  constructor(private readonly options: HostAllowListOptions) {
    this.readAddresses = options.interfaceAddresses ?? machineAddresses;
    this.nowMs = options.nowMs ?? Date.now;
    const bound = options.boundHost.toLowerCase();
    this.names = new Set(["localhost", options.machineName.toLowerCase()]);
    // The bound address itself; for ":9090" that is 0.0.0.0, which the start-up log prints (a literal, so not
    // rebindable).
    this.names.add(isWildcard(bound) ? (bound === "::" ? "::" : "0.0.0.0") : bound);
    for (const entry of commaList(options.allowed)) {
      const hp = parseHostPort(entry);
      if (!hp) continue; // refused by allowedHostsProblems at start
      if (hp.port === undefined) this.anyPort.add(hp.host);
      else this.exact.add(`${hp.host} ${hp.port}`);
    }
  }

  /** The answered names, for the start-up log (interface addresses summarised). */
  describe(): string {
    const listed = [...this.anyPort, ...[...this.exact].map((e) => e.replace(" ", ":"))];
    return (
      `${[...this.names].map((n) => `${n}:${this.options.port}`).join(", ")}, ` +
      `loopback and this machine's interface addresses on port ${this.options.port}` +
      `${listed.length ? `; --http-allowed-hosts ${listed.join(", ")}` : ""}`
    );
  }

  /** Whether a Host header value (or an Origin's host) names this endpoint. */
  allowsHost(value: string | null): boolean {
    if (!value) return false;
    const hp = parseHostPort(value);
    if (!hp) return false;
    return this.allows(hp.host, hp.port ?? 80);
  }

  /** Whether an Origin header may change the runner's state: absent (curl, kubectl), or a page served by an answered
   * host. */
  allowsOrigin(value: string | null): boolean {
    if (value === null) return true;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return false; // "null" (sandboxed frames, file: pages) and junk
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return false;
    const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    return this.allows(host.toLowerCase().replace(/\.$/, ""), port);
  }

  private allows(host: string, port: number): boolean {
    if (this.anyPort.has(host) || this.exact.has(`${host} ${port}`)) return true;
    if (port !== this.options.port) return false;
    if (this.names.has(host) || isLoopback(host)) return true;
    if (!isIP(host)) return false;
    if (this.addresses.has(host)) return true;
    // An address not seen yet: interfaces come and go (DHCP, a pod's network set up late).
    const now = this.nowMs();
    if (now - this.addressesReadMs < INTERFACES_REREAD_MS) return false;
    this.addressesReadMs = now;
    this.addresses = new Set(this.readAddresses().map((a) => a.toLowerCase()));
    return this.addresses.has(host);
  }
}

/** Every address of this machine's interfaces, zone ids dropped. */
function machineAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => i.address.replace(/%.*$/, ""));
}
