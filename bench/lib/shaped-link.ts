// A shaped link for the transfer bench: a TCP proxy on a loopback port in front of a server
// (s3rver) that makes each TCP connection look like one to a distant object store. Per
// connection and per direction:
//
// - first-byte latency: the first bytes that arrive in a direction are held `firstByteDelayMs`
//   before they are forwarded (later bytes are not delayed: a kept-alive connection pays it once);
// - a throughput cap: a token bucket of `bytesPerSecond` (burst `burstBytes`, starting empty),
//   so every connection gets its own cap and N connections together get N times it. Data moves
//   in slices of at most 64 KiB; a slice goes when the bucket is not in debt and is paid for
//   afterwards, so the long-run rate is exact, and a timer that fires late (a busy event loop)
//   costs nothing as long as what was saved up meanwhile fits the bucket (`burstBytes`).
//
// Backpressure, no unbounded buffering: while a chunk waits for tokens (or for the far side to
// drain) its source socket is paused, so at most one read chunk per direction sits in the proxy
// and the kernel's socket buffers push back on the sender.

import { connect, createServer, type Server, type Socket } from "node:net";

export type LinkShape = {
  /** Cap per connection and direction, bytes per second (default 12 MB/s = 12e6). */
  bytesPerSecond?: number;
  /** Held before the first byte of each direction of each connection (default 20 ms). */
  firstByteDelayMs?: number;
  /** The most saved up while nothing was sent: the largest burst after an idle spell (default 256 KiB). */
  burstBytes?: number;
};

export type LinkStats = {
  connections: number;
  /** Bytes forwarded client → server and server → client. */
  bytesUp: number;
  bytesDown: number;
  /**
   * Sending time lost to late timers (the proxy's event loop was busy for longer than the bucket
   * holds), summed over every direction of every connection: 0 means the cap was kept exactly.
   */
  lateMs: number;
};

export const DEFAULT_SHAPE = { bytesPerSecond: 12e6, firstByteDelayMs: 20, burstBytes: 256 * 1024 } as const;
/** Data is forwarded in slices of at most this many bytes, each paid for from the bucket. */
const SLICE_BYTES = 64 * 1024;

/** "12 MB/s per connection, 20 ms first byte". */
export function describeShape(shape: LinkShape = {}): string {
  const rate = shape.bytesPerSecond ?? DEFAULT_SHAPE.bytesPerSecond;
  const delay = shape.firstByteDelayMs ?? DEFAULT_SHAPE.firstByteDelayMs;
  return `${Number((rate / 1e6).toFixed(2))} MB/s per connection, ${delay} ms first byte`;
}

/**
 * Tokens (bytes) refilled at `rate` per second, saved up to `depth`. A slice may be sent whenever
 * the balance is not negative and is then owed: the next one waits until the debt is paid. So a
 * timer that fires late loses nothing (the balance it finds is higher), and the long-run rate is
 * exactly `rate` however the slices fall.
 */
class TokenBucket {
  private tokens = 0;
  private stamp = performance.now();

  constructor(
    private readonly rate: number,
    private readonly depth: number,
  ) {}

  /**
   * Waits until `n` bytes may go. Returns the milliseconds of sending time lost because the wait
   * overran by more than the bucket holds (a busy event loop): the link was slower than its cap.
   */
  async take(n: number): Promise<number> {
    let lostMs = 0;
    for (let slept = false; ; slept = true) {
      const now = performance.now();
      const saved = this.tokens + ((now - this.stamp) * this.rate) / 1000;
      if (slept && saved > this.depth) lostMs += ((saved - this.depth) * 1000) / this.rate;
      this.tokens = Math.min(this.depth, saved);
      this.stamp = now;
      if (this.tokens >= 0) {
        this.tokens -= n;
        return lostMs;
      }
      await Bun.sleep(Math.max(1, (-this.tokens * 1000) / this.rate));
    }
  }

  /** Start counting from now: nothing saved up while the first byte was held. */
  restart(): void {
    this.tokens = 0;
    this.stamp = performance.now();
  }
}

export class ShapedLink {
  readonly stats: LinkStats = { connections: 0, bytesUp: 0, bytesDown: 0, lateMs: 0 };
  readonly shape: Required<LinkShape>;
  port = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly upstreamPort: number,
    shape: LinkShape = {},
    private readonly upstreamHost = "127.0.0.1",
  ) {
    this.shape = { ...DEFAULT_SHAPE, ...shape };
    if (!(this.shape.bytesPerSecond > 0)) throw new Error("bytesPerSecond must be positive");
  }

  /** "127.0.0.1:PORT" of the proxy. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** "http://127.0.0.1:PORT" of the proxy. */
  get endpoint(): string {
    return `http://${this.host}`;
  }

  async start(): Promise<number> {
    const server = createServer({ allowHalfOpen: true }, (client) => this.serve(client));
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
    const upstream = connect({ port: this.upstreamPort, host: this.upstreamHost, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
    }
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", destroyBoth);
    upstream.on("error", destroyBoth);
    // An end is passed on once what came before it is forwarded (pipe); a reset resets both.
    client.on("close", () => this.sockets.delete(client));
    upstream.on("close", () => this.sockets.delete(upstream));
    this.pipe(client, upstream, (n) => (this.stats.bytesUp += n));
    this.pipe(upstream, client, (n) => (this.stats.bytesDown += n));
  }

  /** One direction: `from` → `to`, first byte held, then paced by its own bucket. */
  private pipe(from: Socket, to: Socket, count: (n: number) => void): void {
    const bucket = new TokenBucket(this.shape.bytesPerSecond, this.shape.burstBytes);
    let first = true;
    let busy: Promise<void> = Promise.resolve();
    const forward = async (chunk: Buffer) => {
      if (first) {
        first = false;
        if (this.shape.firstByteDelayMs > 0) await Bun.sleep(this.shape.firstByteDelayMs);
        bucket.restart();
      }
      for (let at = 0; at < chunk.length; at += SLICE_BYTES) {
        const slice = chunk.subarray(at, Math.min(chunk.length, at + SLICE_BYTES));
        this.stats.lateMs += await bucket.take(slice.length);
        if (to.destroyed) return;
        count(slice.length);
        if (!to.write(slice) && !to.destroyed) {
          await new Promise<void>((ok) => {
            const done = () => {
              to.off("drain", done);
              to.off("close", done);
              ok();
            };
            to.on("drain", done);
            to.on("close", done);
          });
        }
      }
    };
    from.on("data", (chunk: Buffer) => {
      from.pause();
      busy = busy
        .then(() => forward(chunk))
        .then(
          () => {
            if (!from.destroyed) from.resume();
          },
          () => void from.destroy(),
        );
    });
    from.on("end", () => {
      void busy.then(() => {
        if (!to.destroyed) to.end();
      });
    });
  }
}
