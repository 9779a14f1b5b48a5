// Follows one ConfigMap through the Kubernetes API with @kubernetes/client-node: list it (by
// fieldSelector metadata.name, so a missing map is an empty list, not an error), then watch from
// the list's resourceVersion. A watch the server ends is resumed from the last version seen; a
// 410 Expired version, a refused request or a lost connection lists again after a jittered
// exponential back-off. The map's data goes to onChange whenever it differs from the last data
// given (undefined while the map does not exist).

import { CoreV1Api, Watch, type KubeConfig } from "@kubernetes/client-node";
import { exponentialBackoff, type BackoffStrategy } from "../retry/backoff.ts";
import type { Logger } from "../log/logger.ts";

export type ConfigMapData = Readonly<Record<string, string>>;

export type ConfigMapWatchOptions = {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  onChange: (data: ConfigMapData | undefined) => void;
  log: Pick<Logger, "info" | "warn">;
  /** Pauses after a failure or a watch closed at once: initialMs doubling up to maxMs, equal jitter. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long the server keeps one watch open before the client starts the next. */
  watchTimeoutS?: number;
};

/** The API server answered with a failure (an HTTP status, or a watch ERROR event). */
export class KubernetesApiError extends Error {
  constructor(
    readonly statusCode: number | undefined,
    message: string,
  ) {
    super(message);
    this.name = "KubernetesApiError";
  }
}

const DEFAULT_WATCH_BACKOFF = { initialMs: 500, maxMs: 30_000 };
const DEFAULT_WATCH_TIMEOUT_S = 300;
/** A watch that ends sooner than this without news is resumed only after a pause (no tight reconnect loop). */
const SHORT_WATCH_MS = 1000;
/** How long stop() waits for a request in flight to end. */
const STOP_WAIT_MS = 2000;

type WatchEnd = { expired: boolean; resourceVersion: string; sawEvents: boolean };

export class ConfigMapWatch {
  private stopped = false;
  private current?: AbortController;
  private sleeping?: { timer: ReturnType<typeof setTimeout>; resolve: () => void };
  private lastGiven: string | undefined = "\0never";
  private failures = 0;
  private lastProblem = "";
  private loop?: Promise<void>;
  private readonly api: CoreV1Api;
  private readonly backoff: BackoffStrategy;
  private firstReadDone!: () => void;
  /** Settles once the first list was answered or failed: callers may apply the map before taking work. */
  readonly firstRead = new Promise<void>((resolve) => (this.firstReadDone = resolve));

  constructor(readonly options: ConfigMapWatchOptions) {
    this.api = options.kubeConfig.makeApiClient(CoreV1Api);
    this.backoff = exponentialBackoff({ ...(options.backoff ?? DEFAULT_WATCH_BACKOFF), jitter: "equal" });
  }

  get where(): string {
    return `ConfigMap ${this.options.namespace}/${this.options.name}`;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.firstReadDone();
    this.current?.abort();
    if (this.sleeping) {
      clearTimeout(this.sleeping.timer);
      this.sleeping.resolve();
    }
    // A list request to an API server that does not answer must not hold up the runner's exit.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.loop, new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timer);
  }

