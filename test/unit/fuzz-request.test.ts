// Seeded fuzz/property test of src/request/parse.ts parseRequest against hostile input: random JSON,
// mutations of the captured client message, random bytes, truncated JSON, non-UTF-8, huge strings
// and arrays, deep nesting, absurd numbers, prototype-pollution keys.
//
// Properties, for every input: parseRequest returns a Request or throws RequestError (never another
// exception type) whose message starts with the field it names, shows the value shortened and stays
// short; no call takes long; Object.prototype is never changed.
//
// The seed is printed; replay a failure with FUZZ_SEED=<seed> (and more rounds with FUZZ_ROUNDS=<n>).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { RequestError } from "../../src/errors.ts";
import { parseRequest } from "../../src/request/parse.ts";

const FIXTURE_TEXT = readFileSync(
  new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname,
  "utf8",
);
// CI runs a fixed seed (a red build must be reproducible); elsewhere each run explores a new one.
const SEED = process.env.FUZZ_SEED
  ? Number(process.env.FUZZ_SEED) >>> 0
  : process.env.CI
    ? 20261128
    : (Math.random() * 2 ** 32) >>> 0;
const ROUNDS = process.env.FUZZ_ROUNDS ? Number(process.env.FUZZ_ROUNDS) : 1;
console.log(`fuzz-request: seed ${SEED} (replay with FUZZ_SEED=${SEED})`);

/** An error message never grows past this, whatever the input. */
const MAX_MESSAGE = 700;
/** An ordinary call (input under 100 KB) takes at most this long; huge inputs get HEAVY_CALL_MS. */
const CALL_MS = 250;
const HEAVY_CALL_MS = 5000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** mulberry32: small, fast, reproducible. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof rng>;

const PROTO_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
];
const FIELD_KEYS = [
  "experiment",
  "config",
  "message",
  "key",
  "filename",
  "args",
  "pythonenv",
  "pythonver",
  "resources_needed",
  "artifacts",
  "max_duration",
  "time_added",
  "cpus",
  "gpus",
  "gpuCount",
  "ram",
  "hdd",
  "gpuMem",
  "qualified",
  "url",
  "mutable",
  "unpack",
  "credentials",
  "aws",
  "access_key",
  "secret_access_key",
  "saveFrequency",
  "env",
  "pip",
  "storage",
  "endpoint",
  "saveWorkspaceFrequency",
  "experimentLifetime",
  "workspace",
  "modeldir",
  "_singularity",
];
const NUMBERS = [
  0,
  -0,
  -1,
  1,
  0.5,
  -0.5,
  1e308,
  -1e308,
  5e-324,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 31,
  -(2 ** 31),
  1e21,
  123456789.123,
];
const STRINGS = [
  "",
  " ",
  "NaN",
  "Infinity",
  "-Infinity",
  "+Infinity",
  "1e999",
  "-1e999",
  "1" + "0".repeat(400),
  "0x10",
  "0b11",
  "-3g",
  "3g",
  "16gib",
  "1e3",
  " 2 ",
  "\u0000",
  "\n",
  "\r\n",
  "\t",
  "\ufeff",
  "\ud800",
  "\udfff",
  "\u202e",
  "é",
  "日本語",
  "😀",
  "null",
  "true",
  "false",
  "[]",
  "{}",
  "'",
  '"',
  "\\",
  "a b",
  "'unterminated",
  '"unterminated',
  "../etc/passwd",
  "/etc/passwd",
  "file:///etc/passwd",
  "s3://169.254.169.254/b/k",
  "http://user:pass@example.com/x",
  "%00",
  "20m",
  "1h30m",
  "-5m",
  "999999999999999999999999h",
  "3.11",
  "python3",
  "__proto__",
  "constructor",
  "$(rm -rf /)",
  "`id`",
  "; id",
  "a\u0000b",
];

function randomString(r: Rng): string {
  if (r.chance(0.5)) return r.pick(STRINGS);
  const len = r.int(r.chance(0.1) ? 2000 : 24);
  let s = "";
  for (let i = 0; i < len; i++) {
    const kind = r.int(5);
    const code =
      kind === 0
        ? r.int(0x20)
        : kind === 1
          ? 0x20 + r.int(0x5f)
          : kind === 2
            ? 0x80 + r.int(0x780)
            : kind === 3
              ? 0xd800 + r.int(0x800)
              : r.int(0x10000);
    s += String.fromCharCode(code);
  }
  return s;
}

