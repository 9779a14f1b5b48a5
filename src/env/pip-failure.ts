// Reads a failed `pip install -r FILE` and says which of the file's lines it blames: lines pip
// could not find (or whose dependency it could not find), lines it could not build, and the
// lines a dependency conflict names (the user's own requirements, not the operator's constraints).
// pip's wording has been stable from pip 20.3 (the new resolver) to pip 26; what it does not
// name, this does not guess.

import { projectOf } from "./requirements.ts";

export type Blame = {
  /** Index into the file's lines. */
  index: number;
  kind: "not-found" | "dependency-not-found" | "conflict" | "build";
  /** pip's words about it, one line. */
  detail: string;
};

function lineByName(lines: string[], name: string): number {
  const want = projectOf(name);
  return want ? lines.findIndex((l) => projectOf(l) === want) : -1;
}

/** Line number N of "-r FILE (line N)" as an index into `lines`. */
function lineByNumber(lines: string[], text: string): number {
  const m = /\(line (\d+)\)/.exec(text);
  const n = m ? Number(m[1]) - 1 : -1;
  return n >= 0 && n < lines.length ? n : -1;
}

export function blameFromPipOutput(output: string, lines: string[]): Blame[] {
  const out: Blame[] = [];
  const add = (index: number, kind: Blame["kind"], detail: string) => {
    if (index >= 0 && !out.some((b) => b.index === index))
      out.push({ index, kind, detail: detail.trim().slice(0, 300) });
  };
  const text = output.replace(/\r/g, "");

  // Not found: the requirement itself, or a dependency of one of ours ("(from X)" names the parent).
  for (const m of text.matchAll(
    /Could not find a version that satisfies the requirement (\S+)((?: \(from [^)]*\))*)/g,
  )) {
    const wanted = m[1]!;
    const own = lineByName(lines, wanted);
    if (own >= 0) {
      add(own, "not-found", `no version of ${wanted} in the index`);
      continue;
    }
    const parents = [...(m[2] ?? "").matchAll(/\(from ([^)]*)\)/g)].map((p) => p[1]!);
    for (const parent of parents) {
      if (/^versions?:/.test(parent)) continue;
      const idx = /-r .* \(line \d+\)/.test(`(${parent})`)
        ? lineByNumber(lines, `(${parent})`)
        : lineByName(lines, parent.split("->")[0]!);
      if (idx >= 0) {
        add(idx, "dependency-not-found", `needs ${wanted}, which is not in the index`);
        break;
      }
    }
  }
  for (const m of text.matchAll(/No matching distribution found for (\S+)/g)) {
    const own = lineByName(lines, m[1]!);
    if (own >= 0) add(own, "not-found", `no version of ${m[1]} in the index`);
  }

  // Conflicts: the user's requirements pip names as part of the conflict.
  const conflict = /The conflict is caused by:\n((?:[ \t]+\S.*\n?)+)/.exec(text);
  if (conflict) {
    const body = conflict[1]!;
    const requested = [...body.matchAll(/The user requested (?!\(constraint\))(\S+)/g)].map((m) => m[1]!);
    const because = body
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("The user requested"))
      .join("; ");
    for (const r of requested)
      add(lineByName(lines, r), "conflict", `conflicts: ${because || "pip found no versions that fit together"}`);
    if (!requested.length) {
      const cannot = /Cannot install (.*?) because these package versions have conflicting dependencies/.exec(text);
      const items = cannot ? cannot[1]!.split(/, | and /) : [];
      for (const item of items) {
        const idx = /\(line \d+\)/.test(item) ? lineByNumber(lines, item) : lineByName(lines, item);
        add(idx, "conflict", `conflicts: ${because || "pip found no versions that fit together"}`);
      }
    }
  }

  // Builds that failed (sdists): pip names the package it was collecting when the build broke.
  for (const m of text.matchAll(/(?:Failed to build|Could not build wheels for) (\S+?)(?:[ ,]|$)/gm))
    add(lineByName(lines, m[1]!), "build", `pip could not build ${m[1]}`);
  const broke = text.indexOf("subprocess-exited-with-error");
  if (broke >= 0 && !out.length) {
    const collecting = [...text.slice(0, broke).matchAll(/^(?:Collecting|Processing) (\S+)(.*)$/gm)].pop();
    if (collecting) {
      const what = collecting[1]!.includes("/")
        ? collecting[1]!
            .split("/")
            .pop()!
            .replace(/-\d.*$/, "")
        : collecting[1]!;
      let idx = lineByName(lines, what);
      if (idx < 0) {
        const from = /\(from ([^)]*)\)/.exec(collecting[2] ?? "");
        if (from)
          idx = /\(line \d+\)/.test(`(${from[1]})`)
            ? lineByNumber(lines, `(${from[1]})`)
            : lineByName(lines, from[1]!.split("->")[0]!);
      }
      add(idx, "build", `pip could not build ${what}`);
    }
  }
  return out;
}
