// A proxy on 127.0.0.1 in front of a test server: every request is forwarded as it came (method,
// path, query, headers with the Host the client signed, so SigV4 signatures still verify on moto,
// and the whole body), and recorded with the status it got. A test may answer a request itself
// (a fault at the HTTP level) or hold it back until something has happened.

export type ProxiedRequest = {
  method: string;
  /** Path and query, as sent: "/bucket/key?partNumber=2&uploadId=…". */
  url: string;
  query: URLSearchParams;
  headers: Headers;
  /** The status the client got (answered by the test or by the server); 0 while in flight. */
  status: number;
};

/** Sees a request (its body already read) before it is forwarded: a Response answers it instead. */
export type Intercept = (request: ProxiedRequest) => Response | undefined | Promise<Response | undefined>;

export type ForwardingProxy = {
  /** "127.0.0.1:PORT", as in s3://host/bucket/key. */
  host: string;
  /** "http://127.0.0.1:PORT", for a store's endpoint. */
  endpoint: string;
  seen: ProxiedRequest[];
  intercept: Intercept | undefined;
  stop(): Promise<void>;
};

/** Request headers that belong to one hop and are not forwarded (none of them is signed). */
const HOP_HEADERS = ["connection", "keep-alive", "expect", "transfer-encoding", "te", "upgrade"];

export function startForwardingProxy(upstream: string, intercept?: Intercept): ForwardingProxy {
  const target = new URL(upstream);
  const seen: ProxiedRequest[] = [];
  const proxy: ForwardingProxy = {
    host: "",
    endpoint: "",
    seen,
    intercept,
    stop: async () => void server.stop(true),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 120,
    maxRequestBodySize: 1024 * 1024 * 1024,
    async fetch(req) {
      const url = new URL(req.url);
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      const headers = new Headers(req.headers);
      for (const h of HOP_HEADERS) headers.delete(h);
      const record: ProxiedRequest = {
        method: req.method,
        url: url.pathname + url.search,
        query: url.searchParams,
        headers,
        status: 0,
      };
      seen.push(record);
      const answer = await proxy.intercept?.(record);
      if (answer) {
        record.status = answer.status;
        return answer;
      }
      // The Host header stays the proxy's: it is what the client signed.
      const r = await fetch(new URL(record.url, target), {
        method: req.method,
        headers,
        body,
        redirect: "manual",
        decompress: false,
      } as RequestInit);
      record.status = r.status;
      return new Response(r.body, { status: r.status, statusText: r.statusText, headers: r.headers });
    },
  });
  proxy.host = `127.0.0.1:${server.port}`;
  proxy.endpoint = `http://127.0.0.1:${server.port}`;
  return proxy;
}

/** An S3 error answer, as the real service words it. */
export function s3ErrorResponse(status: number, code: string, message: string): Response {
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${message}</Message><RequestId>proxy-fault</RequestId></Error>`;
  return new Response(xml, { status, headers: { "content-type": "application/xml" } });
}
