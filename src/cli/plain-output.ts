// Colour only for a terminal. citty (the help and usage text) decides once, when it is loaded, from
// NO_COLOR/TERM/CI alone, so help sent to a file, a pipe or journald carried escape codes. This
// module is imported before citty: when stdout is no terminal (and the operator asked neither for
// colour nor against it) NO_COLOR is set for that moment, then taken back out of the runner's
// environment so nothing it starts (pip, a job) sees a variable it did not have.

const env = process.env;
const switchedOff = !process.stdout.isTTY && env.NO_COLOR === undefined && env.FORCE_COLOR === undefined;
if (switchedOff) env.NO_COLOR = "1";

/** Takes NO_COLOR back out once the CLI modules are loaded (a no-op when this module did not set it). */
export function restoreColourEnvironment(): void {
  if (switchedOff) delete env.NO_COLOR;
}
