// Covers src/env/requirements.ts: cleaning pip freeze lines, reading pip's failures, matching requirement lines.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  failedRequirementFromPipOutput,
  matchRequirementLine,
  normaliseRequirements,
  pipErrorLines,
} from "../../src/env/requirements.ts";

describe("normaliseRequirements", () => {
  test("skips blanks, comments, duplicates and pkg-resources==0.0.0; trims; keeps order", () => {
    expect(
      normaliseRequirements([
        "numpy==1.26.4",
        "",
        "   ",
        "# a comment",
        "  # indented comment",
        "pkg-resources==0.0.0",
        "pkg_resources==0.0.0",
        "scipy==1.11.0",
        "numpy==1.26.4",
        "  numpy==1.26.4  ",
        "-e git+https://github.com/org/repo.git@abc123#egg=repo",
        "requests",
      ]),
    ).toEqual(["numpy==1.26.4", "scipy==1.11.0", "-e git+https://github.com/org/repo.git@abc123#egg=repo", "requests"]);
  });

  test("other pkg-resources versions are kept", () => {
    expect(normaliseRequirements(["pkg-resources==1.0.0"])).toEqual(["pkg-resources==1.0.0"]);
  });

  test("the fixture's pip freeze survives unchanged (no blanks or duplicates in it)", () => {
    const fixture = JSON.parse(readFileSync(new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname, "utf8"));
    const lines: string[] = fixture.experiment.pythonenv;
    expect(normaliseRequirements(lines)).toEqual(lines);
    expect(normaliseRequirements([...lines, ...lines, "pkg-resources==0.0.0"])).toEqual(lines);
  });

  test("empty input", () => {
    expect(normaliseRequirements([])).toEqual([]);
  });
});

describe("failedRequirementFromPipOutput", () => {
  test("No matching distribution found", () => {
    const out = [
      "Collecting annotated-types==0.7.0",
      "ERROR: Could not find a version that satisfies the requirement annotated-types==0.7.0 (from versions: none)",
      "ERROR: No matching distribution found for annotated-types==0.7.0",
    ].join("\n");
    expect(failedRequirementFromPipOutput(out)).toBe("annotated-types==0.7.0");
    expect(failedRequirementFromPipOutput("ERROR: No matching distribution found for annotated-types==0.7.0")).toBe(
      "annotated-types==0.7.0",
    );
  });

  test("Could not find a version alone", () => {
    expect(
      failedRequirementFromPipOutput("ERROR: Could not find a version that satisfies the requirement torch==9.9.9 (from versions: 2.0.0)"),
    ).toBe("torch==9.9.9");
  });

  test("Invalid requirement and failed builds", () => {
    expect(failedRequirementFromPipOutput("ERROR: Invalid requirement: 'foo bar==1'")).toBe("foo bar==1");
    expect(failedRequirementFromPipOutput("  Building wheel for libcst\nFailed to build libcst\nERROR: ...")).toBe("libcst");
  });

  test("output without a failure names nothing", () => {
    expect(failedRequirementFromPipOutput("Successfully installed numpy-1.26.4")).toBeUndefined();
    expect(failedRequirementFromPipOutput("")).toBeUndefined();
  });
});

describe("matchRequirementLine", () => {
  const lines = ["typing-extensions==4.15.0", "Flask==3.1.3", "mypy_extensions==1.1.0", "zope.interface==6.0", "requests"];

  test("same text", () => {
    expect(matchRequirementLine(lines, "Flask==3.1.3")).toBe("Flask==3.1.3");
  });

  test("case, underscore, dash and dot variants", () => {
    expect(matchRequirementLine(lines, "typing_extensions==4.15.0")).toBe("typing-extensions==4.15.0");
    expect(matchRequirementLine(lines, "Typing_Extensions==4.15.0")).toBe("typing-extensions==4.15.0");
    expect(matchRequirementLine(lines, "flask==3.1.3")).toBe("Flask==3.1.3");
    expect(matchRequirementLine(lines, "mypy-extensions==1.1.0")).toBe("mypy_extensions==1.1.0");
    expect(matchRequirementLine(lines, "zope-interface==6.0")).toBe("zope.interface==6.0");
  });

  test("bare project names match pinned lines and vice versa", () => {
    expect(matchRequirementLine(lines, "typing_extensions")).toBe("typing-extensions==4.15.0");
    expect(matchRequirementLine(lines, "FLASK")).toBe("Flask==3.1.3");
    expect(matchRequirementLine(lines, "requests==2.34.2")).toBe("requests");
  });

  test("a different version of the same project still matches the project's line", () => {
    expect(matchRequirementLine(lines, "flask>=3")).toBe("Flask==3.1.3");
  });

  test("an exact text match is preferred over a project match", () => {
    expect(matchRequirementLine(["numpy>=1", "numpy==1.26.4"], "numpy==1.26.4")).toBe("numpy==1.26.4");
  });

  test("unrelated names do not match, including prefixes", () => {
    expect(matchRequirementLine(lines, "numpy==2.0")).toBeUndefined();
    expect(matchRequirementLine(lines, "typing")).toBeUndefined();
    expect(matchRequirementLine(["typing-inspect==0.9.0"], "typing-inspection==0.4.2")).toBeUndefined();
    expect(matchRequirementLine([], "anything")).toBeUndefined();
  });
});

describe("pipErrorLines", () => {
  test("keeps only ERROR lines", () => {
    const out = "Collecting x\nERROR: one\n  noise\nERROR: two\n";
    expect(pipErrorLines(out)).toBe("ERROR: one\nERROR: two");
  });

  test("without ERROR lines, the last lines of the output", () => {
    const out = ["1", "2", "3", "4", "5", "6", "7"].join("\n");
    expect(pipErrorLines(out)).toBe("3\n4\n5\n6\n7");
  });
});
