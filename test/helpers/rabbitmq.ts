// A real RabbitMQ for tests on 127.0.0.1:5672 (management API on :15672): one that runs already
// is used as it is; otherwise one is started under a file lock, and a watchdog stops it (if it is
// still the node it started, by pid; then epmd by pid) once no test process that registered with
// it lives any more, so test files and concurrent test runs share one broker and never stop it
// under each other.
// Also: unique queue names, cleanup, and broker-side actions (close connections, restart).

import amqp from "amqplib";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { REPO } from "./e2e.ts";

export const AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f";
export const MANAGEMENT_URL = "http://127.0.0.1:15672";
const STATE_DIR = join(REPO, ".test-tmp", "rabbitmq");

const ENSURE_SCRIPT = String.raw`
set -u
DIR="$1"; USER_PID="$2"
mkdir -p "$DIR/users"
exec 8>"$DIR/lock"
flock -w 170 8 || { echo "timed out waiting for $DIR/lock" >&2; exit 6; }
open_port() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
api_up() { curl -sf -u guest:guest -o /dev/null http://127.0.0.1:15672/api/overview; }
app_running() { rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }
wait_running() { for i in $(seq 1 240); do app_running && return 0; sleep 0.5; done; return 1; }
node_pid() { rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -dc 0-9; }
if ! open_port 5672; then
  command -v rabbitmq-server >/dev/null || { echo "rabbitmq-server is not installed" >&2; exit 3; }
  # No epmd means no node: start epmd ourselves (pid known) before any rabbitmq command, which
  # would otherwise start one of its own. With epmd up, a node may run with its application
  # stopped (someone restarts it): that one is not ours to start or stop.
  epmd_up=1
  open_port 4369 || epmd_up=0
  if [ $epmd_up = 1 ] && rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    wait_running || { echo "RabbitMQ's application did not come back" >&2; exit 4; }
  else
    rm -f "$DIR/epmd.pid" "$DIR/managed"
    if [ $epmd_up = 0 ]; then
      setsid epmd -address 127.0.0.1 </dev/null >/dev/null 2>&1 8>&- &
      echo $! > "$DIR/epmd.pid"
      for i in $(seq 1 50); do open_port 4369 && break; sleep 0.1; done
    fi
    # Everything on loopback: AMQP, Erlang distribution, the management API.
    mgmt='-rabbitmq_management tcp_config [{ip,"127.0.0.1"},{port,15672}]'
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $mgmt" \
      rabbitmq-server -detached >"$DIR/start.log" 2>&1 8>&-
    wait_running || { echo "RabbitMQ did not start (see $DIR/start.log)" >&2; exit 4; }
    node_pid > "$DIR/managed"
    # The watchdog: once no registered test process lives, stop the broker it started (same pid), then epmd.
    setsid bash -c '
      DIR="$1"
      while sleep 2; do
        exec 9>"$DIR/lock"; flock 9
        alive=0
        for f in "$DIR"/users/*; do
          [ -e "$f" ] || continue
          if kill -0 "$(basename "$f")" 2>/dev/null; then alive=1; else rm -f "$f"; fi
        done
        if [ $alive = 0 ]; then
          mine=$(cat "$DIR/managed" 2>/dev/null)
          now=$(rabbitmqctl -q eval "os:getpid()." 2>/dev/null | tr -dc 0-9)
          rm -f "$DIR/managed"
          if [ -n "$mine" ] && [ "$mine" = "$now" ]; then
            rabbitmqctl stop >/dev/null 2>&1
            for i in $(seq 1 60); do kill -0 "$mine" 2>/dev/null || break; sleep 0.5; done
          fi
          if [ -f "$DIR/epmd.pid" ]; then kill "$(cat "$DIR/epmd.pid")" 2>/dev/null; rm -f "$DIR/epmd.pid"; fi
          exit 0
        fi
        exec 9>&-
      done' watchdog "$DIR" </dev/null >/dev/null 2>&1 8>&- &
  fi
fi
if ! api_up; then
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 8>&-
  for i in $(seq 1 120); do api_up && break; sleep 0.5; done
  api_up || { echo "the RabbitMQ management API did not come up on :15672" >&2; exit 5; }
fi
if [ -s "$DIR/managed" ]; then touch "$DIR/users/$USER_PID"; fi
exit 0
`;

