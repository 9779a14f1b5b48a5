// Requirement lines from the client's `pip freeze` and config.pip: cleaned for pip install, and
// checked to be pins (`name[extras] op version`, markers and hashes allowed) unless the operator
// allows URLs and options (--allow-pip-urls). A line that is a URL, a path, `name @ url`, `-e`, `-r`,
// `-c` or any pip option would let a request choose what pip reads or runs; such a line is refused
// with a PermanentError naming the field and the line. Lines that can never work on a runner are
// skipped up front and said so: the client's own tooling (studioml, pkg-resources==0.0.0) and, in
// the client's freeze (experiment.pythonenv), editable and VCS lines (checkouts on the client's
// machine) unless --allow-pip-urls.

import { PermanentError } from "../errors.ts";

/** Lines that never belong in an experiment's environment, with why (matched on the cleaned line). */
const NEVER: Array<{ re: RegExp; why: string }> = [
  { re: /^pkg[-_]resources==0\.0\.0$/i, why: "an artifact of Debian's pip freeze, not a package" },
  {
    re: /^studioml(\s*\[[^\]]*\])?\s*([=<>!~;]|$)/i,
    why: "the studioml client itself: the runner does not need it in the experiment's environment",
  },
  // Packages made only for Windows or macOS (a freeze from a laptop), when no marker says so.
  ...(process.platform === "linux"
    ? [
        {
          re: /^(pywin32|pywinpty|windows-curses|tensorflow-intel)\s*([=<>!~;[]|$)/i,
          why: "a Windows-only package; this runner is Linux",
        },
        {
          re: /^(pyobjc(-core|-framework-[A-Za-z0-9]+)?|tensorflow-macos|tensorflow-metal)\s*([=<>!~;[]|$)/i,
          why: "a macOS-only package; this runner is Linux",
        },
      ]
    : []),
];
/** Editable and VCS lines of a freeze (a checkout on the client's machine). */
const EDITABLE_OR_VCS =
  /^(-e\s|--editable[\s=])|^(git|hg|svn|bzr)\+|^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@\s*(git|hg|svn|bzr)\+/i;

/** Where requirement lines come from in a request (the field a refusal names). */
export type RequirementSource = { field: "experiment.pythonenv" | "config.pip" | "--requirements"; lines: string[] };

// PEP 508 names; versions as PEP 440 allows them in specifiers (with the `.*` wildcard).
const NAME = String.raw`[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?`;
const EXTRAS = String.raw`\[\s*(?:${NAME}(?:\s*,\s*${NAME})*)?\s*\]`;
const VERSION = String.raw`[A-Za-z0-9][A-Za-z0-9.+!*_-]*`;
const SPEC = String.raw`(?:===|==|>=|<=|~=|!=|<|>)\s*${VERSION}`;
const SPECS = String.raw`${SPEC}(?:\s*,\s*${SPEC})*`;
const PIN = new RegExp(String.raw`^(${NAME})\s*(${EXTRAS})?\s*(\(\s*${SPECS}\s*\)|${SPECS})?$`);
const HASH = /^--hash=(sha256|sha384|sha512):[0-9a-fA-F]{64,128}$/;
// Environment markers: variables, quoted strings, comparison and boolean operators, parentheses.
const MARKER_TOKEN = /\s+|\(|\)|===|==|!=|<=|>=|~=|<|>|\bnot\s+in\b|\bin\b|\band\b|\bor\b|'[^'\\]*'|"[^"\\]*"|[a-z_]+/y;
const MARKER_VARIABLES = new Set([
  "python_version",
  "python_full_version",
  "os_name",
  "sys_platform",
  "platform_release",
  "platform_system",
  "platform_version",
  "platform_machine",
  "platform_python_implementation",
  "implementation_name",
  "implementation_version",
  "extra",
]);

/** Why `line` is not a pin, or undefined when it is one. */
export function whyNotAPin(line: string): string | undefined {
  if (/^-/.test(line))
    return "pip options (-e, -r, -c, --index-url, --find-links, ...) are not accepted in requirement lines";
  if (/[\x00-\x1f\x7f]/.test(line)) return "control characters are not accepted in requirement lines";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(line) || /^(git|hg|svn|bzr)\+/i.test(line))
    return "URLs are not accepted as requirements, only name==version pins";
  if (/^[./~\\]/.test(line) || /^[A-Za-z]:[\\/]/.test(line))
    return "paths are not accepted as requirements, only name==version pins";
  // Hashes (pip's --hash=...) may follow the requirement; nothing else may.
  let rest = line;
  for (;;) {
    const m = /\s+(--hash[=\s]\S+)$/.exec(rest);
    if (!m) break;
    const hash = m[1]!.replace(/^--hash\s+/, "--hash=");
    if (!HASH.test(hash)) return `${JSON.stringify(m[1])} is not a sha256/sha384/sha512 hash`;
    rest = rest.slice(0, m.index);
  }
  if (/\s-{1,2}[A-Za-z]/.test(rest))
    return "pip options (-e, -r, -c, --index-url, --find-links, ...) are not accepted in requirement lines";
  const semi = rest.indexOf(";");
  const requirement = (semi < 0 ? rest : rest.slice(0, semi)).trim();
  const marker = semi < 0 ? undefined : rest.slice(semi + 1).trim();
  if (requirement.includes("@")) return "direct references (name @ url) are not accepted, only name==version pins";
  if (/[/\\]/.test(requirement)) return "paths and URLs are not accepted as requirements, only name==version pins";
  // pip reads a bare name that looks like an archive file name as the path of that file.
  if (/\.(whl|zip|tar|tgz|tbz|txz|tlz|tar\.(gz|bz2|xz|lz|lzma))$/i.test(requirement))
    return "archive file names are not accepted as requirements, only name==version pins";
  if (!PIN.test(requirement))
    return "not a requirement of the form name[extras] op version (ops ==, ===, >=, <=, ~=, !=, <, >)";
  if (marker !== undefined) {
    const why = whyNotAMarker(marker);
    if (why) return why;
  }
  return undefined;
}

