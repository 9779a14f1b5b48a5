// A wire-level stand-in for the Google Cloud Storage JSON API, only the calls GcsStore makes:
// object metadata, media download, resumable upload (session + chunks), compose, delete. Objects live in
// memory; every request is recorded so tests can assert on the traffic; faults can be injected.

import { createHash, randomUUID, verify, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";

export type RecordedRequest = {
  method: string;
  /** Decoded path: "/storage/v1/b/bucket/o/experiments/k/output.tar". */
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  /** -1 when the client broke the request off mid-body. */
  bodyBytes: number;
  /** 0 while in flight (or when the connection was cut). */
  status: number;
  /** The service account whose verified self-signed JWT came with the request, if any. */
  caller?: string;
};

/** Who may use a bucket: service-account emails, each with the public key its JWTs must verify with. */
export type BucketAccess = { accounts: Record<string, KeyObject>; buckets: Record<string, string[]> };

export type StoredObject = {
  data: Buffer;
  generation: string;
  contentType: string;
  updatedMs: number;
  crc32c: string;
  md5: string;
};

export type UploadSession = {
  id: string;
  bucket: string;
  name: string;
  contentType: string;
  parts: Buffer[];
  receivedBytes: number;
  finalized: boolean;
};

/** An injected fault: answer matching requests with `status` (or cut media downloads short) `times` times. */
export type Fault = {
  method?: string;
  /** Tested against "METHOD path?query" (path decoded). */
  match?: RegExp;
  status?: number;
  /** Send the media headers for the whole object, then only this many bytes, then close the socket. */
  truncateAfterBytes?: number;
  /** Uploads: finalize but report a wrong CRC32C and MD5; downloads: send wrong ones in x-goog-hash. */
  reportWrongHash?: boolean;
  times: number;
};

export type GcsTestServer = {
  /** "http://127.0.0.1:PORT", for new GcsClients({ apiEndpoint }). */
  endpoint: string;
  requests: RecordedRequest[];
  objects: Map<string, StoredObject>;
  sessions: Map<string, UploadSession>;
  buckets: Set<string>;
  inject(fault: Fault): void;
  stop(): Promise<void>;
};

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli) as GCS reports it: base64 of the big-endian 32-bit value. */
export function crc32cBase64(data: Buffer): string {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString("base64");
}

