// A fault-injecting TCP proxy for HTTP storage servers (bench/chaos.ts): every chunk may be
// delayed, and each upload request (PUT or POST) may have its connection reset after a random
// number of its body's bytes, or be answered `503 Slow Down` without reaching the server.
// Requests are recognised by the method at the start of a chunk, which is where a client that
// waits for each answer begins its next request on a kept-alive connection.

import { createServer, connect, type Server, type Socket } from "node:net";

export type FaultPlan = {
  /** Each forwarded chunk waits a random time in this range (both directions). */
  delayMs?: [number, number];
  /** Chance that an upload request's connection is reset part way through its body. */
  resetProbability?: number;
  /** Chance that an upload request is answered 503 Slow Down by the proxy itself. */
  unavailableProbability?: number;
};

export type FaultStats = {
  connections: number;
  uploads: number;
  resets: number;
  unavailable: number;
  delayedChunks: number;
};

const REQUEST_START = /^(GET|PUT|POST|HEAD|DELETE) /;
const UPLOAD_METHOD = /^(PUT|POST) /;
const SLOW_DOWN_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate (fault proxy).</Message></Error>';
const SLOW_DOWN = `HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(SLOW_DOWN_BODY)}\r\nConnection: close\r\n\r\n${SLOW_DOWN_BODY}`;

const between = ([min, max]: [number, number]) => min + Math.random() * (max - min);

export class FaultProxy {
  readonly stats: FaultStats = { connections: 0, uploads: 0, resets: 0, unavailable: 0, delayedChunks: 0 };
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly upstreamPort: number,
    public plan: FaultPlan,
  ) {}

  async start(): Promise<number> {
    const server = createServer((client) => this.serve(client));
    this.server = server;
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }

  private serve(client: Socket): void {
    this.stats.connections++;
    const upstream = connect(this.upstreamPort, "127.0.0.1");
    this.sockets.add(client);
    this.sockets.add(upstream);
    let toServer: Promise<void> = Promise.resolve();
    let toClient: Promise<void> = Promise.resolve();
    /** Bytes of the current request sent on, and where it is to be cut (undefined: not cut). */
    let sent = 0;
    let cutAt: number | undefined;
    let dead = false;
    const kill = () => {
      if (dead) return;
      dead = true;
      // A reset, not a polite close: the client sees ECONNRESET (or a short body) mid-request.
      const c = client as Socket & { resetAndDestroy?: () => void };
      if (typeof c.resetAndDestroy === "function") c.resetAndDestroy();
      else client.destroy();
      upstream.destroy();
    };
    const delay = () => {
      const d = this.plan.delayMs;
      if (!d) return 0;
      this.stats.delayedChunks++;
      return between(d);
    };
    client.on("data", (chunk: Buffer) => {
      if (dead) return;
      const head = chunk.subarray(0, 8).toString("latin1");
      if (REQUEST_START.test(head)) {
        sent = 0;
        cutAt = undefined;
        if (UPLOAD_METHOD.test(head)) {
          this.stats.uploads++;
          const r = Math.random();
          const unavailable = this.plan.unavailableProbability ?? 0;
          const reset = this.plan.resetProbability ?? 0;
          if (r < unavailable) {
            this.stats.unavailable++;
            dead = true;
            upstream.destroy();
            client.end(SLOW_DOWN);
            return;
          }
          if (r < unavailable + reset) {
            const text = chunk.toString("latin1");
            const headerEnd = text.indexOf("\r\n\r\n");
            const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
            const bodyStart = headerEnd >= 0 ? headerEnd + 4 : chunk.length;
            cutAt = bodyStart + Math.floor(Math.random() * Math.max(1, length));
          }
        }
      }
      let piece = chunk;
      let cutting = false;
      if (cutAt !== undefined && sent + chunk.length >= cutAt) {
        piece = chunk.subarray(0, Math.max(0, cutAt - sent));
        cutting = true;
      }
      sent += piece.length;
      const wait = delay();
      toServer = toServer.then(async () => {
        if (wait) await Bun.sleep(wait);
        if (dead) return;
        if (piece.length) upstream.write(piece);
        if (cutting) {
          this.stats.resets++;
          kill();
        }
      });
    });
    upstream.on("data", (chunk: Buffer) => {
      const wait = delay();
      toClient = toClient.then(async () => {
        if (wait) await Bun.sleep(wait);
        if (!dead) client.write(chunk);
      });
    });
    const closeBoth = () => {
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      void toClient.then(() => client.end());
      void toServer.then(() => upstream.end());
    };
    client.on("error", kill);
    upstream.on("error", kill);
    client.on("close", closeBoth);
    upstream.on("close", closeBoth);
  }
}
