// Plain http(s) GET artifacts against a real local HTTP server: read, missing, server errors
// retryable, writes refused.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { NotFoundError, PermanentError, RetryableError } from "../../src/errors.ts";
import { HttpStore } from "../../src/storage/http/http-store.ts";
import { Readable } from "node:stream";

let server: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/data.bin") return new Response("payload", { headers: { etag: '"v1"' } });
      if (path === "/broken") return new Response("oops", { status: 503 });
      return new Response("nope", { status: 404 });
    },
  });
});
afterAll(() => server.stop(true));

describe("http store", () => {
  const store = new HttpStore();
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
