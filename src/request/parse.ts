// Tolerant reading of a studioml request: nulls, numbers as strings, unknown keys and raw
// newlines are accepted; anything that still cannot be used is a RequestError naming the field.

import { parseDurationMs, parseSizeBytes } from "../config/units.ts";
import { PermanentError, RequestError } from "../errors.ts";
import type { Artifact, Credentials, Experiment, Request, Resources, RunConfig } from "./model.ts";
import { ShellWordsError, splitShellWords } from "./shell-words.ts";

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parse a message body into a request. Throws RequestError / PermanentError. */
export function parseRequest(body: Uint8Array | string): Request {
  const text = typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: false }).decode(body);
  const doc = parseJsonLeniently(text);
  if (!isObject(doc)) throw new RequestError("(message)", doc, "is not a JSON object");
  if ("message" in doc && !("experiment" in doc)) {
    throw new PermanentError(
      "message: encrypted/signed requests are not supported by this runner yet; send clear-text requests",
      { field: "message" },
    );
  }
  const experiment = parseExperiment(doc.experiment);
  const config = parseConfig(doc.config ?? {});
  return { experiment, config };
}

function parseJsonLeniently(text: string): unknown {
  const trimmed = text.replace(/^\uFEFF/, "").trim();
  if (trimmed === "") throw new RequestError("(message)", "", "is empty");
  try {
    return JSON.parse(trimmed);
  } catch (first) {
    // Raw newlines or tabs inside strings are not valid JSON but clients have sent them.
    try {
      return JSON.parse(escapeControlCharsInStrings(trimmed));
    } catch {
      throw new RequestError("(message)", trimmed.slice(0, 80), `is not valid JSON (${(first as Error).message})`);
    }
  }
}

function escapeControlCharsInStrings(text: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === "\\") {
        out += c + (text[i + 1] ?? "");
        i++;
        continue;
      }
      if (c === '"') inString = false;
      else if (c === "\n") {
        out += "\\n";
        continue;
      } else if (c === "\r") {
        out += "\\r";
        continue;
      } else if (c === "\t") {
        out += "\\t";
        continue;
      }
    } else if (c === '"') inString = true;
    out += c;
  }
  return out;
}

function str(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

function num(field: string, v: unknown, fallback: number): number {
  if (v === null || v === undefined || v === "") return fallback;
  const n = typeof v === "number" ? v : typeof v === "string" ? Number(v.trim()) : NaN;
  if (!Number.isFinite(n) || n < 0) throw new RequestError(field, v, "is not a non-negative number");
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
  throw new RequestError(field, v, "is not a boolean");
}

function size(field: string, v: unknown): number {
  if (v === null || v === undefined || v === "") return 0;
  const bytes = parseSizeBytes(v);
  if (bytes === undefined) throw new RequestError(field, v, "is not a size (examples: 512mb, 3g, 16gib)");
  return bytes;
}

function duration(field: string, v: unknown): number | undefined {
  if (v === null || v === undefined || v === "") return undefined;
  const ms = parseDurationMs(v);
  if (ms === undefined) throw new RequestError(field, v, "is not a duration (examples: 20m, 1h30m, 3600s)");
  return ms;
}

const EXPERIMENT_KEY = /^[A-Za-z0-9][A-Za-z0-9._:@+=,-]{0,254}$/;

function parseExperiment(v: unknown): Experiment {
  if (!isObject(v)) throw new RequestError("experiment", v, "must be an object");
  const key = str(v.key);
  if (!key) throw new RequestError("experiment.key", v.key, "is required");
  if (!EXPERIMENT_KEY.test(key)) {
    throw new RequestError("experiment.key", key, "may hold only letters, digits and . _ : @ + = , - (no slashes)");
  }
  const filename = str(v.filename) ?? null;
  if (filename !== null && filename !== "-m" && (filename.startsWith("/") || filename.split("/").includes(".."))) {
    throw new RequestError("experiment.filename", filename, "must be a path inside the workspace");
  }
  const args = parseArgs(v.args);
  const pythonenv = parseLines("experiment.pythonenv", v.pythonenv);
  const pythonver = str(v.pythonver) ?? "3";
  if (!/^\d+(\.\d+){0,2}$/.test(pythonver)) {
    throw new RequestError("experiment.pythonver", v.pythonver, "is not a python version like 3.11");
  }
  const resources = parseResources("experiment.resources_needed", v.resources_needed);
  const artifacts = parseArtifacts(v.artifacts);
  if (!artifacts.workspace && filename !== null) {
    throw new RequestError("experiment.artifacts.workspace", undefined, "is required to run a script");
  }
  const timeAdded = v.time_added === null || v.time_added === undefined ? undefined : num("experiment.time_added", v.time_added, 0);
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
  if (!Array.isArray(v)) throw new RequestError("experiment.args", v, "must be a list of strings");
  const out: string[] = [];
  v.forEach((arg, i) => {
    const text = str(arg);
    if (text === undefined) throw new RequestError(`experiment.args[${i}]`, arg, "must be a string");
    try {
      out.push(...splitShellWords(text));
    } catch (err) {
      if (err instanceof ShellWordsError) throw new RequestError(`experiment.args[${i}]`, arg, `cannot be split: ${err.message}`);
      throw err;
    }
  });
  return out;
}

function parseLines(field: string, v: unknown): string[] {
  if (v === null || v === undefined) return [];
  const items = typeof v === "string" ? v.split(/\r?\n/) : Array.isArray(v) ? v : undefined;
  if (!items) throw new RequestError(field, v, "must be a list of requirement lines");
  return items
    .map((line, i) => {
      const text = str(line);
      if (text === undefined) throw new RequestError(`${field}[${i}]`, line, "must be a string");
      return text.trim();
    })
    .filter((line) => line !== "" && !line.startsWith("#"));
}

export function parseResources(field: string, v: unknown): Resources {
  const r = isObject(v) ? v : {};
  if (v !== null && v !== undefined && !isObject(v)) throw new RequestError(field, v, "must be an object");
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
  if (!isObject(v)) throw new RequestError("experiment.artifacts", v, "must be an object of label → artifact");
  const out: Record<string, Artifact> = {};
  for (const [label, raw] of Object.entries(v)) {
    const field = `experiment.artifacts.${label}`;
    if (raw === null) continue;
    if (!isObject(raw)) throw new RequestError(field, raw, "must be an object");
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(label) || label === "." || label === "..") {
      throw new RequestError(field, label, "is not a usable artifact label");
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
  if (!isObject(v)) throw new RequestError("config", v, "must be an object");
  const envRaw = v.env;
  const env: Record<string, string> = {};
  if (isObject(envRaw)) {
    for (const [name, value] of Object.entries(envRaw)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new RequestError(`config.env.${name}`, name, "is not a valid variable name");
      const text = str(value);
      if (text !== undefined) env[name] = text;
    }
  } else if (envRaw !== null && envRaw !== undefined) {
    throw new RequestError("config.env", envRaw, "must be an object of NAME → value");
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
