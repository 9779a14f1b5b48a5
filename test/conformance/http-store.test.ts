// Plain http(s) GET artifacts against a real local HTTP server: read, missing, server errors
// retryable, writes refused; and the host rules on every hop: redirects re-checked after resolving
// the name, the connection made to the address that was checked. The servers here are loopback,
// which the rules call private: the tests of the rules stand in a classification where one
// loopback address (127.0.0.1) plays a public one and another (127.0.0.2) a private one, and a
// resolver of test names; everything else is the store's real code path.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { NotFoundError, PermanentError, RequestError, RetryableError } from "../../src/errors.ts";
import { classifyHost, type HostClass } from "../../src/request/location-policy.ts";
import type { Resolver } from "../../src/request/resolve-host.ts";
import { HttpStore } from "../../src/storage/http/http-store.ts";
import { Readable } from "node:stream";

let server: ReturnType<typeof Bun.serve>;
/** A "private" server on 127.0.0.2: it must never be asked anything while the rules refuse it. */
let inside: ReturnType<typeof Bun.serve>;
const insideHits: string[] = [];
beforeAll(() => {
  inside = Bun.serve({
    hostname: "127.0.0.2",
    port: 0,
    fetch(req) {
      insideHits.push(new URL(req.url).pathname);
      return new Response("internal secret", { headers: { etag: '"i"' } });
    },
  });
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const url = new URL(req.url);
      const path = url.pathname;
      if (path === "/data.bin") return new Response("payload", { headers: { etag: '"v1"' } });
      if (path === "/broken") return new Response("oops", { status: 503 });
      if (path === "/hop") return Response.redirect(`http://127.0.0.1:${server.port}/data.bin`, 302);
      if (path === "/to") return new Response(null, { status: 302, headers: { location: url.searchParams.get("u")! } });
      if (path === "/loop") return Response.redirect(`http://127.0.0.1:${server.port}/loop`, 302);
      return new Response("nope", { status: 404 });
    },
  });
});
afterAll(() => {
  server.stop(true);
  inside.stop(true);
});

/** 127.0.0.1 plays a public address; 127.0.0.2 and every real private range stay private. */
const classify = (host: string): HostClass => (host === "127.0.0.1" ? "public" : classifyHost(host));
const names: Record<string, string> = {
  "public.test": "127.0.0.1",
  "private.test": "127.0.0.2",
  "metadata.test": "169.254.169.254",
};
let lookups = 0;
const resolver: Resolver = async (host) => {
  lookups++;
  const address = names[host];
  if (!address) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return [{ address, family: 4 }];
};

describe("http store", () => {
  const store = new HttpStore({ allowPrivate: true });
  const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;

  test("head and get of an existing object", async () => {
    const info = await store.head(url("/data.bin"));
    expect(info?.version).toBe('"v1"');
    const chunks: Buffer[] = [];
    for await (const c of await store.get(url("/data.bin"))) chunks.push(Buffer.from(c));
    expect(Buffer.concat(chunks).toString()).toBe("payload");
  });

  test("missing object, server error, read-only", async () => {
    expect(await store.head(url("/missing"))).toBeUndefined();
    await expect(store.get(url("/missing"))).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.get(url("/broken"))).rejects.toBeInstanceOf(RetryableError);
    await expect(store.put(url("/x"), Readable.from(["x"]))).rejects.toBeInstanceOf(PermanentError);
  });
});

describe("http store: host rules on every hop", () => {
  const strict = new HttpStore({ allowPrivate: false, resolve: { resolver, classify } });
  const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;
  const read = async (r: Readable) => {
    const chunks: Buffer[] = [];
    for await (const c of r) chunks.push(Buffer.from(c));
    return Buffer.concat(chunks).toString();
  };

  test("without --allow-private-endpoints a loopback URL is refused before connecting", async () => {
    const real = new HttpStore({ allowPrivate: false });
    await expect(real.get(url("/data.bin"))).rejects.toBeInstanceOf(RequestError);
    await expect(real.head(`http://127.0.0.2:${inside.port}/x`)).rejects.toThrow(/--allow-private-endpoints/);
    expect(insideHits).toEqual([]);
  });

  test("a redirect to an allowed host is followed (and re-checked)", async () => {
    expect(await read(await strict.get(url("/hop")))).toBe("payload");
  });

  test("a redirect to a private address, or to a name resolving to one, is refused and never connected", async () => {
    for (const target of [
      `http://127.0.0.2:${inside.port}/secret`,
      `http://private.test:${inside.port}/secret`,
      `http://10.0.0.1:${inside.port}/x`,
      `http://[::1]:${inside.port}/x`,
    ]) {
      const err = await strict.get(url(`/to?u=${encodeURIComponent(target)}`)).catch((e) => e);
      expect(err).toBeInstanceOf(RequestError);
      expect(err.message).toContain("redirect 1");
      expect(err.message).toMatch(/private|loopback/);
    }
    expect(insideHits).toEqual([]);
  });

  test("metadata and link-local are refused on any hop even with --allow-private-endpoints", async () => {
    const open = new HttpStore({ allowPrivate: true, resolve: { resolver, classify } });
    for (const target of [
      "http://169.254.169.254/latest/meta-data/",
      "http://metadata.test/latest/",
      "http://[fe80::1]/x",
      "http://metadata.google.internal/x",
    ]) {
      const err = await open.get(url(`/to?u=${encodeURIComponent(target)}`)).catch((e) => e);
      expect(err).toBeInstanceOf(RequestError);
      expect(err.message).toMatch(/metadata|link-local/);
    }
  });

  test("a name is resolved once per connection and the connection goes to the checked address (no rebinding)", async () => {
    // public.test resolves to the "public" 127.0.0.1 for the check; a second lookup (by the
    // connection) would get the private server, and is never made.
    let calls = 0;
    const rebinding: Resolver = async () => {
      calls++;
      return [{ address: calls === 1 ? "127.0.0.1" : "127.0.0.2", family: 4 }];
    };
    const store = new HttpStore({ allowPrivate: false, resolve: { resolver: rebinding, classify } });
    expect(await read(await store.get(`http://public.test:${server.port}/data.bin`))).toBe("payload");
    expect(calls).toBe(1);
    expect(insideHits).toEqual([]);
  });

  test("redirects to other schemes and endless redirects are refused", async () => {
    const open = new HttpStore({ allowPrivate: true });
    await expect(open.get(url(`/to?u=${encodeURIComponent("file:///etc/passwd")}`))).rejects.toThrow(/http\(s\)/);
    await expect(open.get(url("/loop"))).rejects.toThrow(/redirects more than/);
  });

  test("a name that does not resolve is retryable", async () => {
    await expect(strict.get("http://nowhere.test/x")).rejects.toBeInstanceOf(RetryableError);
    expect(lookups).toBeGreaterThan(0);
  });
});
