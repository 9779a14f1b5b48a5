// Tolerant reading of a studioml request: nulls, numbers as strings, unknown keys and raw
// newlines are accepted; anything that still cannot be used is a RequestError naming the field.
// Hostile input (test/unit/fuzz-request.test.ts) ends the same way: bodies over MAX_REQUEST_BYTES,
// nesting deeper than MAX_REQUEST_DEPTH, non-finite or absurd numbers, keys such as "__proto__"
// are refused with a RequestError whose message stays short (values and keys are shortened).

import { parseDurationMs, parseSizeBytes } from "../config/units.ts";
import { RequestError } from "../errors.ts";
import type { Artifact, Credentials, Experiment, Request, Resources, RunConfig } from "./model.ts";
import { ShellWordsError, splitShellWords } from "./shell-words.ts";

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Bodies larger than this are refused before they are parsed. Real requests are a few KiB to a
 * few hundred KiB (the pip freeze dominates); SQS caps messages at 256 KiB, Pub/Sub at 10 MB.
 */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/**
 * Objects and arrays nested deeper than this are refused before JSON.parse: deep nesting would
 * overflow the stack of JSON.parse or, later, of whatever serialises `raw` again (status records).
 * The python client's messages are 5 levels deep.
 */
export const MAX_REQUEST_DEPTH = 64;

/** Sizes, counts and durations above this are absurd (and past the integers a double holds exactly). */
const MAX_QUANTITY = Number.MAX_SAFE_INTEGER;

/** Parse a message body into a request. Throws RequestError (a PermanentError) naming the field. */
export function parseRequest(body: Uint8Array | string): Request {
  const length = typeof body === "string" ? body.length : body.byteLength;
  if (length > MAX_REQUEST_BYTES) {
    throw new RequestError(
      "(message)",
      `${length} bytes`,
      `is larger than the ${MAX_REQUEST_BYTES} bytes a request may have`,
    );
  }
  const text = typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: false }).decode(body);
  const doc = parseJsonLeniently(text);
  if (!isObject(doc)) throw new RequestError("(message)", shorten(doc), "is not a JSON object");
  if ("message" in doc && !("experiment" in doc)) {
    throw new RequestError(
      "message",
      shorten(doc.message),
      "is an encrypted/signed request, which this runner does not support yet; send clear-text requests",
    );
  }
  const experiment = parseExperiment(doc.experiment);
  const config = parseConfig(doc.config ?? {});
  return { experiment, config };
}

function parseJsonLeniently(text: string): unknown {
  const trimmed = text.replace(/^\uFEFF/, "").trim();
  if (trimmed === "") throw new RequestError("(message)", "", "is empty");
  const depth = nestingDepth(trimmed);
  if (depth > MAX_REQUEST_DEPTH) {
    throw new RequestError("(message)", trimmed.slice(0, 80), `is nested more than ${MAX_REQUEST_DEPTH} levels deep`);
  }
  try {
    return JSON.parse(trimmed);
  } catch (first) {
    // Raw newlines or tabs inside strings are not valid JSON but clients have sent them.
    try {
      return JSON.parse(escapeControlCharsInStrings(trimmed));
    } catch {
      const reason = first instanceof Error ? first.message : String(first);
      throw new RequestError("(message)", trimmed.slice(0, 80), `is not valid JSON (${reason.slice(0, 120)})`);
    }
  }
}

/** The deepest nesting of [ and { outside strings (an upper bound when the text is not JSON). */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
      if (max > MAX_REQUEST_DEPTH) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

function escapeControlCharsInStrings(text: string): string {
  const parts: string[] = [];
  let start = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) {
        i++;
        continue;
      }
      if (c === 0x22) inString = false;
      else if (c === 0x0a || c === 0x0d || c === 0x09) {
        parts.push(text.slice(start, i), c === 0x0a ? "\\n" : c === 0x0d ? "\\r" : "\\t");
        start = i + 1;
      }
    } else if (c === 0x22) inString = true;
  }
  parts.push(text.slice(start));
  return parts.join("");
}

/**
 * A small copy of a value for error messages: strings cut, arrays and objects cut to their first
 * few members and a few levels, so that describing it is cheap and can never overflow the stack.
 */
function shorten(v: unknown, depth = 0): unknown {
  if (typeof v === "string") return v.length > 160 ? `${v.slice(0, 160)}…` : v;
  if (typeof v !== "object" || v === null) return v;
  if (depth >= 4) return Array.isArray(v) ? "[…]" : "{…}";
  if (Array.isArray(v)) {
    const items = v.slice(0, 8).map((x) => shorten(x, depth + 1));
    if (v.length > 8) items.push(`… ${v.length - 8} more`);
    return items;
  }
  const keys = Object.keys(v);
  const entries: Array<[string, unknown]> = keys
    .slice(0, 8)
    .map((k) => [fieldKey(k), shorten((v as Json)[k], depth + 1)]);
  if (keys.length > 8) entries.push(["…", `${keys.length - 8} more`]);
  return Object.fromEntries(entries); // own data properties, even for a "__proto__" key
}

