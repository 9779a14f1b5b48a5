// Layers settings (flag > environment variable > YAML file > default), converts units and reports
// every problem at once.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseDurationMs, parseSizeBytes } from "./units.ts";
import { envOf, type OptionSpec } from "./options.ts";
import type { SettingsOf } from "./settings.ts";

/** One converted value, before the table's types name it. */
type Value = string | number | boolean | RegExp | undefined;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

type Source = { value: unknown; from: string };

/** Read settings for the given options; throws ConfigError listing every problem. */
export function loadSettings<const T extends readonly OptionSpec[]>(
  specs: T,
  flags: Record<string, unknown>,
  env: Record<string, string | undefined> = process.env,
): SettingsOf<T> {
  const problems: string[] = [];
  const known = new Map<string, OptionSpec>(specs.map((s) => [s.name, s]));

  let fileValues: Record<string, unknown> = {};
  const configSpec = known.get("config");
  const configEnv = configSpec && envOf(configSpec);
  const configPath = flags.config ?? (configEnv ? env[configEnv] : undefined);
  if (configPath !== undefined && configSpec) {
    try {
      const doc = parseYaml(readFileSync(resolve(String(configPath)), "utf8")) ?? {};
      if (typeof doc !== "object" || Array.isArray(doc)) throw new Error("top level must be a mapping");
      for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
        const name = key.toLowerCase().replaceAll("_", "-");
        if (!known.has(name) || name === "config") problems.push(`${configPath}: unknown key "${key}"`);
        else fileValues[name] = value;
      }
    } catch (err) {
      problems.push(`--config ${configPath}: ${(err as Error).message}`);
      fileValues = {};
    }
  }

  const settings: Record<string, Value> = {};
  for (const spec of specs as readonly OptionSpec[]) {
    const fromFlag = flags[spec.name];
    const envVar = envOf(spec);
    const fromEnv = envVar ? env[envVar] : undefined;
    let source: Source | undefined;
    if (fromFlag !== undefined && fromFlag !== "") source = { value: fromFlag, from: `--${spec.name}` };
    else if (fromEnv !== undefined && fromEnv !== "") source = { value: fromEnv, from: `${envVar} (environment)` };
    else if (fileValues[spec.name] !== undefined && fileValues[spec.name] !== null)
      source = { value: fileValues[spec.name], from: `${spec.name} (config file)` };
    else if (spec.default !== undefined) source = { value: spec.default, from: `--${spec.name} default` };
    if (!source) {
      settings[spec.name] = undefined;
      continue;
    }
    const converted = convert(spec, source.value);
    if (typeof converted === "object" && converted !== null && "problem" in converted) {
      problems.push(`${source.from}: ${JSON.stringify(source.value)} ${converted.problem}`);
    } else {
      settings[spec.name] = converted;
    }
  }
  if (problems.length) throw new ConfigError(problems);
  // Each value was converted by its spec's type, which is what SettingsOf names.
  return settings as SettingsOf<T>;
}

function convert(spec: OptionSpec, raw: unknown): Value | { problem: string } {
  const text = typeof raw === "string" ? raw.trim() : raw;
  switch (spec.type) {
    case "string":
    case "path":
      return typeof text === "string" || typeof text === "number" ? String(text) : { problem: "is not a string" };
    case "boolean": {
      if (typeof text === "boolean") return text;
      const t = String(text).toLowerCase();
      if (["true", "1", "yes", "on"].includes(t)) return true;
      if (["false", "0", "no", "off"].includes(t)) return false;
      return { problem: "is not a boolean (true/false)" };
    }
    case "integer": {
      const n = typeof text === "number" ? text : Number(text);
      return Number.isInteger(n) && n >= 0 ? n : { problem: "is not a whole number ≥ 0" };
    }
    case "duration": {
      const ms = parseDurationMs(text);
      return ms === undefined ? { problem: "is not a duration (examples: 30s, 20m, 1h30m)" } : ms;
    }
    case "size": {
      const bytes = parseSizeBytes(text);
      return bytes === undefined ? { problem: "is not a size (examples: 512mib, 16gib, 3g)" } : bytes;
    }
    case "regex":
      try {
        return new RegExp(String(text));
      } catch (err) {
        return { problem: `is not a regular expression (${(err as Error).message})` };
      }
    case "enum":
      return spec.choices?.includes(String(text))
        ? String(text)
        : { problem: `is not one of ${spec.choices?.join(", ")}` };
  }
}
