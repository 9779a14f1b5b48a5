// Requirement lines from the client's `pip freeze` and config.pip, cleaned for pip install.

const SKIP = [/^pkg[-_]resources==0\.0\.0$/i];

export function normaliseRequirements(lines: string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (SKIP.some((re) => re.test(line))) continue;
    if (seen.has(line)) continue;
    seen.add(line);
    out.push(line);
  }
  return out;
}

/** The requirement a pip "No matching distribution found for X" line names, if any. */
export function failedRequirementFromPipOutput(output: string): string | undefined {
  const patterns = [
    /No matching distribution found for (\S+)/,
    /Could not find a version that satisfies the requirement (\S+)/,
    /Failed to build (\S+)/,
    /ERROR: Invalid requirement: '([^']+)'/,
    /ERROR: Could not install requirement (\S+)/,
  ];
  for (const re of patterns) {
    const m = re.exec(output);
    if (m) return m[1];
  }
  return undefined;
}

const canonical = (s: string) => s.toLowerCase().replace(/[-_.]+/g, "-").replace(/\s+/g, "");
const projectName = (s: string) => canonical(s).split(/[=<>!~[;@]/)[0]!;

/** Which of the given lines pip's named requirement corresponds to: same text, else same project. */
export function matchRequirementLine(lines: string[], named: string): string | undefined {
  return lines.find((l) => canonical(l) === canonical(named)) ?? lines.find((l) => projectName(l) === projectName(named));
}

/** pip's error lines (what a user needs to see about one failed requirement). */
export function pipErrorLines(output: string): string {
  return output
    .split("\n")
    .filter((l) => /^(ERROR|error:)/.test(l.trim()))
    .join("\n")
    .trim() || output.trim().split("\n").slice(-5).join("\n");
}
