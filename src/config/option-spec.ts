// One setting's declaration: its flag name, type, default and environment variable. The option
// tables (options.ts and each backend's) are lists of these, declared `as const` so that the
// settings read for them are typed (settings.ts).

export type OptionType = "string" | "path" | "boolean" | "integer" | "duration" | "size" | "regex" | "enum";

export type OptionSpec = {
  readonly name: string;
  readonly type: OptionType;
  readonly description: string;
  readonly default?: string;
  readonly choices?: readonly string[];
  /** Shown in --help with the default text when the real default is computed. */
  readonly defaultText?: string;
  /**
   * The environment variable read for it when it is not envName(name) (STUDIO_STORAGE for
   * --storage); false: none (submit's experiment flags, whose plain names are common variables).
   */
  readonly env?: string | false;
};

/** Flag name → environment variable name, as the Go runner reads them. */
export const envName = (flag: string) => flag.toUpperCase().replaceAll("-", "_");

/** The environment variable an option is read from, or undefined when it has none. */
export function envOf(spec: OptionSpec): string | undefined {
  if (spec.env === false) return undefined;
  return spec.env ?? envName(spec.name);
}
