// The type of loaded settings, derived from an option table: each option's name maps to the value
// its `type` converts to (undefined where it has no default), so readers need no casts.

import type { OptionSpec } from "./options.ts";

/** The value one option converts to: a choice of an enum, a number for sizes and durations, … */
export type OptionValue<S extends OptionSpec> = S["type"] extends "boolean"
  ? boolean
  : S["type"] extends "integer" | "duration" | "size"
    ? number
    : S["type"] extends "regex"
      ? RegExp
      : S extends { readonly choices: readonly (infer C extends string)[] }
        ? C
        : string;

/** Settings read for a table (declared `as const`): a default always gives a value. */
export type SettingsOf<T extends readonly OptionSpec[]> = {
  [S in T[number] as S["name"]]: S extends { readonly default: string } ? OptionValue<S> : OptionValue<S> | undefined;
};

/**
 * What a reader of a few settings takes: those it names, each possibly absent (tests and submit
 * pass only those they set).
 */
export type SomeSettings<T extends readonly OptionSpec[], K extends keyof SettingsOf<T>> = Partial<
  Pick<SettingsOf<T>, K>
>;

/** A text setting with its blanks trimmed, or undefined when it is unset or blank. */
export function textSetting(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v ? v : undefined;
}