  private give(data: ConfigMapData | undefined) {
    const text =
      data === undefined
        ? undefined
        : JSON.stringify(Object.entries(data).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    if (text === this.lastGiven) return;
    this.lastGiven = text;
    this.options.onChange(data);
  }

  private async run(): Promise<void> {
    let saidMissing = false;
    while (!this.stopped) {
      try {
        const list = await this.api.listNamespacedConfigMap({
          namespace: this.options.namespace,
          fieldSelector: `metadata.name=${this.options.name}`,
        });
        if (this.failures > 0) this.options.log.info(`${this.where}: the Kubernetes API answers again`);
        this.failures = 0;
        this.lastProblem = "";
        const map = list.items.find((m) => m.metadata?.name === this.options.name);
        if (map) saidMissing = false;
        else if (!saidMissing)
          this.options.log.info(`${this.where} does not exist (yet): nothing to apply; watching for it`);
        saidMissing ||= !map;
        this.give(map ? (map.data ?? {}) : undefined);
        this.firstReadDone();
        let resourceVersion = list.metadata?.resourceVersion ?? "";
        let quickEnds = 0;
        while (!this.stopped) {
          const startedMs = Date.now();
          const end = await this.watchOnce(resourceVersion);
          if (end.expired) break; // list again
          resourceVersion = end.resourceVersion;
          if (end.sawEvents || Date.now() - startedMs >= SHORT_WATCH_MS) {
            quickEnds = 0;
          } else if (!this.stopped) {
            // Closed at once without news: resume from the same version, after a growing pause.
            await this.sleep(this.backoff(++quickEnds));
          }
        }
      } catch (err) {
        this.firstReadDone();
        if (this.stopped) break;
        this.failures++;
        const delayMs = this.backoff(this.failures);
        const problem = describeFailure(err);
        if (problem !== this.lastProblem) {
          this.options.log.warn(
            `${this.where}: ${problem}; drain instructions from it are not seen until this clears ` +
              `(retrying with back-off, now ${(delayMs / 1000).toFixed(1)} s)`,
          );
          this.lastProblem = problem;
        }
        await this.sleep(delayMs);
      }
    }
  }

  private watchOnce(resourceVersion: string): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve, reject) => {
      const end: WatchEnd = { expired: false, resourceVersion, sawEvents: false };
      let failure: Error | undefined;
      const path = `/api/v1/namespaces/${encodeURIComponent(this.options.namespace)}/configmaps`;
      const query = {
        fieldSelector: `metadata.name=${this.options.name}`,
        resourceVersion: resourceVersion || undefined,
        allowWatchBookmarks: true,
        timeoutSeconds: this.options.watchTimeoutS ?? DEFAULT_WATCH_TIMEOUT_S,
      };
      const onEvent = (
        type: string,
        object: {
          metadata?: { name?: string; resourceVersion?: string };
          data?: Record<string, string>;
          code?: number;
          message?: string;
        },
      ) => {
        if (type === "ERROR") {
          if (object?.code === 410) end.expired = true;
          else failure = new KubernetesApiError(object?.code, `watch error: ${object?.message ?? "unknown"}`);
          return;
        }
        const version = object?.metadata?.resourceVersion;
        if (version) end.resourceVersion = version;
        if (type === "BOOKMARK") return;
        end.sawEvents = true;
        if (object?.metadata?.name !== this.options.name) return;
        if (type === "ADDED" || type === "MODIFIED") this.give(object.data ?? {});
        else if (type === "DELETED") {
          this.options.log.info(
            `${this.where} was deleted: back to the configured queue filter; a drain it asked for ends`,
          );
          this.give(undefined);
        }
      };
      const onDone = (err: unknown) => {
        this.current = undefined;
        if (this.stopped) resolve(end);
        else if (err) reject(err);
        else if (failure) reject(failure);
        else resolve(end);
      };
      new Watch(this.options.kubeConfig)
        .watch(path, query, onEvent, onDone)
        .then((controller) => {
          this.current = controller;
          if (this.stopped) controller.abort();
        })
        .catch(reject);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, ms);
      this.sleeping = { timer, resolve };
    });
  }
}

/** One line for the log: the HTTP status and what it usually means, never a token. */
function describeFailure(err: unknown): string {
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  const status = typeof e?.statusCode === "number" ? e.statusCode : typeof e?.code === "number" ? e.code : undefined;
  const hint =
    status === 401
      ? " (the service-account token was refused)"
      : status === 403
        ? " (the service account may not read it: it needs get, list and watch on this ConfigMap; " +
          "see deploy/k8s/rbac.yaml)"
        : "";
  const message = String(e?.message ?? err)
    .split("\n")[0]!
    .slice(0, 300);
  return status ? `HTTP ${status}${hint}: ${message}` : message;
}