const md5Base64 = (data: Buffer) => createHash("md5").update(data).digest("base64");
const objectId = (bucket: string, name: string) => `${bucket}/${name}`;

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=UTF-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string) {
  const reason =
    status === 404
      ? "notFound"
      : status === 403
        ? "forbidden"
        : status === 401
          ? "required"
          : status >= 500
            ? "backendError"
            : "invalid";
  sendJson(res, status, { error: { code: status, message, errors: [{ message, domain: "global", reason }] } });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The caller of a request: the iss of an RS256 JWT bearer token that verifies with that account's key. */
function callerOf(header: string | string[] | undefined, access: BucketAccess): string | undefined {
  const token = typeof header === "string" && header.startsWith("Bearer ") ? header.slice(7) : "";
  const [h, p, sig] = token.split(".");
  if (!h || !p || !sig) return undefined;
  let payload: { iss?: string; exp?: number };
  try {
    payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  const key = payload.iss ? access.accounts[payload.iss] : undefined;
  if (!key || (payload.exp !== undefined && payload.exp * 1000 < Date.now())) return undefined;
  return verify("RSA-SHA256", Buffer.from(`${h}.${p}`), key, Buffer.from(sig, "base64url")) ? payload.iss : undefined;
}

/**
 * With `access`, buckets listed there answer only their accounts (401 without a valid token,
 * 403 for another account); other buckets stay open.
 */
export async function startGcsServer(options: { buckets: string[]; access?: BucketAccess }): Promise<GcsTestServer> {
  const requests: RecordedRequest[] = [];
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, UploadSession>();
  const buckets = new Set(options.buckets);
  const faults: Fault[] = [];
  let generationCounter = Date.now() * 1000;
  let endpoint = "";

  const metadataOf = (bucket: string, name: string, o: StoredObject) => ({
    kind: "storage#object",
    id: `${bucket}/${name}/${o.generation}`,
    selfLink: `${endpoint}/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}`,
    mediaLink:
      `${endpoint}/download/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}` +
      `?generation=${o.generation}&alt=media`,
    name,
    bucket,
    generation: o.generation,
    metageneration: "1",
    contentType: o.contentType,
    storageClass: "STANDARD",
    size: String(o.data.length),
    md5Hash: o.md5,
    crc32c: o.crc32c,
    etag: `CL${o.generation}=`,
    timeCreated: new Date(o.updatedMs).toISOString(),
    updated: new Date(o.updatedMs).toISOString(),
  });

  function takeFault(method: string, target: string): Fault | undefined {
    const f = faults.find(
      (x) => x.times > 0 && (!x.method || x.method === method) && (!x.match || x.match.test(`${method} ${target}`)),
    );
    if (f) f.times -= 1;
    return f;
  }

  /** Objects: GET (metadata or alt=media), DELETE. */
  function objectCall(
    req: IncomingMessage,
    res: ServerResponse,
    bucket: string,
    name: string,
    query: Record<string, string>,
    fault?: Fault,
  ) {
    const o = objects.get(objectId(bucket, name));
    const missing = !o || (query.generation !== undefined && query.generation !== o.generation);
    if (!buckets.has(bucket)) return sendError(res, 404, "The specified bucket does not exist.");
    if (req.method === "DELETE") {
      if (missing) return sendError(res, 404, `No such object: ${bucket}/${name}`);
      objects.delete(objectId(bucket, name));
      res.writeHead(204);
      return void res.end();
    }
    if (req.method !== "GET") return sendError(res, 405, `method ${req.method} not implemented by the test server`);
    if (missing) return sendError(res, 404, `No such object: ${bucket}/${name}`);
    if (query.alt !== "media") return sendJson(res, 200, metadataOf(bucket, name, o!));
    // A ranged read (Range: bytes=a-b, as GCS answers it: 206 with the part and no object hash).
    const ranged = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ""));
    if (ranged) {
      const size = o!.data.length;
      const start = Number(ranged[1]);
      const end = Math.min(size - 1, ranged[2] ? Number(ranged[2]) : size - 1);
      if (start >= size) return sendError(res, 416, "The requested range cannot be satisfied.");
      res.writeHead(206, {
        "content-type": o!.contentType,
        "content-length": String(end - start + 1),
        "content-range": `bytes ${start}-${end}/${size}`,
        "x-goog-generation": o!.generation,
        "x-goog-metageneration": "1",
        "x-goog-stored-content-encoding": "identity",
        "x-goog-stored-content-length": String(size),
      });
      return void res.end(o!.data.subarray(start, end + 1));
    }
    res.writeHead(200, {
      "content-type": o!.contentType,
      "content-length": String(o!.data.length),
      "x-goog-generation": o!.generation,
      "x-goog-metageneration": "1",
      "x-goog-stored-content-encoding": "identity",
      "x-goog-stored-content-length": String(o!.data.length),
      "x-goog-hash": fault?.reportWrongHash
        ? "crc32c=AAAAAA==,md5=AAAAAAAAAAAAAAAAAAAAAA=="
        : `crc32c=${o!.crc32c},md5=${o!.md5}`,
    });
    if (fault?.truncateAfterBytes !== undefined) {
      res.write(o!.data.subarray(0, fault.truncateAfterBytes));
      // The fault itself: the part written reaches the client, then the connection drops.
      return void setTimeout(() => res.socket?.destroy(), 20);
    }
    res.end(o!.data);
  }

  /** POST .../o/DEST/compose: DEST becomes the concatenation of the source objects (at most 32). */
  function compose(res: ServerResponse, bucket: string, name: string, body: Buffer) {
    if (!buckets.has(bucket)) return sendError(res, 404, "The specified bucket does not exist.");
    // The client library gzips JSON bodies (Content-Encoding: gzip).
    const text = (body[0] === 0x1f && body[1] === 0x8b ? gunzipSync(body) : body).toString("utf8");
    const request = JSON.parse(text || "{}") as {
      sourceObjects?: Array<{ name: string; generation?: string }>;
      destination?: { contentType?: string };
    };
    const sources = request.sourceObjects ?? [];
    if (!sources.length || sources.length > 32) return sendError(res, 400, "compose takes 1 to 32 source objects");
    const parts: Buffer[] = [];
    for (const source of sources) {
      const o = objects.get(objectId(bucket, source.name));
      if (!o || (source.generation !== undefined && String(source.generation) !== o.generation))
        return sendError(res, 404, `No such object: ${bucket}/${source.name}`);
      parts.push(o.data);
    }
    const data = Buffer.concat(parts);
    const stored: StoredObject = {
      data,
      generation: String(++generationCounter),
      contentType: request.destination?.contentType ?? "application/octet-stream",
      updatedMs: Date.now(),
      crc32c: crc32cBase64(data),
      md5: md5Base64(data),
    };
    objects.set(objectId(bucket, name), stored);
    sendJson(res, 200, metadataOf(bucket, name, stored));
  }

  /** POST .../o?uploadType=resumable&name=… opens a session; its URI is returned in Location. */
  function startSession(res: ServerResponse, bucket: string, query: Record<string, string>, body: Buffer) {
    if (!buckets.has(bucket)) return sendError(res, 404, "The specified bucket does not exist.");
    if (query.uploadType !== "resumable")
      return sendError(res, 501, `uploadType=${query.uploadType} not implemented by the test server`);
    if (!query.name) return sendError(res, 400, "Required parameter: name");
    let meta: { contentType?: string } = {};
    if (body.length) meta = JSON.parse(body.toString("utf8"));
    const id = randomUUID();
    sessions.set(id, {
      id,
      bucket,
      name: query.name,
      contentType: meta.contentType ?? "application/octet-stream",
      parts: [],
      receivedBytes: 0,
      finalized: false,
    });
    const location =
      `${endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=resumable` +
      `&name=${encodeURIComponent(query.name)}&upload_id=${id}`;
    res.writeHead(200, { location, "content-length": "0" });
    res.end();
  }

  // PUT <session URI> with Content-Range: a chunk "bytes a-b/(total or *)", or a status query
  // "bytes */(total or *)". An empty object's only chunk reads "bytes 0--1/0".
  function putChunk(req: IncomingMessage, res: ServerResponse, session: UploadSession, body: Buffer, fault?: Fault) {
    const range = String(req.headers["content-range"] ?? "");
    const m = /^bytes (?:(\d+)-(-1|\d+|\*)|\*)\/(\d+|\*)$/.exec(range);
    if (!m) return sendError(res, 400, `bad Content-Range: ${range}`);
    const incomplete = () => {
      const headers: Record<string, string> = { "content-length": "0" };
      if (session.receivedBytes > 0) headers.range = `bytes=0-${session.receivedBytes - 1}`;
      res.writeHead(308, headers);
      res.end();
    };
    if (session.finalized)
      return sendJson(
        res,
        200,
        metadataOf(session.bucket, session.name, objects.get(objectId(session.bucket, session.name))!),
      );
    if (m[1] !== undefined) {
      const start = Number(m[1]);
      if (start > session.receivedBytes)
        return sendError(res, 400, `chunk starts at ${start}, ${session.receivedBytes} bytes persisted`);
      const fresh = body.subarray(session.receivedBytes - start);
      session.parts.push(Buffer.from(fresh));
      session.receivedBytes += fresh.length;
    }
    const total = m[3] === "*" ? undefined : Number(m[3]);
    if (total === undefined || session.receivedBytes < total) return incomplete();
    if (session.receivedBytes > total)
      return sendError(res, 400, `received ${session.receivedBytes} bytes, more than the declared ${total}`);
    const data = Buffer.concat(session.parts);
    const crc32c = crc32cBase64(data);
    const claimed = /crc32c=([^,]+)/.exec(String(req.headers["x-goog-hash"] ?? ""))?.[1];
    if (claimed && claimed !== crc32c) return sendError(res, 400, "Provided CRC32C does not match the data");
    const stored: StoredObject = {
      data,
      generation: String(++generationCounter),
      contentType: session.contentType,
      updatedMs: Date.now(),
      crc32c,
      md5: md5Base64(data),
    };
    objects.set(objectId(session.bucket, session.name), stored);
    session.finalized = true;
    session.parts = [];
    const reported = metadataOf(session.bucket, session.name, stored);
    if (fault?.reportWrongHash) Object.assign(reported, { crc32c: "AAAAAA==", md5Hash: "AAAAAAAAAAAAAAAAAAAAAA==" });
    sendJson(res, 200, reported);
  }

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const path = decodeURIComponent(url.pathname);
    const query = Object.fromEntries(url.searchParams);
    // Recorded on arrival (status 0 until answered), so a test sees requests still in flight.
    const record: RecordedRequest = {
      method: req.method ?? "",
      path,
      query,
      headers: { ...req.headers },
      bodyBytes: 0,
      status: 0,
    };
    requests.push(record);
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch {
      // The client gave up mid-request (an upload whose source failed): nothing of it is kept.
      record.bodyBytes = -1;
      return void res.destroy();
    }
    record.bodyBytes = body.length;
    res.on("finish", () => (record.status = res.statusCode));

    if (options.access) {
      record.caller = callerOf(req.headers.authorization, options.access);
      const bucket = /^\/(?:upload\/)?storage\/v1\/b\/([^/]+)/.exec(url.pathname)?.[1];
      const allowed = bucket ? options.access.buckets[decodeURIComponent(bucket)] : undefined;
      if (allowed) {
        if (!record.caller) return sendError(res, 401, "Anonymous caller does not have storage.objects.get access.");
        if (!allowed.includes(record.caller))
          return sendError(
            res,
            403,
            `${record.caller} does not have storage.objects access to the Google Cloud Storage bucket.`,
          );
      }
    }
    const fault = takeFault(record.method, `${path}${url.search}`);
    if (fault?.status) return sendError(res, fault.status, `injected fault ${fault.status}`);

    let m = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)\/compose$/.exec(url.pathname);
    if (m && req.method === "POST") return compose(res, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), body);
    m = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
    if (m) return objectCall(req, res, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), query, fault);
    m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (m && req.method === "POST") return startSession(res, decodeURIComponent(m[1]!), query, body);
    if (m && req.method === "PUT" && query.upload_id) {
      const session = sessions.get(query.upload_id);
      if (!session) return sendError(res, 404, "No such upload session");
      return putChunk(req, res, session, body, fault);
    }
    if (m && req.method === "DELETE" && query.upload_id) {
      sessions.delete(query.upload_id);
      res.writeHead(499);
      return void res.end();
    }
    sendError(res, 501, `${req.method} ${path} not implemented by the test server`);
  });

  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    endpoint,
    requests,
    objects,
    sessions,
    buckets,
    inject: (f) => void faults.push(f),
    stop: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
