// Turns an option table into citty arguments (their --help text) and finds flags nobody defined.

import type { ArgsDef } from "citty";
import type { OptionSpec } from "../config/options.ts";
import { envOf } from "../config/options.ts";

export function cittyArgs(specs: readonly OptionSpec[]): ArgsDef {
  const args: ArgsDef = {};
  for (const s of specs) {
    const def =
      s.default !== undefined ? ` [default: ${s.default}]` : s.defaultText ? ` [default: ${s.defaultText}]` : "";
    const env = envOf(s);
    const description = `${s.description}${def}${env ? ` (env ${env})` : ""}`;
    args[s.name] =
      s.type === "boolean" ? { type: "boolean", description } : { type: "string", description, valueHint: s.type };
  }
  return args;
}

/** Flags on the command line that no option defines. */
export function unknownFlags(rawArgs: string[], specs: readonly OptionSpec[], extra: string[] = []): string[] {
  const known = new Set([...specs.map((s) => s.name), ...extra, "help", "h", "version", "v"]);
  const out: string[] = [];
  for (const arg of rawArgs) {
    if (arg === "--") break;
    const m = /^--?(?:no-)?([^=]+)/.exec(arg);
    if (!m || /^-\d/.test(arg)) continue;
    const name = m[1]!;
    const camel = name.replace(/-([a-z])/g, (_a, c: string) => c.toUpperCase());
    if (
      !known.has(name) &&
      !specs.some((s) => s.name.replace(/-([a-z])/g, (_a, c: string) => c.toUpperCase()) === camel)
    )
      out.push(arg.split("=")[0]!);
  }
  return out;
}

/** citty gives flags as parsed; pick ours by their kebab names (it also offers camelCase). */
export function pickFlags(args: Record<string, unknown>, specs: readonly OptionSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const camel = s.name.replace(/-([a-z])/g, (_a, c: string) => c.toUpperCase());
    const v = args[s.name] ?? args[camel];
    if (v !== undefined) out[s.name] = v;
  }
  return out;
}
