// A wire-level stand-in for a studioml API server: the JSON calls of studioml's HTTP database
// provider (POST /api/{add,get,start,checkpoint,finish,stop}_experiment, body {"key"} or
// {"experiment"}), answering {"status": "ok", …}. Experiments live in memory; requests are recorded.

export type ApiRequest = { path: string; body: Record<string, unknown>; at: number };

export type StudioApiServer = {
  /** "http://127.0.0.1:PORT", for config.database.serverUrl. */
  url: string;
  requests: ApiRequest[];
  experiments: Map<string, Record<string, unknown>>;
  /** Answers every call with HTTP 500 while set. */
  failing: boolean;
  stop(): Promise<void>;
};

const now = () => Date.now() / 1000;

export function startStudioApiServer(): StudioApiServer {
  const experiments = new Map<string, Record<string, unknown>>();
  const requests: ApiRequest[] = [];
  const state = { failing: false };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      let body: Record<string, unknown> = {};
      try {
        body = (await req.json()) as Record<string, unknown>;
      } catch {
        return Response.json({ status: "error: body is not JSON" }, { status: 400 });
      }
      requests.push({ path, body, at: Date.now() });
      if (req.method !== "POST") return new Response("POST only", { status: 405 });
      if (state.failing) return new Response("injected failure", { status: 500 });
      const api = /^\/api\/([a-z_]+)$/.exec(path)?.[1];
      if (api === "add_experiment") {
        const e = body.experiment as Record<string, unknown>;
        experiments.set(String(e.key), { ...e, status: "waiting", time_added: now() });
        return Response.json({ status: "ok", artifacts: {} });
      }
      const key = String(body.key ?? "");
      const e = experiments.get(key);
      if (!e) return Response.json({ status: `experiment ${key} not found` });
      switch (api) {
        case "get_experiment":
          return Response.json({ status: "ok", experiment: e });
        case "start_experiment":
          Object.assign(e, { status: "running", time_started: now() });
          return Response.json({ status: "ok" });
        case "checkpoint_experiment":
          e.time_last_checkpoint = now();
          return Response.json({ status: "ok", artifacts: {} });
        case "finish_experiment":
          Object.assign(e, { status: "finished", time_finished: now() });
          return Response.json({ status: "ok" });
        case "stop_experiment":
          e.status = "stopped";
          return Response.json({ status: "ok" });
        default:
          return new Response(`no such call ${path}`, { status: 404 });
      }
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    requests,
    experiments,
    get failing() {
      return state.failing;
    },
    set failing(v: boolean) {
      state.failing = v;
    },
    stop: () => server.stop(true),
  };
}