function randomKey(r: Rng): string {
  const roll = r.int(10);
  if (roll < 3) return r.pick(PROTO_KEYS);
  if (roll < 7) return r.pick(FIELD_KEYS);
  return randomString(r);
}

/** Set an own property, even "__proto__" (assignment would change the prototype instead). */
function own(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function randomJson(r: Rng, depth = 0): Json {
  const roll = r.int(depth > 4 ? 4 : 7);
  switch (roll) {
    case 0:
      return r.pick([null, true, false]);
    case 1:
      return r.chance(0.7) ? r.pick(NUMBERS) : (r.next() - 0.5) * 10 ** r.int(30);
    case 2:
    case 3:
      return randomString(r);
    case 4:
      return Array.from({ length: r.int(6) }, () => randomJson(r, depth + 1));
    default: {
      const obj: Record<string, Json> = {};
      for (let i = r.int(6); i > 0; i--) own(obj, randomKey(r), randomJson(r, depth + 1));
      return obj;
    }
  }
}

/** Every path to a member of the fixture (object keys and array indexes). */
function paths(value: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []) {
  if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      const p = [...prefix, Array.isArray(value) ? Number(k) : k];
      out.push(p);
      paths(v, p, out);
    }
  }
  return out;
}

function nested(depth: number, leaf: string, open = "[", close = "]"): string {
  return open.repeat(depth) + leaf + close.repeat(depth);
}

const deepObject = (depth: number) => '{"a":'.repeat(depth) + "1" + "}".repeat(depth);