/** A key of the request as it appears in a field name: as sent when short and printable, else quoted and cut. */
function fieldKey(key: string): string {
  if (/^[\x21-\x7e]{1,64}$/.test(key)) return key;
  const cut = key.length > 40 ? `${key.slice(0, 40)}…` : key;
  return JSON.stringify(cut);
}

/** Keys that name members of every object ("__proto__", "constructor", "toString" …): never usable as names. */
const inheritedName = (key: string) => key in Object.prototype;

function str(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

function num(field: string, v: unknown, fallback: number): number {
  if (v === null || v === undefined || v === "") return fallback;
  const n = typeof v === "number" ? v : typeof v === "string" ? Number(v.trim()) : NaN;
  if (!Number.isFinite(n) || n < 0) throw new RequestError(field, shorten(v), "is not a non-negative number");
  if (n > MAX_QUANTITY) throw new RequestError(field, shorten(v), `is absurdly large (more than ${MAX_QUANTITY})`);
  return n;
}

function bool(field: string, v: unknown, fallback: boolean): boolean {
  if (v === null || v === undefined) return fallback;
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  if (typeof v === "string") {
    const t = v.trim().toLowerCase();
    if (["true", "yes", "1", "on"].includes(t)) return true;
    if (["false", "no", "0", "off", ""].includes(t)) return false;
  }
  throw new RequestError(field, shorten(v), "is not a boolean");
}

function size(field: string, v: unknown): number {
  if (v === null || v === undefined || v === "") return 0;
  const bytes = parseSizeBytes(v);
  if (bytes === undefined) throw new RequestError(field, shorten(v), "is not a size (examples: 512mb, 3g, 16gib)");
  if (!Number.isFinite(bytes) || bytes > MAX_QUANTITY)
    throw new RequestError(field, shorten(v), "is absurdly large (more than 8 PiB)");
  return bytes;
}

function duration(field: string, v: unknown): number | undefined {
  if (v === null || v === undefined || v === "") return undefined;
  const ms = parseDurationMs(v);
  if (ms === undefined) throw new RequestError(field, shorten(v), "is not a duration (examples: 20m, 1h30m, 3600s)");
  if (!Number.isFinite(ms) || ms > MAX_QUANTITY) throw new RequestError(field, shorten(v), "is absurdly long");
  return ms;
}

const EXPERIMENT_KEY = /^[A-Za-z0-9][A-Za-z0-9._:@+=,-]{0,254}$/;

function parseExperiment(v: unknown): Experiment {
  if (!isObject(v)) throw new RequestError("experiment", shorten(v), "must be an object");
  const key = str(v.key);
  if (!key) throw new RequestError("experiment.key", shorten(v.key), "is required");
  if (!EXPERIMENT_KEY.test(key)) {
    throw new RequestError(
      "experiment.key",
      shorten(key),
      "may hold only letters, digits and . _ : @ + = , - (no slashes)",
    );
  }
  const filename = str(v.filename) ?? null;
  if (filename !== null && filename !== "-m" && (filename.startsWith("/") || filename.split("/").includes(".."))) {
    throw new RequestError("experiment.filename", shorten(filename), "must be a path inside the workspace");
  }
  const args = parseArgs(v.args);
  const pythonenv = parseLines("experiment.pythonenv", v.pythonenv);
  const pythonver = str(v.pythonver) ?? "3";
  if (!/^\d+(\.\d+){0,2}$/.test(pythonver)) {
    throw new RequestError("experiment.pythonver", shorten(v.pythonver), "is not a python version like 3.11");
  }
  const resources = parseResources("experiment.resources_needed", v.resources_needed);
  const artifacts = parseArtifacts(v.artifacts);
  if (!artifacts.workspace && filename !== null) {
    throw new RequestError("experiment.artifacts.workspace", undefined, "is required to run a script");
  }
  const timeAdded =
    v.time_added === null || v.time_added === undefined ? undefined : num("experiment.time_added", v.time_added, 0);
  return {
    key,
    filename,
    args,
    pythonenv,
    pythonver,
    resources,
    maxDurationMs: duration("experiment.max_duration", v.max_duration),
    timeAddedMs: timeAdded === undefined ? undefined : timeAdded * 1000,
    artifacts,
    raw: v,
  };
}

function parseArgs(v: unknown): string[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new RequestError("experiment.args", shorten(v), "must be a list of strings");
  const out: string[] = [];
  v.forEach((arg, i) => {
    const text = str(arg);
    if (text === undefined) throw new RequestError(`experiment.args[${i}]`, shorten(arg), "must be a string");
    let words: string[];
    try {
      words = splitShellWords(text);
    } catch (err) {
      // The splitter's message repeats the whole argument; the value is already in ours.
      if (err instanceof ShellWordsError)
        throw new RequestError(
          `experiment.args[${i}]`,
          shorten(arg),
          `cannot be split: ${err.message.split(" in ")[0]}`,
        );
      throw err;
    }
    for (const word of words) out.push(word); // not push(...words): a huge spread overflows the stack
  });
  return out;
}

function parseLines(field: string, v: unknown): string[] {
  if (v === null || v === undefined) return [];
  const items = typeof v === "string" ? v.split(/\r?\n/) : Array.isArray(v) ? v : undefined;
  if (!items) throw new RequestError(field, shorten(v), "must be a list of requirement lines");
  return items
    .map((line, i) => {
      const text = str(line);
      if (text === undefined) throw new RequestError(`${field}[${i}]`, shorten(line), "must be a string");
      return text.trim();
    })
    .filter((line) => line !== "" && !line.startsWith("#"));
}

export function parseResources(field: string, v: unknown): Resources {
  const r = isObject(v) ? v : {};
  if (v !== null && v !== undefined && !isObject(v)) throw new RequestError(field, shorten(v), "must be an object");
  const gpus = num(`${field}.gpus`, r.gpus, 0);
  const gpuCount = num(`${field}.gpuCount`, r.gpuCount, 0);
  return {
    cpus: num(`${field}.cpus`, r.cpus, 0),
    ramBytes: size(`${field}.ram`, r.ram),
    hddBytes: size(`${field}.hdd`, r.hdd),
    gpus: Math.max(gpus, gpuCount),
    gpuMemBytes: size(`${field}.gpuMem`, r.gpuMem),
  };
}

export function parseCredentials(field: string, v: unknown): Credentials | undefined {
  if (!isObject(v)) return undefined;
  const aws = v.aws;
  if (!isObject(aws)) return {};
  const accessKey = str(aws.access_key);
  const secretAccessKey = str(aws.secret_access_key) ?? str(aws.secret_key);
  if (!accessKey && !secretAccessKey) return {};
  if (!accessKey || !secretAccessKey) {
    throw new RequestError(`${field}.aws`, "(redacted)", "needs both access_key and secret_access_key");
  }
  return {
    aws: {
      accessKey,
      secretAccessKey,
      sessionToken: str(aws.session_token),
      region: str(aws.region),
    },
  };
}

function parseArtifacts(v: unknown): Record<string, Artifact> {
  if (v === null || v === undefined) return {};
  if (!isObject(v)) throw new RequestError("experiment.artifacts", shorten(v), "must be an object of label → artifact");
  const out: Record<string, Artifact> = {};
  for (const [label, raw] of Object.entries(v)) {
    const field = `experiment.artifacts.${fieldKey(label)}`;
    if (raw === null) continue;
    if (!isObject(raw)) throw new RequestError(field, shorten(raw), "must be an object");
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(label) || label === "." || label === ".." || inheritedName(label)) {
      throw new RequestError(field, shorten(label), "is not a usable artifact label");
    }
    const qualified = str(raw.qualified) ?? str(raw.url);
    if (!qualified) {
      // Artifacts with only a client-local path (or nothing) cannot be fetched; skip them.
      continue;
    }
    const saveFrequency = raw.saveFrequency;
    out[label] = {
      label,
      qualified,
      key: str(raw.key),
      bucket: str(raw.bucket),
      mutable: bool(`${field}.mutable`, raw.mutable, false),
      unpack: bool(`${field}.unpack`, raw.unpack, true),
      credentials: parseCredentials(`${field}.credentials`, raw.credentials),
      saveFrequencyMs: duration(`${field}.saveFrequency`, saveFrequency),
      hash: str(raw.hash),
    };
  }
  return out;
}

function parseConfig(v: unknown): RunConfig {
  if (!isObject(v)) throw new RequestError("config", shorten(v), "must be an object");
  const envRaw = v.env;
  const env: Record<string, string> = {};
  if (isObject(envRaw)) {
    for (const [name, value] of Object.entries(envRaw)) {
      // "__proto__" is a valid shell name, but assigning it would change env's prototype instead.
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name === "__proto__") {
        throw new RequestError(`config.env.${fieldKey(name)}`, shorten(name), "is not a valid variable name");
      }
      const text = str(value);
      if (text !== undefined) env[name] = text;
    }
  } else if (envRaw !== null && envRaw !== undefined) {
    throw new RequestError("config.env", shorten(envRaw), "must be an object of NAME → value");
  }
  const storage = isObject(v.storage) ? v.storage : {};
  return {
    env,
    pip: parseLines("config.pip", v.pip),
    saveWorkspaceFrequencyMs: duration("config.saveWorkspaceFrequency", v.saveWorkspaceFrequency),
    experimentLifetimeMs: duration("config.experimentLifetime", v.experimentLifetime),
    storageEndpoint: str(storage.endpoint),
    storageCredentials: parseCredentials("config.storage.credentials", storage.credentials),
    raw: v,
  };
}
