// A wire-level stand-in for the Firebase Realtime Database, speaking the websocket protocol that
// firebase-admin uses when FIREBASE_DATABASE_EMULATOR_HOST points at it: handshake, auth, get,
// put, merge, listen. Data lives in memory as one JSON tree; every request is recorded. It is
// not Google's server: it implements only what the runner's Firebase status record sends.

import type { ServerWebSocket } from "bun";

export type RtdbRequest = { action: string; path: string; data?: unknown; at: number };

export type RtdbTestServer = {
  /** "127.0.0.1:PORT", for FIREBASE_DATABASE_EMULATOR_HOST. */
  host: string;
  requests: RtdbRequest[];
  /** The value at a path ("experiments/k/status"), or null. */
  read(path: string): unknown;
  /** Sets a value as another client would (listeners are told). */
  write(path: string, value: unknown): void;
  /** Answers every data request with an error ("permission_denied") while set. */
  failing: boolean;
  connections(): number;
  stop(): Promise<void>;
};

type Socket = ServerWebSocket<{ pending: string[]; expected: number; listens: Set<string> }>;

const segments = (path: string) => path.split("/").filter(Boolean);

function getAt(root: unknown, path: string): unknown {
  let node = root;
  for (const s of segments(path)) {
    if (typeof node !== "object" || node === null) return null;
    node = (node as Record<string, unknown>)[s];
  }
  return node === undefined ? null : node;
}

/** Sets `value` at `path` of the tree, creating parents; null deletes. */
function setAt(root: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const parts = segments(path);
  if (!parts.length) return (value && typeof value === "object" ? value : {}) as Record<string, unknown>;
  let node = root;
  for (const s of parts.slice(0, -1)) {
    const next = node[s];
    if (typeof next !== "object" || next === null) node[s] = {};
    node = node[s] as Record<string, unknown>;
  }
  const last = parts[parts.length - 1]!;
  if (value === null) delete node[last];
  else node[last] = structuredClone(value);
  return root;
}

export async function startRtdbServer(): Promise<RtdbTestServer> {
  let tree: Record<string, unknown> = {};
  const requests: RtdbRequest[] = [];
  const sockets = new Set<Socket>();
  const state = { failing: false };

  const send = (ws: Socket, msg: unknown) => ws.send(JSON.stringify(msg));
  const notify = (changed: string) => {
    for (const ws of sockets)
      for (const p of ws.data.listens)
        if (changed.startsWith(p) || p.startsWith(changed))
          send(ws, { t: "d", d: { a: "d", b: { p, d: getAt(tree, p) } } });
  };

  const handle = (ws: Socket, text: string): void => {
    const msg = JSON.parse(text) as { t: string; d: { r?: number; a?: string; b?: Record<string, unknown> } };
    if (msg.t !== "d") return; // control frames (pings) need no answer here
    const { r, a = "", b = {} } = msg.d;
    const path = typeof b.p === "string" ? b.p : "";
    requests.push({ action: a, path, data: b.d, at: Date.now() });
    const reply = (body: Record<string, unknown>): void => {
      if (r !== undefined) send(ws, { t: "d", d: { r, b: body } });
    };
    const dataAction = ["g", "p", "m", "q"].includes(a);
    if (dataAction && state.failing)
      return reply({ s: "permission_denied", d: "Permission denied (injected by the test)" });
    switch (a) {
      case "g":
        return reply({ s: "ok", d: getAt(tree, path) });
      case "p":
        tree = setAt(tree, path, b.d ?? null);
        reply({ s: "ok", d: "" });
        return notify(path);
      case "m": {
        for (const [k, v] of Object.entries((b.d ?? {}) as Record<string, unknown>))
          tree = setAt(tree, `${path}/${k}`, v);
        reply({ s: "ok", d: "" });
        return notify(path);
      }
      case "q":
        ws.data.listens.add(path);
        send(ws, { t: "d", d: { a: "d", b: { p: path, d: getAt(tree, path) } } });
        return reply({ s: "ok", d: {} });
      case "n":
        ws.data.listens.delete(path);
        return reply({ s: "ok", d: {} });
      default: // s (stats), auth, gauth, unauth, onDisconnect actions
        return reply({ s: "ok", d: a === "auth" || a === "gauth" ? { auth: null, expires: 0 } : "" });
    }
  };

  const server = Bun.serve<{ pending: string[]; expected: number; listens: Set<string> }>({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      if (
        new URL(req.url).pathname === "/.ws" &&
        srv.upgrade(req, { data: { pending: [], expected: 0, listens: new Set() } })
      )
        return;
      return new Response("websocket only", { status: 400 });
    },
    websocket: {
      open(ws) {
        sockets.add(ws);
        send(ws, {
          t: "c",
          d: { t: "h", d: { ts: Date.now(), v: "5", h: server.hostname + ":" + server.port, s: crypto.randomUUID() } },
        });
      },
      message(ws, raw): void {
        const text = typeof raw === "string" ? raw : Buffer.from(raw).toString("utf8");
        const d = ws.data;
        // Messages over 16 KiB arrive as a frame count followed by that many pieces.
        if (d.expected === 0 && /^\d{1,6}$/.test(text)) {
          d.expected = Number(text); // "0" is a keep-alive and leaves it at 0
          return;
        }
        if (d.expected > 0) {
          d.pending.push(text);
          if (d.pending.length < d.expected) return;
          const whole = d.pending.join("");
          d.pending = [];
          d.expected = 0;
          handle(ws, whole);
          return;
        }
        handle(ws, text);
      },
      close(ws) {
        sockets.delete(ws);
      },
    },
  });

  return {
    host: `127.0.0.1:${server.port}`,
    requests,
    read: (path) => getAt(tree, path),
    write(path, value) {
      tree = setAt(tree, path, value);
      notify(path);
    },
    get failing() {
      return state.failing;
    },
    set failing(v: boolean) {
      state.failing = v;
    },
    connections: () => sockets.size,
    async stop() {
      for (const ws of sockets) ws.close();
      await server.stop(true);
    },
  };
}
