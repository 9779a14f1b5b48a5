// A Kubernetes API stand-in for the ConfigMap drain tests: HTTPS with a self-signed certificate
// made here with openssl, bearer-token authentication, and the few core/v1 ConfigMap calls the
// runner makes through @kubernetes/client-node — GET of one map, LIST (optionally narrowed by
// fieldSelector=metadata.name=…) and WATCH (?watch=true) streaming one JSON event per line from a
// resourceVersion, as the real API server does, including 410 Expired for a version that is too
// old, BOOKMARK events and timeoutSeconds. It also writes the service-account directory
// (token, ca.crt, namespace) that an in-cluster client reads.

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

type ConfigMapObject = {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string; creationTimestamp: string };
  data?: Record<string, string>;
};

type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"; object: unknown };

type Stored = { rv: number; event: WatchEvent; name: string; namespace: string };

type Watcher = { namespace: string; name?: string; send: (event: WatchEvent) => void; close: () => void };

export type K8sRequestRecord = { method: string; path: string; query: Record<string, string>; authorized: boolean };

export type K8sApiServerOptions = { dir: string; token?: string; namespace?: string };

/** Events older than this many versions are "compacted": a watch from before them gets 410. */
const HISTORY_EVENTS = 50;

export class K8sApiServer {
  readonly token: string;
  readonly namespace: string;
  /** The directory laid out like /var/run/secrets/kubernetes.io/serviceaccount. */
  readonly serviceAccountDir: string;
  readonly requests: K8sRequestRecord[] = [];
  private server?: ReturnType<typeof Bun.serve>;
  private rv = 100;
  private readonly maps = new Map<string, ConfigMapObject>();
  private history: Stored[] = [];
  private readonly watchers = new Set<Watcher>();
  private certPem = "";
  private keyPem = "";
  /** While set, every request is answered with this status (an API server in trouble). */
  failWith?: number;

  constructor(readonly options: K8sApiServerOptions) {
    this.token = options.token ?? `test-sa-token-${crypto.randomUUID()}`;
    this.namespace = options.namespace ?? "studio";
    this.serviceAccountDir = join(options.dir, "serviceaccount");
  }

  get port(): number {
    return this.server!.port!;
  }

  /** The environment an in-cluster pod would have, pointing at this server. */
  clusterEnv(): Record<string, string> {
    return {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: String(this.port),
      STUDIO_RUNNER_K8S_SERVICEACCOUNT_DIR: this.serviceAccountDir,
    };
  }