function whyNotAMarker(marker: string): string | undefined {
  if (!marker) return "an empty environment marker after ';'";
  MARKER_TOKEN.lastIndex = 0;
  let at = 0;
  while (at < marker.length) {
    MARKER_TOKEN.lastIndex = at;
    const m = MARKER_TOKEN.exec(marker);
    if (!m || m.index !== at)
      return (
        `environment marker ${JSON.stringify(marker)} has an unexpected ` +
        `${JSON.stringify(marker.slice(at, at + 20))}`
      );
    const token = m[0];
    if (/^[a-z_]+$/.test(token) && !["and", "or", "in", "not"].includes(token) && !MARKER_VARIABLES.has(token)) {
      return `environment marker ${JSON.stringify(marker)} names an unknown variable ${JSON.stringify(token)}`;
    }
    at += token.length;
  }
  return undefined;
}

export type SkippedRequirement = { requirement: string; why: string };
export type RequirementSet = { lines: string[]; skipped: SkippedRequirement[] };

/**
 * The request's requirement lines, cleaned (see normaliseRequirements) and each checked to be a
 * pin; with `allowUrls` (--allow-pip-urls) anything is passed through as before.
 */
export function requestRequirements(sources: RequirementSource[], allowUrls: boolean): string[] {
  return requestRequirementSet(sources, allowUrls).lines;
}

/** requestRequirements, and the lines skipped up front with why. */
export function requestRequirementSet(sources: RequirementSource[], allowUrls: boolean): RequirementSet {
  const all: string[] = [];
  const skipped: SkippedRequirement[] = [];
  for (const { field, lines } of sources) {
    const clean: string[] = [];
    for (const line of normaliseRequirements(lines)) {
      const never = NEVER.find((n) => n.re.test(line));
      if (never) skipped.push({ requirement: line, why: never.why });
      else if (!allowUrls && field !== "config.pip" && EDITABLE_OR_VCS.test(line)) {
        skipped.push({
          requirement: line,
          why:
            "an editable or VCS line of the client's freeze (a checkout on the client's machine); " +
            "only name==version pins are installed (--allow-pip-urls installs such lines)",
        });
      } else clean.push(line);
    }
    if (!allowUrls) {
      for (const line of clean) {
        const why = whyNotAPin(line);
        if (why) {
          const shown = line.length > 200 ? `${line.slice(0, 197)}...` : line;
          throw new PermanentError(
            `${field}: requirement line ${JSON.stringify(shown)} refused: ${why} ` +
              "(the operator can allow such lines with --allow-pip-urls)",
            {
              field,
              phase: "environment",
            },
          );
        }
      }
    }
    all.push(...clean);
  }
  return {
    lines: normaliseRequirements(all),
    skipped: skipped.filter((s, i) => skipped.findIndex((t) => t.requirement === s.requirement) === i),
  };
}

export function normaliseRequirements(lines: string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
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

/** A project name as PEP 503 compares them (case, and runs of - _ . folded). */
export const canonicalName = (s: string) => s.toLowerCase().replace(/[-_.]+/g, "-");
/** The (canonical) project a requirement line, or pip's text of a requirement, names. */
export const projectOf = (s: string) => canonicalName(s.trim().split(/[\s=<>!~[;@(,]/)[0] ?? "");
const canonical = (s: string) => canonicalName(s).replace(/\s+/g, "");

/** Which of the given lines pip's named requirement corresponds to: same text, else same project. */
export function matchRequirementLine(lines: string[], named: string): string | undefined {
  return lines.find((l) => canonical(l) === canonical(named)) ?? lines.find((l) => projectOf(l) === projectOf(named));
}

/** pip's error lines (what a user needs to see about one failed requirement). */
export function pipErrorLines(output: string): string {
  return (
    output
      .split("\n")
      .filter((l) => /^(ERROR|error:)/.test(l.trim()))
      .join("\n")
      .trim() || output.trim().split("\n").slice(-5).join("\n")
  );
}