let ready: Promise<void> | undefined;

/** Make sure a broker with the management API runs on 127.0.0.1; once per test process. */
export function ensureRabbitMQ(): Promise<void> {
  ready ??= (async () => {
    mkdirSync(STATE_DIR, { recursive: true });
    const r = spawnSync("bash", ["-c", ENSURE_SCRIPT, "ensure", STATE_DIR, String(process.pid)], {
      encoding: "utf8",
      timeout: 180_000,
    });
    if (r.status !== 0)
      throw new Error(
        `could not get a RabbitMQ on 127.0.0.1:5672: ${r.stderr || r.error?.message || `exit ${r.status}`}`,
      );
    restoreBrokerSettings();
  })();
  return ready;
}

/** Whether tests can have a broker: one listens, or rabbitmq-server is installed to start one. */
export async function rabbitMQAvailable(): Promise<boolean> {
  if (await portOpen(5672)) return true;
  return spawnSync("bash", ["-c", "command -v rabbitmq-server"]).status === 0;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

let counter = 0;
const RUN = `${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;

/** A queue name the default --queue-match serves, unique to this call. */
export function uniqueQueue(label: string): string {
  return `rmq_${label}_${RUN}_${counter++}`;
}

/** Run fn with a channel of a short-lived connection of its own. */
export async function withChannel<T>(fn: (ch: amqp.Channel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(AMQP_URL);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on("error", () => undefined);
    return await fn(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Delete queues and their failed places (missing ones are fine). */
export async function deleteQueues(names: Iterable<string>): Promise<void> {
  const all = [...names].flatMap((n) => [n, `studioml_failed.${n}`]);
  if (!all.length) return;
  const conn = await amqp.connect(AMQP_URL);
  conn.on("error", () => undefined);
  try {
    for (const name of all) {
      const ch = await conn.createChannel();
      ch.on("error", () => undefined);
      await ch.deleteQueue(name).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Ready messages of a queue (undefined when it does not exist). */
export function readyCount(queue: string): Promise<number | undefined> {
  return withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount).catch(() => undefined);
}

export type PeekedMessage = { body: string; headers: Record<string, unknown>; properties: amqp.MessageProperties };

/** Every message of a queue, left in it (taken unacked, given back when the channel closes). */
export function peekAll(queue: string): Promise<PeekedMessage[]> {
  return withChannel(async (ch) => {
    const out: PeekedMessage[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: false });
      if (!m) return out;
      out.push({ body: m.content.toString("utf8"), headers: m.properties.headers ?? {}, properties: m.properties });
    }
  });
}

export function rabbitmqctl(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync("rabbitmqctl", args, { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/**
 * The broker closes the client connections that call themselves connectionName (as on a network
 * cut or an operator's "force close"), leaving other test processes' connections alone.
 */
export async function closeConnectionsNamed(connectionName: string, timeoutMs = 15_000): Promise<number> {
  const auth = { authorization: `Basic ${btoa("guest:guest")}` };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(`${MANAGEMENT_URL}/api/connections?columns=name,client_properties.connection_name`, {
      headers: auth,
    });
    const list = (await r.json()) as Array<{ name: string; client_properties?: { connection_name?: string } }>;
    const mine = list.filter((c) => c.client_properties?.connection_name === connectionName);
    if (mine.length) {
      for (const c of mine)
        await fetch(`${MANAGEMENT_URL}/api/connections/${encodeURIComponent(c.name)}`, {
          method: "DELETE",
          headers: { ...auth, "x-reason": "test: connection cut" },
        });
      return mine.length;
    }
    // The management API lists new connections after its next statistics tick (a few seconds).
    if (Date.now() > deadline) throw new Error(`no connection named ${connectionName} on the broker`);
    await Bun.sleep(200);
  }
}

/** stop_app, a pause, start_app, then wait for AMQP and the management API. */
export async function restartBroker(pauseMs = 1000): Promise<void> {
  const stop = rabbitmqctl("stop_app");
  if (stop.code !== 0) throw new Error(`rabbitmqctl stop_app failed: ${stop.out}`);
  await Bun.sleep(pauseMs); // the outage itself: the broker stays down this long
  const start = rabbitmqctl("start_app");
  if (start.code !== 0) throw new Error(`rabbitmqctl start_app failed: ${start.out}`);
  for (let i = 0; i < 240; i++) {
    const api = await fetch(`${MANAGEMENT_URL}/api/overview`, {
      headers: { authorization: `Basic ${btoa("guest:guest")}` },
    }).catch(() => undefined);
    if (api?.ok && (await portOpen(5672))) return;
    await Bun.sleep(250);
  }
  throw new Error("RabbitMQ did not come back after start_app");
}

const RESTORE_FILE = join(STATE_DIR, "consumer-timeout-restore.json");

function setBrokerEnv(key: string, value: string) {
  const r = rabbitmqctl("eval", `application:set_env(rabbit, ${key}, ${value}).`);
  if (r.code !== 0) throw new Error(`could not set ${key}: ${r.out}`);
}

/** Settings a test changed and could not put back (it was killed): put them back now. */
function restoreBrokerSettings() {
  if (!existsSync(RESTORE_FILE)) return;
  const saved = JSON.parse(readFileSync(RESTORE_FILE, "utf8")) as { timeout: string; tick: string };
  setBrokerEnv("consumer_timeout", saved.timeout);
  setBrokerEnv("channel_tick_interval", saved.tick);
  rmSync(RESTORE_FILE, { force: true });
}

/**
 * Run fn with the broker's consumer_timeout (and the channel tick that checks it) shortened, for
 * channels opened meanwhile; the previous values are put back afterwards (or, if this process
 * dies first, by the next ensureRabbitMQ()).
 */
export async function withShortConsumerTimeout<T>(timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const get = (key: string) =>
    /\{ok,(\d+)\}/.exec(rabbitmqctl("eval", `application:get_env(rabbit, ${key}).`).out)?.[1];
  restoreBrokerSettings();
  writeFileSync(
    RESTORE_FILE,
    JSON.stringify({ timeout: get("consumer_timeout") ?? "1800000", tick: get("channel_tick_interval") ?? "60000" }),
  );
  setBrokerEnv("consumer_timeout", String(timeoutMs));
  setBrokerEnv("channel_tick_interval", String(Math.max(200, Math.floor(timeoutMs / 2))));
  try {
    return await fn();
  } finally {
    restoreBrokerSettings();
  }
}

/** GET on the management API, as JSON. */
export async function managementGet(path: string): Promise<unknown> {
  const r = await fetch(`${MANAGEMENT_URL}${path}`, { headers: { authorization: `Basic ${btoa("guest:guest")}` } });
  if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
  return r.json();
}

/**
 * A TCP relay to the broker that can be cut: cut() drops every relayed connection and refuses
 * new ones (the client sees a network outage) until restore().
 */
export class CuttableRelay {
  private server?: import("node:net").Server;
  private readonly sockets = new Set<import("node:net").Socket>();
  private refusing = false;
  port = 0;

  async start(target = 5672): Promise<this> {
    const net = await import("node:net");
    this.server = net.createServer((client) => {
      if (this.refusing) return client.destroy();
      const upstream = net.connect({ host: "127.0.0.1", port: target });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server!.address() as import("node:net").AddressInfo).port;
    return this;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}/%2f`;
  }

  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * Publish the way the studioml python client does: exchange StudioML.topic (durable,
 * auto-delete), a durable queue bound with StudioML.<queue>, JSON with content_type and app_id,
 * persistent, publisher confirms; no message_id.
 */
export async function publishLikeClient(queue: string, bodies: Array<string | object>): Promise<void> {
  const conn = await amqp.connect(AMQP_URL);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    ch.on("error", () => undefined);
    await ch.assertExchange("StudioML.topic", "topic", { durable: true, autoDelete: true });
    await ch.assertQueue(queue, { durable: true });
    await ch.bindQueue(queue, "StudioML.topic", `StudioML.${queue}`);
    for (const body of bodies) {
      ch.publish(
        "StudioML.topic",
        `StudioML.${queue}`,
        Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
        {
          contentType: "application/json",
          appId: "studioml",
          persistent: true,
        },
      );
    }
    await ch.waitForConfirms();
  } finally {
    await conn.close().catch(() => undefined);
  }
}