  async start(): Promise<void> {
    mkdirSync(this.serviceAccountDir, { recursive: true });
    const key = join(this.options.dir, "apiserver.key");
    const cert = join(this.options.dir, "apiserver.crt");
    const r = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=kubernetes-standin",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    this.certPem = readFileSync(cert, "utf8");
    this.keyPem = readFileSync(key, "utf8");
    writeFileSync(join(this.serviceAccountDir, "token"), this.token);
    writeFileSync(join(this.serviceAccountDir, "ca.crt"), this.certPem);
    writeFileSync(join(this.serviceAccountDir, "namespace"), this.namespace);
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: this.certPem, key: this.keyPem },
      idleTimeout: 0,
      fetch: (req) => this.handle(req),
    });
  }

  async stop(): Promise<void> {
    this.dropWatches();
    await this.server?.stop(true);
  }

  /** Create or replace a ConfigMap's data (ADDED or MODIFIED to every matching watch). */
  setConfigMap(name: string, data: Record<string, string>, namespace = this.namespace): void {
    const id = `${namespace}/${name}`;
    const before = this.maps.get(id);
    const object: ConfigMapObject = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name,
        namespace,
        resourceVersion: String(++this.rv),
        uid: before?.metadata.uid ?? crypto.randomUUID(),
        creationTimestamp: before?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      },
      data: { ...data },
    };
    this.maps.set(id, object);
    this.record({ type: before ? "MODIFIED" : "ADDED", object }, name, namespace);
  }

  deleteConfigMap(name: string, namespace = this.namespace): void {
    const id = `${namespace}/${name}`;
    const before = this.maps.get(id);
    if (!before) return;
    this.maps.delete(id);
    const object = { ...before, metadata: { ...before.metadata, resourceVersion: String(++this.rv) } };
    this.record({ type: "DELETED", object }, name, namespace);
  }

  /** Close every open watch (as an API server restart or a load balancer would). */
  dropWatches(): void {
    for (const w of this.watchers) w.close();
    this.watchers.clear();
  }

  /** Forget history: a watch from an older resourceVersion then gets 410 Expired. */
  compact(): void {
    this.history = [];
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  private record(event: WatchEvent, name: string, namespace: string) {
    this.history.push({ rv: this.rv, event, name, namespace });
    if (this.history.length > HISTORY_EVENTS) this.history.shift();
    for (const w of this.watchers) if (w.namespace === namespace && (!w.name || w.name === name)) w.send(event);
  }

  private status(code: number, reason: string, message: string): Response {
    return Response.json(
      { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code },
      { status: code },
    );
  }

  private handle(req: Request): Response {
    const url = new URL(req.url);
    const query = Object.fromEntries(url.searchParams);
    const authorized = req.headers.get("authorization") === `Bearer ${this.token}`;
    this.requests.push({ method: req.method, path: url.pathname, query, authorized });
    if (!authorized) return this.status(401, "Unauthorized", "Unauthorized");
    if (this.failWith) return this.status(this.failWith, "InternalError", "the stand-in was told to fail");
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m || req.method !== "GET")
      return this.status(
        404,
        "NotFound",
        `the server could not find the requested resource (${req.method} ${url.pathname})`,
      );
    const namespace = decodeURIComponent(m[1]!);
    let name = m[2] ? decodeURIComponent(m[2]) : undefined;
    const selector = query.fieldSelector;
    if (selector) {
      const s = /^metadata\.name=(.+)$/.exec(selector);
      if (!s) return this.status(400, "BadRequest", `unsupported fieldSelector ${selector}`);
      name = s[1]!;
    }
    if (query.watch === "true" || query.watch === "1") return this.watch(namespace, name, query);
    if (m[2]) {
      const map = this.maps.get(`${namespace}/${name}`);
      return map ? Response.json(map) : this.status(404, "NotFound", `configmaps "${name}" not found`);
    }
    const items = [...this.maps.values()].filter(
      (c) => c.metadata.namespace === namespace && (!name || c.metadata.name === name),
    );
    return Response.json({
      kind: "ConfigMapList",
      apiVersion: "v1",
      metadata: { resourceVersion: String(this.rv) },
      items,
    });
  }

  private watch(namespace: string, name: string | undefined, query: Record<string, string>): Response {
    const from = query.resourceVersion;
    const encoder = new TextEncoder();
    let watcher: Watcher | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        let open = true;
        const close = () => {
          if (!open) return;
          open = false;
          clearTimeout(timer);
          if (watcher) this.watchers.delete(watcher);
          try {
            controller.close();
          } catch {
            // already closed by the client
          }
        };
        const send = (event: WatchEvent) => {
          if (open) controller.enqueue(encoder.encode(`${JSON.stringify(event)}\n`));
        };
        const matches = (s: Stored) => s.namespace === namespace && (!name || s.name === name);
        if (from === undefined || from === "" || from === "0") {
          // No version: the current state as synthetic ADDED events, then changes.
          for (const c of this.maps.values())
            if (c.metadata.namespace === namespace && (!name || c.metadata.name === name))
              send({ type: "ADDED", object: c });
        } else {
          const since = Number(from);
          const oldest = this.history[0]?.rv ?? this.rv + 1;
          if (!Number.isFinite(since) || (since < oldest - 1 && since < this.rv)) {
            send({
              type: "ERROR",
              object: {
                kind: "Status",
                apiVersion: "v1",
                metadata: {},
                status: "Failure",
                message: `too old resource version: ${from} (${oldest - 1})`,
                reason: "Expired",
                code: 410,
              },
            });
            close();
            return;
          }
          for (const s of this.history) if (s.rv > since && matches(s)) send(s.event);
        }
        if (query.allowWatchBookmarks === "true")
          send({
            type: "BOOKMARK",
            object: { kind: "ConfigMap", apiVersion: "v1", metadata: { resourceVersion: String(this.rv) } },
          });
        watcher = { namespace, name, send, close };
        this.watchers.add(watcher);
        const timeoutS = Number(query.timeoutSeconds);
        if (timeoutS > 0) timer = setTimeout(close, timeoutS * 1000); // the API server's own watch timeout
      },
      cancel: () => {
        clearTimeout(timer);
        if (watcher) this.watchers.delete(watcher);
      },
    });
    return new Response(stream, { headers: { "content-type": "application/json", "transfer-encoding": "chunked" } });
  }
}
