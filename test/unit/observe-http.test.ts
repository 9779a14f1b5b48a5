// The --prom-address endpoint's own defences, in-process: the admin token file (read once, refused
// when others may read it, compared in constant time), the Host allow-list against DNS rebinding,
// the Origin check, and the real server answering POST /drain and /resume only with the token and
// an answered Host, while the GETs Prometheus and the probes use stay open.

import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminTokenError, adminToken, readAdminToken } from "../../src/observe/admin-token.ts";
import { RunnerEvents, type RunnerState } from "../../src/observe/events.ts";
import { LoopHealth } from "../../src/observe/health.ts";
import { allowedHostsProblems, HostAllowList, parseHostPort } from "../../src/observe/host-allow-list.ts";
import { startObserveServer, type ObserveServer } from "../../src/observe/http-server.ts";
import { RunnerMetrics } from "../../src/observe/metrics.ts";
import { StatusState } from "../../src/observe/status-state.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";

function tokenFile(content: string, mode: number): string {
  const path = join(mkdtempSync(join(tmpdir(), "token-")), "admin-token");
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

describe("--admin-token-file", () => {
  test("a 0600 file with one line is taken; the token is compared, not logged", () => {
    const warnings: string[] = [];
    const t = readAdminToken(tokenFile(`${TOKEN}\n`, 0o600), (m) => warnings.push(m));
    expect(warnings).toEqual([]);
    expect(t.matches(`Bearer ${TOKEN}`)).toBe(true);
    expect(t.matches(`bearer ${TOKEN}`)).toBe(true);
    expect(t.matches(`Bearer ${TOKEN}x`)).toBe(false);
    expect(t.matches(`Bearer ${TOKEN.slice(0, -1)}`)).toBe(false);
    expect(t.matches(`Basic ${TOKEN}`)).toBe(false);
    expect(t.matches(TOKEN)).toBe(false);
    expect(t.matches("Bearer ")).toBe(false);
    expect(t.matches("")).toBe(false);
    expect(t.matches(null)).toBe(false);
    expect(JSON.stringify(t)).not.toContain(TOKEN);
  });

  test("refused: missing, empty, short, several lines, spaces, readable or writable by others, group-writable; group-readable warns", () => {
    const refused = (path: string) => {
      try {
        readAdminToken(path, () => undefined);
      } catch (err) {
        expect(err).toBeInstanceOf(AdminTokenError);
        expect((err as Error).message).not.toContain(TOKEN);
        return (err as Error).message;
      }
      throw new Error(`${path} was taken`);
    };
    expect(refused("/nonexistent/admin-token")).toContain("cannot be read (ENOENT)");
    expect(refused(tokenFile("\n", 0o600))).toContain("empty");
    expect(refused(tokenFile("short\n", 0o600))).toContain("shorter than 16 characters");
    expect(refused(tokenFile(`${TOKEN}\n${TOKEN}\n`, 0o600))).toContain("more than one line");
    expect(refused(tokenFile(`${TOKEN} ${TOKEN}`, 0o600))).toContain("one word");
    expect(refused(tokenFile(TOKEN, 0o644))).toContain("mode 0644 lets other users read or change it");
    expect(refused(tokenFile(TOKEN, 0o602))).toContain("lets other users");
    expect(refused(tokenFile(TOKEN, 0o620))).toContain("lets its group change it");
    expect(refused(mkdtempSync(join(tmpdir(), "token-dir-")))).toContain("not a regular file");
    const warnings: string[] = [];
    readAdminToken(tokenFile(TOKEN, 0o440), (m) => warnings.push(m));
    expect(warnings.join("\n")).toContain("readable by its group (mode 0440)");
  });
});

describe("Host allow-list", () => {
  const list = (allowed = "", bound = "127.0.0.1") =>
    new HostAllowList({
      boundHost: bound,
      port: 9090,
      machineName: "GPU-Box-1",
      allowed,
      interfaceAddresses: () => ["10.1.2.3", "fe80::1", "127.0.0.1"],
    });

  test("answers the bound address, loopback, the machine's name and interface addresses on the listening port", () => {
    const l = list();
    for (const h of [
      "127.0.0.1:9090",
      "localhost:9090",
      "LOCALHOST:9090",
      "[::1]:9090",
      "gpu-box-1:9090",
      "10.1.2.3:9090",
      "[fe80::1]:9090",
      "localhost.:9090",
    ])
      expect({ h, ok: l.allowsHost(h) }).toEqual({ h, ok: true });
  });

  test("refuses other names (DNS rebinding), other ports, other addresses, no Host and junk", () => {
    const l = list();
    for (const h of [
      "evil.example:9090",
      "evil.example",
      "127.0.0.1.nip.io:9090",
      "localhost:9091",
      "127.0.0.1",
      "10.9.9.9:9090",
      "",
      "a b:9090",
      "[::1",
      "host:99999",
      "[zz]:9090",
    ])
      expect({ h, ok: l.allowsHost(h) }).toEqual({ h, ok: false });
    expect(l.allowsHost(null)).toBe(false);
  });

  test("--http-allowed-hosts: a name answers on any port, name:port on that port only", () => {
    const l = list("runner.example.org, proxy.example.org:8443, [2001:db8::7]:9090");
    expect(l.allowsHost("runner.example.org:9090")).toBe(true);
    expect(l.allowsHost("runner.example.org:443")).toBe(true);
    expect(l.allowsHost("runner.example.org")).toBe(true);
    expect(l.allowsHost("proxy.example.org:8443")).toBe(true);
    expect(l.allowsHost("proxy.example.org:9090")).toBe(false);
    expect(l.allowsHost("[2001:db8::7]:9090")).toBe(true);
    expect(allowedHostsProblems("a.example, b.example:80,, [::1]:1")).toEqual([]);
    expect(allowedHostsProblems("http://a.example/, b c")).toEqual([
      '--http-allowed-hosts: "http://a.example/" is not a host name or address with an optional :port',
      '--http-allowed-hosts: "b c" is not a host name or address with an optional :port',
    ]);
  });

  test("bound to every interface (:9090): the pod IP of a Kubernetes probe is answered, and 0.0.0.0 as printed", () => {
    const l = list("", "0.0.0.0");
    expect(l.allowsHost("10.1.2.3:9090")).toBe(true);
    expect(l.allowsHost("0.0.0.0:9090")).toBe(true);
    expect(l.allowsHost("evil.example:9090")).toBe(false);
  });

  test("interface addresses are read again (at most every 5 s) when an unseen address is named", () => {
    let addresses = ["10.0.0.1"];
    let reads = 0;
    const clock = { ms: 0 };
    const l = new HostAllowList({
      boundHost: "0.0.0.0",
      port: 9090,
      machineName: "m",
      allowed: "",
      interfaceAddresses: () => (reads++, addresses),
      nowMs: () => clock.ms,
    });
    expect(l.allowsHost("10.0.0.2:9090")).toBe(false);
    addresses = ["10.0.0.1", "10.0.0.2"];
    expect(l.allowsHost("10.0.0.2:9090")).toBe(false); // within 5 s: not read again
    clock.ms += 5_000;
    expect(l.allowsHost("10.0.0.2:9090")).toBe(true);
    expect(reads).toBe(2);
  });

  test("Origin: none (curl, kubectl) or a page of an answered host; null and foreign pages refused", () => {
    const l = list("runner.example.org");
    expect(l.allowsOrigin(null)).toBe(true);
    expect(l.allowsOrigin("http://127.0.0.1:9090")).toBe(true);
    expect(l.allowsOrigin("https://runner.example.org")).toBe(true);
    expect(l.allowsOrigin("http://evil.example:9090")).toBe(false);
    expect(l.allowsOrigin("http://127.0.0.1:8000")).toBe(false);
    expect(l.allowsOrigin("null")).toBe(false);
    expect(l.allowsOrigin("file:///tmp/x.html")).toBe(false);
  });

  test("parseHostPort", () => {
    expect(parseHostPort("Example.ORG.:80")).toEqual({ host: "example.org", port: 80 });
    expect(parseHostPort("[::1]")).toEqual({ host: "::1" });
    expect(parseHostPort("::1")).toBeUndefined();
    expect(parseHostPort("host:65536")).toBeUndefined();
  });
});

describe("the endpoint (Bun.serve, in-process)", () => {
  let server: ObserveServer | undefined;
  const closers: Array<() => void> = [];
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    for (const c of closers.splice(0)) c();
  });

  function start(options: { token?: string } = {}) {
    const events = new RunnerEvents();
    const control = {
      state: "running" as RunnerState,
      setState(state: RunnerState) {
        this.state = state;
      },
    };
    const metrics = new RunnerMetrics({
      events,
      host: "box",
      runnerId: "r1",
      version: "0",
      pool: () =>
        ({
          capacity: { cpus: 1, ramBytes: 0, hddBytes: 0, gpus: 0 },
          used: { cpus: 0, ramBytes: 0, hddBytes: 0, gpus: 0 },
          reservations: 0,
        }) as any,
      gpuSlotsPerCard: 1,
      state: () => control.state,
      processMetrics: false,
    });
    const health = new LoopHealth({ events, state: () => control.state });
    const status = new StatusState({ events, runnerId: "r1", version: "0", host: "box", state: () => control.state });
    closers.push(
      () => metrics.close(),
      () => health.close(),
      () => status.close(),
    );
    const warnings: string[] = [];
    server = startObserveServer({
      address: { hostname: "127.0.0.1", port: 0 },
      metrics,
      health,
      status,
      control,
      adminToken: options.token ? adminToken("/etc/studio-runner/admin-token", options.token) : undefined,
      machineName: "box",
      interfaceAddresses: () => [],
      log: { warn: (m) => warnings.push(m) },
    });
    const port = Number(new URL(server.url).port);
    return { url: server.url, port, control, warnings };
  }

  const post = (url: string, path: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: "POST", headers });

  test("without --admin-token-file every POST is refused (403 saying how to enable it); GETs answer", async () => {
    const { url, control, warnings } = start();
    for (const path of ["/drain", "/drain?exit=true", "/resume"]) {
      const r = await post(url, path, { authorization: `Bearer ${TOKEN}` });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: string }).error).toContain("start the runner with --admin-token-file");
    }
    expect(control.state).toBe("running");
    for (const path of ["/metrics", "/healthz", "/status", "/"])
      expect({ path, status: (await fetch(`${url}${path}`)).status }).toEqual({ path, status: 200 });
    expect((await fetch(`${url}/readyz`)).status).toBe(503); // answered: not ready before a first poll
    for (let i = 0; i < 5; i++) await post(url, "/drain");
    // One line per kind of refusal per 10 s, whatever the number of requests.
    expect(warnings).toEqual([
      "observability endpoint: refused POST /drain from 127.0.0.1: no --admin-token-file is set",
      "observability endpoint: refused POST /drain?exit=true from 127.0.0.1: no --admin-token-file is set",
      "observability endpoint: refused POST /resume from 127.0.0.1: no --admin-token-file is set",
    ]);
  });

  test("with a token: none or a wrong one is 401; the right one drains and resumes; never logged", async () => {
    const { url, control, warnings } = start({ token: TOKEN });
    const none = await post(url, "/drain");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    expect((await post(url, "/drain", { authorization: "Bearer wrong-token-wrong-token" })).status).toBe(401);
    expect((await post(url, "/drain", { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` })).status).toBe(401);
    expect(control.state).toBe("running");
    const drained = await post(url, "/drain", { authorization: `Bearer ${TOKEN}` });
    expect(drained.status).toBe(200);
    expect(await drained.json()).toEqual({ state: "suspended" });
    expect(control.state).toBe("suspended");
    expect((await post(url, "/resume")).status).toBe(401);
    expect(control.state).toBe("suspended");
    expect(await (await post(url, "/resume", { authorization: `Bearer ${TOKEN}` })).json()).toEqual({
      state: "running",
    });
    expect((await fetch(`${url}/drain`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(405);
    expect(warnings).toEqual([
      "observability endpoint: refused POST /drain from 127.0.0.1: no bearer token",
      "observability endpoint: refused POST /drain from 127.0.0.1: wrong bearer token",
      "observability endpoint: refused POST /resume from 127.0.0.1: no bearer token",
    ]);
    expect(warnings.join("\n")).not.toContain(TOKEN);
  });

  test("DNS rebinding: a foreign Host is refused (421) for GETs and for POSTs even with the right token", async () => {
    const { url, port, control, warnings } = start({ token: TOKEN });
    for (const path of ["/status", "/metrics", "/"])
      expect((await fetch(`${url}${path}`, { headers: { host: `evil.example:${port}` } })).status).toBe(421);
    const r = await post(url, "/drain", { host: `evil.example:${port}`, authorization: `Bearer ${TOKEN}` });
    expect(r.status).toBe(421);
    expect(((await r.json()) as { error: string }).error).toContain("--http-allowed-hosts");
    expect(control.state).toBe("running");
    expect((await fetch(`${url}/healthz`, { headers: { host: `localhost:${port}` } })).status).toBe(200);
    expect(warnings[0]).toBe(
      `observability endpoint: refused GET "/status" from 127.0.0.1: Host "evil.example:${port}" is not an answered host`,
    );
  });

  test("a foreign Origin may not change the state even with the token and a good Host", async () => {
    const { url, port, control } = start({ token: TOKEN });
    const r = await post(url, "/drain", { origin: `http://evil.example:${port}`, authorization: `Bearer ${TOKEN}` });
    expect(r.status).toBe(403);
    expect(control.state).toBe("running");
    expect(
      (await post(url, "/drain", { origin: `http://127.0.0.1:${port}`, authorization: `Bearer ${TOKEN}` })).status,
    ).toBe(200);
  });

  test("a request without a Host (HTTP/1.0) is refused, not an internal error", async () => {
    const { port, warnings } = start({ token: TOKEN });
    const answer = await new Promise<string>((resolve, reject) => {
      let got = "";
      const s = connect(port, "127.0.0.1", () => s.write("POST /drain HTTP/1.0\r\n\r\n"));
      s.on("data", (d) => (got += d.toString()));
      s.on("end", () => resolve(got));
      s.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.[01] 421/);
    expect(warnings.join("\n")).not.toContain("internal");
  });
});
