// The transfer bench's shaped link (bench/lib/shaped-link.ts) against plain TCP servers on
// loopback: the cap per connection each way (2 MB at 8 MB/s ≈ 250 ms), two connections each with
// their own cap, and the first-byte delay paid once per direction of a connection. Real time, with
// tolerances wide enough for a busy 2-core machine; the whole file takes about a second.

import { afterEach, describe, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import { ShapedLink } from "../../bench/lib/shaped-link.ts";

const MB = 1e6;
const opened: { stop(): Promise<void> }[] = [];

afterEach(async () => {
  for (const o of opened.splice(0)) await o.stop();
});

/** A TCP server on a loopback port, stopped after the test. */
async function serve(onConnection: (s: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onConnection(s);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  opened.push({
    stop: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  });
  return (server.address() as { port: number }).port;
}

async function link(upstreamPort: number, shape: ConstructorParameters<typeof ShapedLink>[1]): Promise<ShapedLink> {
  const l = new ShapedLink(upstreamPort, shape);
  await l.start();
  opened.push(l);
  return l;
}

/** Connects to the port, reads until the far side ends; bytes and milliseconds from connect. */
function download(port: number): Promise<{ bytes: number; ms: number }> {
  return new Promise((ok, fail) => {
    const t = performance.now();
    let bytes = 0;
    const s = connect(port, "127.0.0.1");
    s.on("data", (d: Buffer) => (bytes += d.length));
    s.on("end", () => {
      ok({ bytes, ms: performance.now() - t });
      s.destroy();
    });
    s.on("error", fail);
  });
}

describe("shaped link", () => {
  test("server → client: 2 MB at 8 MB/s takes about 250 ms, every byte arrives", async () => {
    const payload = Buffer.alloc(2 * MB, 7);
    const port = await serve((s) => s.end(payload));
    const l = await link(port, { bytesPerSecond: 8 * MB, firstByteDelayMs: 0 });
    const { bytes, ms } = await download(l.port);
    expect(bytes).toBe(2 * MB);
    expect(ms).toBeGreaterThan(235);
    expect(ms).toBeLessThan(400);
    expect(l.stats.bytesDown).toBe(2 * MB);
  });

  test("client → server: 2 MB at 8 MB/s takes about 250 ms (the sender is held back)", async () => {
    let received = 0;
    let lastByte = 0;
    const done = Promise.withResolvers<void>();
    const port = await serve((s) => {
      s.on("data", (d: Buffer) => {
        received += d.length;
        lastByte = performance.now();
      });
      s.on("end", () => {
        done.resolve();
        s.end();
      });
    });
    const l = await link(port, { bytesPerSecond: 8 * MB, firstByteDelayMs: 0 });
    const t = performance.now();
    const c = connect(l.port, "127.0.0.1");
    c.end(Buffer.alloc(2 * MB, 1));
    await done.promise;
    c.destroy();
    expect(received).toBe(2 * MB);
    expect(lastByte - t).toBeGreaterThan(235);
    expect(lastByte - t).toBeLessThan(400);
  });

  test("two connections at once each get their own cap", async () => {
    const payload = Buffer.alloc(2 * MB, 3);
    const port = await serve((s) => s.end(payload));
    const l = await link(port, { bytesPerSecond: 8 * MB, firstByteDelayMs: 0 });
    const t = performance.now();
    const both = await Promise.all([download(l.port), download(l.port)]);
    const wall = performance.now() - t;
    for (const r of both) expect(r.bytes).toBe(2 * MB);
    // One shared cap would need 500 ms for the 4 MB.
    expect(wall).toBeGreaterThan(235);
    expect(wall).toBeLessThan(420);
    expect(l.stats.connections).toBe(2);
  });

  test("the first byte of each direction waits the delay, later bytes of the connection do not", async () => {
    const port = await serve((s) => s.on("data", (d: Buffer) => s.write(d)));
    const l = await link(port, { bytesPerSecond: 100 * MB, firstByteDelayMs: 60 });
    const c = connect(l.port, "127.0.0.1");
    await new Promise<void>((ok) => c.once("connect", () => ok()));
    const echo = async () => {
      const t = performance.now();
      const back = new Promise<void>((ok) => c.once("data", () => ok()));
      c.write("ping");
      await back;
      return performance.now() - t;
    };
    const first = await echo();
    const second = await echo();
    c.destroy();
    // 60 ms on the way in and 60 ms on the way back.
    expect(first).toBeGreaterThan(115);
    expect(first).toBeLessThan(250);
    expect(second).toBeLessThan(40);
  });
});
