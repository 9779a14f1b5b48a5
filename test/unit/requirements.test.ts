// Covers src/env/requirements.ts: cleaning pip freeze lines, accepting only pins (refusing URLs, paths
// and options naming the field and line), reading pip's failures, matching requirement lines.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { PermanentError } from "../../src/errors.ts";
import {
  failedRequirementFromPipOutput,
  matchRequirementLine,
  normaliseRequirements,
  pipErrorLines,
  requestRequirements,
  requestRequirementSet,
  whyNotAPin,
} from "../../src/env/requirements.ts";

describe("normaliseRequirements", () => {
  test("skips blanks, comments and duplicates; trims; keeps order (skipping by kind is requestRequirementSet's)", () => {
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
    ).toEqual([
      "numpy==1.26.4",
      "pkg-resources==0.0.0",
      "pkg_resources==0.0.0",
      "scipy==1.11.0",
      "-e git+https://github.com/org/repo.git@abc123#egg=repo",
      "requests",
    ]);
  });

  test("the fixture's pip freeze survives unchanged (no blanks or duplicates in it)", () => {
    const fixture = JSON.parse(
      readFileSync(new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname, "utf8"),
    );
    const lines: string[] = fixture.experiment.pythonenv;
    expect(normaliseRequirements(lines)).toEqual(lines);
    expect(normaliseRequirements([...lines, ...lines])).toEqual(lines);
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
      failedRequirementFromPipOutput(
        "ERROR: Could not find a version that satisfies the requirement torch==9.9.9 (from versions: 2.0.0)",
      ),
    ).toBe("torch==9.9.9");
  });

  test("Invalid requirement and failed builds", () => {
    expect(failedRequirementFromPipOutput("ERROR: Invalid requirement: 'foo bar==1'")).toBe("foo bar==1");
    expect(failedRequirementFromPipOutput("  Building wheel for libcst\nFailed to build libcst\nERROR: ...")).toBe(
      "libcst",
    );
  });

  test("output without a failure names nothing", () => {
    expect(failedRequirementFromPipOutput("Successfully installed numpy-1.26.4")).toBeUndefined();
    expect(failedRequirementFromPipOutput("")).toBeUndefined();
  });
});