/** A mutated copy of the client message, as text. */
function mutateFixture(r: Rng): string {
  const doc = JSON.parse(FIXTURE_TEXT) as Record<string, unknown>;
  const all = paths(doc);
  for (let n = 1 + r.int(4); n > 0; n--) {
    const path = r.pick(all);
    let parent: any = doc;
    for (const step of path.slice(0, -1)) parent = parent?.[step];
    if (typeof parent !== "object" || parent === null) continue;
    const last = path[path.length - 1]!;
    switch (r.int(8)) {
      case 0:
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      case 1: // swap the type
        parent[last] = r.pick<Json>([null, 0, -1, "", "x", [], {}, true, [1, "a"], { a: 1 }]);
        break;
      case 2:
        parent[last] = randomJson(r);
        break;
      case 3:
        parent[last] = r.pick(STRINGS);
        break;
      case 4:
        parent[last] = r.pick(NUMBERS);
        break;
      case 5: // a prototype-pollution key next to the member
        if (!Array.isArray(parent))
          own(parent, r.pick(PROTO_KEYS), r.chance(0.5) ? { polluted: "yes", qualified: "s3://h/b/k" } : randomJson(r));
        break;
      case 6: // an extra member under a random key
        if (!Array.isArray(parent)) own(parent, randomKey(r), randomJson(r));
        break;
      default: // a value that JSON cannot hold, written as a bare word later
        parent[last] = r.pick(["@@NaN@@", "@@Infinity@@", "@@-Infinity@@", "@@undefined@@"]);
    }
  }
  let text = JSON.stringify(doc, null, r.chance(0.3) ? 1 : undefined);
  text = text.replace(/"@@(NaN|Infinity|-Infinity|undefined)@@"/g, "$1");
  if (r.chance(0.1)) text = text.replace(/\{/, `{"__proto__":{"polluted":"yes"},`);
  return text;
}

/** Damage text the way transports and editors do: truncate, flip, insert, delete. */
function damageText(r: Rng, text: string): string {
  switch (r.int(5)) {
    case 0:
      return text.slice(0, r.int(text.length));
    case 1: {
      const i = r.int(text.length);
      return text.slice(0, i) + String.fromCharCode(r.int(0x10000)) + text.slice(i + 1);
    }
    case 2: {
      const i = r.int(text.length);
      return (
        text.slice(0, i) + r.pick(["{", "}", "[", "]", '"', "\\", ",", ":", "\n", "\u0000", "\ud800"]) + text.slice(i)
      );
    }
    case 3: {
      const i = r.int(text.length);
      return text.slice(0, i) + text.slice(i + 1 + r.int(50));
    }
    default:
      return text + text.slice(0, r.int(200));
  }
}

function randomBytes(r: Rng): Uint8Array {
  const bytes = new Uint8Array(r.int(r.chance(0.1) ? 5000 : 200));
  for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
  if (r.chance(0.3)) bytes.set([0xef, 0xbb, 0xbf].slice(0, Math.min(3, bytes.length)));
  return bytes;
}

/** Fixture bytes with invalid UTF-8 (lone continuation bytes, overlongs, surrogates) spliced in. */
function nonUtf8(r: Rng): Uint8Array {
  const base = new TextEncoder().encode(FIXTURE_TEXT);
  const bad = r.pick([
    [0x80],
    [0xc0, 0xaf],
    [0xed, 0xa0, 0x80],
    [0xff, 0xfe],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
    [0xe2, 0x82],
  ]);
  const i = r.int(base.length);
  const out = new Uint8Array(base.length + bad.length);
  out.set(base.subarray(0, i));
  out.set(bad, i);
  out.set(base.subarray(i), i + bad.length);
  return out;
}

// ---- the property ----------------------------------------------------------------------------

const protoNamesBefore = Object.getOwnPropertyNames(Object.prototype).sort().join(",");

function describeInput(input: string | Uint8Array): string {
  const text = typeof input === "string" ? input : `bytes ${Buffer.from(input.subarray(0, 60)).toString("hex")}`;
  return `${JSON.stringify(text.slice(0, 200))}${text.length > 200 ? ` … (${text.length} chars)` : ""}`;
}

type Tally = { accepted: number; refused: number; slowestMs: number };

function check(input: string | Uint8Array, what: string, tally: Tally, limitMs = CALL_MS): void {
  const started = performance.now();
  let outcome: unknown;
  let threw = false;
  try {
    outcome = parseRequest(input);
  } catch (err) {
    outcome = err;
    threw = true;
  }
  const ms = performance.now() - started;
  tally.slowestMs = Math.max(tally.slowestMs, ms);
  const where = `seed ${SEED}, ${what}, input ${describeInput(input)}`;
  if (
    Object.getOwnPropertyNames(Object.prototype).sort().join(",") !== protoNamesBefore ||
    ({} as Record<string, unknown>).polluted !== undefined
  ) {
    throw new Error(`Object.prototype was changed (${where})`);
  }
  if (ms > limitMs) throw new Error(`parseRequest took ${ms.toFixed(0)} ms, over ${limitMs} ms (${where})`);
  if (!threw) {
    const request = outcome as ReturnType<typeof parseRequest>;
    if (typeof request?.experiment?.key !== "string" || typeof request.config !== "object") {
      throw new Error(`parseRequest returned something that is not a Request (${where})`);
    }
    for (const [label, artifact] of Object.entries(request.experiment.artifacts)) {
      if (Object.getPrototypeOf(artifact) !== Object.prototype || artifact.label !== label)
        throw new Error(`artifact ${label} is malformed (${where})`);
    }
    if (
      Object.getPrototypeOf(request.experiment.artifacts) !== Object.prototype ||
      Object.getPrototypeOf(request.config.env) !== Object.prototype
    ) {
      throw new Error(`a map of the request has a changed prototype (${where})`);
    }
    for (const n of [
      request.experiment.resources.cpus,
      request.experiment.resources.ramBytes,
      request.experiment.resources.hddBytes,
      request.experiment.resources.gpus,
    ]) {
      if (!Number.isFinite(n) || n < 0) throw new Error(`resource ${n} is not a finite non-negative number (${where})`);
    }
    for (const d of [
      request.experiment.maxDurationMs,
      request.config.experimentLifetimeMs,
      request.config.saveWorkspaceFrequencyMs,
    ]) {
      if (d !== undefined && (!Number.isFinite(d) || d < 0)) throw new Error(`duration ${d} is not finite (${where})`);
    }
    tally.accepted++;
    return;
  }
  if (!(outcome instanceof RequestError)) {
    const name = outcome instanceof Error ? `${outcome.name}: ${outcome.message.slice(0, 300)}` : String(outcome);
    throw new Error(`parseRequest threw ${name}, not a RequestError (${where})`);
  }
  const field = outcome.context.field;
  if (!field || !outcome.message.startsWith(`${field}: `)) {
    throw new Error(
      `RequestError does not start with its field: ${JSON.stringify(outcome.message.slice(0, 300))} (${where})`,
    );
  }
  if (field.length > 200) throw new Error(`RequestError field is ${field.length} characters long (${where})`);
  if (outcome.message.length > MAX_MESSAGE) {
    throw new Error(
      `RequestError message is ${outcome.message.length} characters long: ${JSON.stringify(outcome.message.slice(0, 300))} (${where})`,
    );
  }
  if (outcome.message.length <= field.length + 2) throw new Error(`RequestError names no value (${where})`);
  if (outcome.retryable) throw new Error(`RequestError is retryable (${where})`);
  tally.refused++;
}

function run(name: string, count: number, make: (r: Rng, i: number) => string | Uint8Array, limitMs = CALL_MS): Tally {
  const tally: Tally = { accepted: 0, refused: 0, slowestMs: 0 };
  // Each generator has its own stream, so a replay of one does not depend on the others.
  let salt = 0;
  for (const c of name) salt = (Math.imul(salt, 31) + c.charCodeAt(0)) >>> 0;
  const r = rng(SEED ^ salt);
  for (let i = 0; i < count * ROUNDS; i++) check(make(r, i), `${name} #${i}`, tally, limitMs);
  console.log(
    `fuzz-request ${name}: ${tally.accepted} accepted, ${tally.refused} refused, slowest ${tally.slowestMs.toFixed(1)} ms`,
  );
  return tally;
}

// ---- the cases ---------------------------------------------------------------------------------

describe(`parseRequest under fuzzing (seed ${SEED})`, () => {
  test("random JSON values as the whole message", () => {
    const t = run("random-json", 1500, (r) => JSON.stringify(randomJson(r)) ?? "null");
    expect(t.refused).toBeGreaterThan(0);
  });

  test("random JSON values inside an otherwise valid message", () => {
    run("random-json-inside", 1500, (r) => {
      const doc = JSON.parse(FIXTURE_TEXT);
      const target = r.pick([
        doc,
        doc.experiment,
        doc.experiment.artifacts,
        doc.experiment.artifacts.workspace,
        doc.experiment.resources_needed,
        doc.config,
        doc.config.env,
      ]);
      for (let n = 1 + r.int(3); n > 0; n--) own(target, randomKey(r), randomJson(r));
      return JSON.stringify(doc);
    });
  });

  test("mutations of the captured client message: dropped fields, swapped types, odd numbers, pollution keys", () => {
    const t = run("fixture-mutations", 2500, (r) => mutateFixture(r));
    expect(t.accepted).toBeGreaterThan(0);
    expect(t.refused).toBeGreaterThan(0);
  });

  test("truncated and damaged JSON", () => {
    run("damaged-json", 1500, (r) => damageText(r, r.chance(0.7) ? FIXTURE_TEXT : mutateFixture(r)));
  });

  test("random bytes and non-UTF-8 bodies", () => {
    run("random-bytes", 1000, (r) => randomBytes(r));
    const t = run("non-utf8", 300, (r) => nonUtf8(r));
    expect(t.accepted + t.refused).toBe(300 * ROUNDS);
  });

  test("negative, absurd and not-quite numbers in resources and durations", () => {
    const odd = [
      -1,
      -0.0001,
      1e308,
      2 ** 53 + 2,
      "1e999",
      "NaN",
      "Infinity",
      "-Infinity",
      "9".repeat(400),
      "-3g",
      "1" + "0".repeat(30) + "p",
      "0x10",
      "",
      " ",
      "2g ",
      "2 g",
      "ṡ",
      "1.5.5",
    ];
    const places: Array<[string, string]> = [
      ["resources_needed", "cpus"],
      ["resources_needed", "gpus"],
      ["resources_needed", "gpuCount"],
      ["resources_needed", "ram"],
      ["resources_needed", "hdd"],
      ["resources_needed", "gpuMem"],
      ["", "max_duration"],
      ["", "time_added"],
    ];
    run("absurd-numbers", 600, (r) => {
      const doc = JSON.parse(FIXTURE_TEXT);
      const [group, key] = r.pick(places);
      const value = r.pick(odd);
      if (group) doc.experiment[group][key] = value;
      else doc.experiment[key] = value;
      if (r.chance(0.3)) doc.config[r.pick(["experimentLifetime", "saveWorkspaceFrequency"])] = r.pick(odd);
      if (r.chance(0.3)) doc.experiment.artifacts.modeldir.saveFrequency = r.pick(odd);
      return JSON.stringify(doc);
    });
  });

  test("prototype-pollution keys everywhere leave Object.prototype and the request's maps alone", () => {
    const bodies = [
      `{"__proto__":{"polluted":"yes"},"experiment":{"key":"k","filename":null}}`,
      `{"experiment":{"key":"k","filename":null,"__proto__":{"polluted":"yes"}}}`,
      `{"experiment":{"key":"k","filename":null,"artifacts":{"__proto__":{"qualified":"s3://h/b/k","polluted":"yes"}}}}`,
      `{"experiment":{"key":"k","filename":null,"artifacts":{"constructor":{"qualified":"s3://h/b/k"}}}}`,
      `{"experiment":{"key":"k","filename":null,"artifacts":{"toString":{"qualified":"s3://h/b/k"}}}}`,
      `{"experiment":{"key":"k","filename":null,"resources_needed":{"__proto__":{"cpus":"1000"}}}}`,
      `{"experiment":{"key":"k","filename":null},"config":{"env":{"__proto__":"x","constructor":"y"}}}`,
      `{"experiment":{"key":"k","filename":null},"config":{"env":{"__proto__":{"polluted":"yes"}}}}`,
      `{"experiment":{"key":"__proto__","filename":null}}`,
      `{"experiment":{"key":"constructor","filename":null},"config":{"__proto__":{"env":{"A":"b"}}}}`,
    ];
    const tally: Tally = { accepted: 0, refused: 0, slowestMs: 0 };
    bodies.forEach((b, i) => {
      check(b, `pollution #${i}`, tally);
    });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // An artifact labelled __proto__ is refused, not silently turned into the map's prototype.
    expect(() => parseRequest(bodies[2]!)).toThrow(RequestError);
    expect(() => parseRequest(bodies[2]!)).toThrow(/__proto__/);
    // Inherited values never stand in for missing fields.
    expect(parseRequest(bodies[5]!).experiment.resources.cpus).toBe(0);
    expect(parseRequest(bodies[9]!).config.env).toEqual({});
  });
});

describe(`parseRequest on huge and deep input (seed ${SEED})`, () => {
  const TEN_MB = 10 * 1024 * 1024;
  const huge = "x".repeat(TEN_MB);
  const tally: Tally = { accepted: 0, refused: 0, slowestMs: 0 };

  test("10 MB strings in every string field", () => {
    const setters: Array<[string, (doc: any, v: string) => void]> = [
      ["key", (d, v) => (d.experiment.key = v)],
      ["filename", (d, v) => (d.experiment.filename = v)],
      ["arg", (d, v) => (d.experiment.args = [v])],
      ["quoted arg", (d, v) => (d.experiment.args = [`'${v}`])],
      ["pythonenv", (d, v) => (d.experiment.pythonenv = v)],
      ["pythonver", (d, v) => (d.experiment.pythonver = v)],
      ["ram", (d, v) => (d.experiment.resources_needed.ram = v)],
      ["cpus", (d, v) => (d.experiment.resources_needed.cpus = v)],
      ["max_duration", (d, v) => (d.experiment.max_duration = v)],
      ["qualified", (d, v) => (d.experiment.artifacts.workspace.qualified = v)],
      ["mutable", (d, v) => (d.experiment.artifacts.workspace.mutable = v)],
      ["label", (d, v) => (d.experiment.artifacts[v] = { qualified: "s3://h/b/k" })],
      ["env name", (d, v) => (d.config.env[`${v}-`] = "x")],
      ["env value", (d, v) => (d.config.env.BIG = v)],
      ["unknown key", (d, v) => (d.experiment[v] = 1)],
    ];
    for (const [what, set] of setters) {
      const doc = JSON.parse(FIXTURE_TEXT);
      set(doc, huge);
      check(JSON.stringify(doc), `10 MB ${what}`, tally, HEAVY_CALL_MS);
    }
    // Over the body bound: refused before parsing.
    check(
      `{"experiment":{"key":"k","filename":null,"info":"${"y".repeat(40 * 1024 * 1024)}"}}`,
      "40 MB body",
      tally,
      HEAVY_CALL_MS,
    );
  });

  test("huge arrays (a million args, requirement lines, artifacts keys)", () => {
    const doc = JSON.parse(FIXTURE_TEXT);
    doc.experiment.args = Array.from({ length: 1_000_000 }, (_, i) => `a${i}`);
    check(JSON.stringify(doc), "1M args", tally, HEAVY_CALL_MS);
    const doc2 = JSON.parse(FIXTURE_TEXT);
    doc2.experiment.pythonenv = Array.from({ length: 1_000_000 }, () => 7);
    check(JSON.stringify(doc2), "1M non-string requirement lines", tally, HEAVY_CALL_MS);
    const doc3 = JSON.parse(FIXTURE_TEXT);
    doc3.experiment.args = Array.from({ length: 1_000_000 }, () => ({ a: [1, 2, 3] }));
    check(JSON.stringify(doc3), "1M object args", tally, HEAVY_CALL_MS);
    const doc4 = JSON.parse(FIXTURE_TEXT);
    for (let i = 0; i < 100_000; i++) doc4.config.env[`V${i}`] = "x";
    doc4.config.env["bad name"] = "x";
    check(JSON.stringify(doc4), "100k env entries", tally, HEAVY_CALL_MS);
  });

  test("nesting 100k deep: the whole message, and inside known and unknown fields", () => {
    const deep = 100_000;
    const bodies: Array<[string, string]> = [
      ["array", nested(deep, "")],
      ["object", deepObject(deep)],
      ["args", `{"experiment":{"key":"k","filename":null,"args":[${nested(deep, "")}]}}`],
      ["info", `{"experiment":{"key":"k","filename":null,"info":${nested(deep, "1")}}}`],
      ["env", `{"experiment":{"key":"k","filename":null},"config":{"env":${deepObject(deep)}}}`],
      ["truncated", nested(deep, "").slice(0, deep + 10)],
      ["in strings only", `{"experiment":{"key":"k","filename":null,"info":"${"[{".repeat(deep)}"}}`],
      ["just over the bound", `{"experiment":{"key":"k","filename":null,"info":${nested(63, "1")}}}`],
    ];
    for (const [what, body] of bodies) check(body, `deep ${what}`, tally, HEAVY_CALL_MS);
    // Brackets inside strings are not nesting: a long pythonenv of "[" is fine.
    expect(parseRequest(bodies[6]![1]).experiment.key).toBe("k");
    console.log(
      `fuzz-request huge/deep: ${tally.accepted} accepted, ${tally.refused} refused, slowest ${tally.slowestMs.toFixed(0)} ms`,
    );
  });

  test("errors for huge values are short and still name field and value", () => {
    const doc = JSON.parse(FIXTURE_TEXT);
    doc.experiment.args = ["ok", `'${"z".repeat(TEN_MB)}`];
    let caught: unknown;
    try {
      parseRequest(JSON.stringify(doc));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RequestError);
    const message = (caught as Error).message;
    expect(message).toStartWith("experiment.args[1]: ");
    expect(message).toContain("'zzzz");
    expect(message).toContain("unterminated single quote");
    expect(message.length).toBeLessThan(MAX_MESSAGE);

    const doc2 = JSON.parse(FIXTURE_TEXT);
    doc2.config.env[`${"N".repeat(TEN_MB)}\n-`] = "x";
    try {
      parseRequest(JSON.stringify(doc2));
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).message).toStartWith('config.env."NNNN');
    expect((caught as Error).message.length).toBeLessThan(MAX_MESSAGE);
  });
});