describe("matchRequirementLine", () => {
  const lines = [
    "typing-extensions==4.15.0",
    "Flask==3.1.3",
    "mypy_extensions==1.1.0",
    "zope.interface==6.0",
    "requests",
  ];

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

describe("whyNotAPin: accepted forms", () => {
  const HASH = "a".repeat(64);
  test.each([
    ["numpy==1.26.4"],
    ["numpy===1.26.4"],
    ["numpy>=1.20"],
    ["numpy<=2"],
    ["numpy~=1.26"],
    ["numpy!=1.25.0"],
    ["numpy<2"],
    ["numpy>1"],
    ["numpy>=1.20,<2,!=1.25.*"],
    ["numpy >= 1.20 , < 2"],
    ["Foo.Bar_baz-qux==0.1.post1"],
    ["torch==2.1.0+cpu"],
    ["requests[socks,security]==2.31.0"],
    ["requests[socks]"],
    ["six"],
    ["foo (>=1.0,<2)"],
    ['numpy==1.26.4; python_version < "3.12"'],
    ["pywin32==306 ; sys_platform == 'win32' and platform_machine != 'arm64'"],
    [`numpy==1.26.4 --hash=sha256:${HASH}`],
    [`numpy==1.26.4 --hash=sha256:${HASH} --hash=sha256:${"b".repeat(64)}`],
    [`numpy==1.26.4; os_name == "posix" --hash=sha256:${HASH}`],
  ])("%s", (line) => {
    expect(whyNotAPin(line)).toBeUndefined();
  });
});

describe("whyNotAPin: refused forms, each with its reason", () => {
  test.each([
    ["evil @ file:///tmp/evil-1.0.tar.gz", /direct references/],
    ["evil@https://example.com/evil.whl", /direct references/],
    ["-e git+https://example.com/evil.git#egg=evil", /pip options/],
    ["--editable=./pkg", /pip options/],
    ["-r /etc/passwd", /pip options/],
    ["--requirement=/etc/passwd", /pip options/],
    ["-c /etc/constraints.txt", /pip options/],
    ["--index-url http://evil.example/simple", /pip options/],
    ["-i http://evil.example/simple", /pip options/],
    ["--extra-index-url http://evil.example/simple", /pip options/],
    ["--find-links /tmp", /pip options/],
    ["-f http://evil.example/", /pip options/],
    ["--trusted-host evil.example", /pip options/],
    ["--pre", /pip options/],
    ["--no-binary :all:", /pip options/],
    ["numpy==1.0 --index-url http://evil.example/simple", /pip options/],
    ["numpy==1.0 -i http://evil.example/simple", /pip options/],
    ["numpy==1.0 --hash=md5:abc", /not a sha256/],
    ["https://example.com/evil-1.0.tar.gz", /URLs/],
    ["file:///tmp/evil", /URLs/],
    ["git+https://example.com/evil.git", /URLs/],
    ["./evil", /paths/],
    ["../evil", /paths/],
    ["/tmp/evil-1.0-py3-none-any.whl", /paths/],
    ["~/evil", /paths/],
    ["sub/dir", /paths/],
    ["evil-1.0.tar.gz", /archive file names/],
    ["evil-1.0-py3-none-any.whl", /archive file names/],
    ["numpy==1.0; __import__('os').system('id')", /unknown variable/],
    ["numpy==1.0;", /empty environment marker/],
    ["numpy==", /not a requirement of the form/],
    ["numpy = 1.0", /not a requirement of the form/],
    ["numpy==1.0\u0000", /control characters/],
  ])("%s", (line, reason) => {
    expect(whyNotAPin(line)).toMatch(reason);
  });
});

describe("requestRequirements", () => {
  test("cleans and merges both fields; pins pass", () => {
    expect(
      requestRequirements(
        [
          { field: "experiment.pythonenv", lines: ["six==1.16.0", "pkg-resources==0.0.0", "", "# c"] },
          { field: "config.pip", lines: ["six==1.16.0", "tqdm>=4"] },
        ],
        false,
      ),
    ).toEqual(["six==1.16.0", "tqdm>=4"]);
  });

  test("a refused line is a PermanentError naming the field, the line and why", () => {
    const attempt = () =>
      requestRequirements(
        [
          { field: "experiment.pythonenv", lines: ["six==1.16.0"] },
          { field: "config.pip", lines: ["--index-url http://evil.example/simple"] },
        ],
        false,
      );
    expect(attempt).toThrow(PermanentError);
    try {
      attempt();
    } catch (err) {
      const e = err as PermanentError;
      expect(e.context.field).toBe("config.pip");
      expect(e.message).toContain("config.pip");
      expect(e.message).toContain(JSON.stringify("--index-url http://evil.example/simple"));
      expect(e.message).toContain("pip options");
      expect(e.message).toContain("--allow-pip-urls");
    }
  });

  test("the pythonenv field is named for its lines", () => {
    expect(() => requestRequirements([{ field: "experiment.pythonenv", lines: ["evil @ file:///x"] }], false)).toThrow(
      /^experiment\.pythonenv: requirement line "evil @ file:\/\/\/x" refused: direct references/,
    );
  });

  test("--allow-pip-urls passes every line through (cleaned) as before", () => {
    expect(
      requestRequirements(
        [
          {
            field: "experiment.pythonenv",
            lines: ["-e git+https://x/y.git#egg=y", "evil @ file:///x", "pkg-resources==0.0.0"],
          },
        ],
        true,
      ),
    ).toEqual(["-e git+https://x/y.git#egg=y", "evil @ file:///x"]);
  });

  test("the captured client message's pip freeze is accepted as is", () => {
    const fixture = JSON.parse(
      readFileSync(new URL("../fixtures/studioml-client-message.json", import.meta.url).pathname, "utf8"),
    );
    const lines: string[] = fixture.experiment.pythonenv;
    expect(requestRequirements([{ field: "experiment.pythonenv", lines }], false)).toEqual(lines);
  });
});

describe("requestRequirementSet: lines that can never work here are skipped up front, with why", () => {
  test("the client's own tooling, in either field", () => {
    const set = requestRequirementSet(
      [
        {
          field: "experiment.pythonenv",
          lines: ["six==1.17.0", "pkg-resources==0.0.0", "studioml==0.0.48", "StudioML[aws]==1.0"],
        },
        { field: "config.pip", lines: ["pkg_resources==0.0.0", "studioml-extras==1.0"] },
      ],
      false,
    );
    expect(set.lines).toEqual(["six==1.17.0", "studioml-extras==1.0"]);
    expect(set.skipped.map((s) => s.requirement)).toEqual([
      "pkg-resources==0.0.0",
      "studioml==0.0.48",
      "StudioML[aws]==1.0",
      "pkg_resources==0.0.0",
    ]);
    expect(set.skipped[1]!.why).toContain("studioml client itself");
    expect(
      requestRequirementSet([{ field: "experiment.pythonenv", lines: ["pkg-resources==1.0.0"] }], false).lines,
    ).toEqual(["pkg-resources==1.0.0"]);
    if (process.platform === "linux") {
      const laptop = requestRequirementSet(
        [
          {
            field: "experiment.pythonenv",
            lines: [
              "pywin32==306",
              "pyobjc-framework-Cocoa==10.1",
              "tensorflow-macos==2.15",
              "pywin32-ctypes==0.2.2",
              "six==1.17.0",
            ],
          },
        ],
        false,
      );
      expect(laptop.lines).toEqual(["pywin32-ctypes==0.2.2", "six==1.17.0"]);
      expect(laptop.skipped.map((s) => s.why)).toEqual([
        "a Windows-only package; this runner is Linux",
        "a macOS-only package; this runner is Linux",
        "a macOS-only package; this runner is Linux",
      ]);
    }
  });

  test("editable and VCS lines of the client's freeze are skipped (not refused); in config.pip they are refused", () => {
    const lines = [
      "six==1.17.0",
      "-e git+https://github.com/org/repo.git@abc123#egg=repo",
      "mylib @ git+https://github.com/org/mylib.git@v1",
      "hg+https://hg.example/x#egg=x",
    ];
    const set = requestRequirementSet([{ field: "experiment.pythonenv", lines }], false);
    expect(set.lines).toEqual(["six==1.17.0"]);
    expect(set.skipped.map((s) => s.requirement)).toEqual(lines.slice(1));
    for (const s of set.skipped) expect(s.why).toContain("--allow-pip-urls");
    expect(() =>
      requestRequirementSet(
        [{ field: "config.pip", lines: ["-e git+https://github.com/org/repo.git#egg=repo"] }],
        false,
      ),
    ).toThrow(/^config\.pip: requirement line/);
    // Other direct references and options stay refused, in the freeze too.
    expect(() =>
      requestRequirementSet([{ field: "experiment.pythonenv", lines: ["evil @ file:///x"] }], false),
    ).toThrow(/refused/);
    expect(() =>
      requestRequirementSet([{ field: "experiment.pythonenv", lines: ["-e /some/path"] }], false),
    ).not.toThrow();
    expect(() =>
      requestRequirementSet([{ field: "experiment.pythonenv", lines: ["--index-url http://x/simple"] }], false),
    ).toThrow(/pip options/);
  });

  test("with --allow-pip-urls editable lines go to pip; tooling is still skipped", () => {
    const set = requestRequirementSet(
      [{ field: "experiment.pythonenv", lines: ["-e git+https://x/y.git#egg=y", "studioml==1"] }],
      true,
    );
    expect(set.lines).toEqual(["-e git+https://x/y.git#egg=y"]);
    expect(set.skipped.map((s) => s.requirement)).toEqual(["studioml==1"]);
  });
});
