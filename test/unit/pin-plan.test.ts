// One decision per requirement line from the index probe, what pip's blame changes, and the lines
// the experiment's log shows (src/env/pin-plan.ts, src/env/pip-failure.ts, src/env/superset.ts).

import { describe, expect, test } from "bun:test";
import { blameFromPipOutput } from "../../src/env/pip-failure.ts";
import {
  applyBlame,
  installLines,
  nameWithExtras,
  outcomes,
  planPins,
  reportLines,
  unmet,
} from "../../src/env/pin-plan.ts";
import type { IndexAnswer } from "../../src/env/pin-probe.ts";
import { normalVersion, plainPin, satisfiesPins } from "../../src/env/superset.ts";

const answers: IndexAnswer[] = [
  { line: "six==1.17.0", name: "six", status: "exact", versions: ["1.17.0"] },
  { line: "pip==23.2.1", name: "pip", status: "present", versions: [], installed: "23.2.1" },
  { line: "boto3==1.43.11", name: "boto3", status: "other", versions: ["1.43.107"], nearest: "1.43.107" },
  {
    line: "botocore==1.43.11",
    name: "botocore",
    status: "other",
    versions: ["1.43.106", "1.43.107"],
    nearest: "1.43.106",
  },
  { line: "libcst==1.0.1", name: "libcst", status: "absent", versions: [] },
  { line: 'pywin32==306; sys_platform == "win32"', name: "pywin32", status: "skip", versions: [], why: "marker false" },
  {
    line: "requests[socks]==2.0 --hash=sha256:" + "a".repeat(64),
    name: "requests",
    status: "other",
    versions: ["2.34.2"],
    nearest: "2.34.2",
  },
];

describe("planPins", () => {
  test("default: exact pins are installed as sent, the rest left out with why", () => {
    const plan = planPins(answers, "default");
    expect(installLines(plan)).toEqual(["six==1.17.0"]);
    expect(plan[2]!.why).toBe("the index has only 1.43.107; --pip-relax-pins installs the nearest");
    expect(plan[4]!.why).toBe("not in the index");
    expect(plan[5]!.skipped).toBe(true);
    expect(plan[1]!.present).toBe(true);
  });

  test("relax: the nearest version, without hashes or markers, extras kept", () => {
    const plan = planPins(answers, "relax");
    expect(installLines(plan)).toEqual([
      "six==1.17.0",
      "boto3==1.43.107",
      "botocore==1.43.106",
      "requests[socks]==2.34.2",
    ]);
  });

  test("strict: every line that cannot be met exactly is unmet (skipped and present lines are fine)", () => {
    expect(unmet(planPins(answers, "strict")).map((e) => e.requirement)).toEqual([
      "boto3==1.43.11",
      "botocore==1.43.11",
      "libcst==1.0.1",
      answers[6]!.line,
    ]);
  });

  test("nameWithExtras", () => {
    expect(nameWithExtras("requests[socks, security]==2.0 ; python_version>'3'")).toBe("requests[socks,security]");
    expect(nameWithExtras("Flask>=2")).toBe("Flask");
  });
});

const CONFLICT = `Processing /opt/pypi/files/boto3-1.43.107-py3-none-any.whl (from -r /x/requirements.txt (line 3))
INFO: pip is looking at multiple versions of boto3 to determine which version is compatible with other requirements. This could take a while.
ERROR: Cannot install -r /x/requirements.txt (line 2) and botocore==1.43.106 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested botocore==1.43.106
    The user requested (constraint) torch<=2.14.1
    boto3 1.43.107 depends on botocore<1.44.0 and >=1.43.107

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
`;
const DEP_MISSING = `INFO: pip is looking at multiple versions of pytest-benchmark to determine which version is compatible with other requirements. This could take a while.
ERROR: Could not find a version that satisfies the requirement py-cpuinfo2>=10.1 (from pytest-benchmark) (from versions: none)
ERROR: No matching distribution found for py-cpuinfo2>=10.1
`;
const OWN_MISSING = `ERROR: Could not find a version that satisfies the requirement libcst==1.0.1 (from versions: 1.1.0)
ERROR: No matching distribution found for libcst==1.0.1
`;
const BUILD_FAILED = `Collecting evil==1.0 (from -r /x/requirements.txt (line 2))
  Downloading evil-1.0.tar.gz (1.0 kB)
  Installing build dependencies: started
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
note: This error originates from a subprocess, and is likely not a problem with pip.
error: subprocess-exited-with-error
`;

describe("blameFromPipOutput", () => {
  test("a conflict blames the user's own requirement, not the operator's constraint", () => {
    const lines = ["six==1.17.0", "boto3==1.43.107", "botocore==1.43.106"];
    const blame = blameFromPipOutput(CONFLICT, lines);
    expect(blame).toEqual([
      {
        index: 2,
        kind: "conflict",
        detail: expect.stringContaining("boto3 1.43.107 depends on botocore<1.44.0 and >=1.43.107"),
      },
    ]);
  });

  test("a dependency missing from the index blames the line that needs it", () => {
    const blame = blameFromPipOutput(DEP_MISSING, ["six==1.17.0", "pytest-benchmark==5.3.0"]);
    expect(blame).toEqual([
      { index: 1, kind: "dependency-not-found", detail: "needs py-cpuinfo2>=10.1, which is not in the index" },
    ]);
  });

  test("a pin missing from the index blames itself", () => {
    expect(blameFromPipOutput(OWN_MISSING, ["libcst==1.0.1"])).toEqual([
      { index: 0, kind: "not-found", detail: "no version of libcst==1.0.1 in the index" },
    ]);
  });

  test("a failed sdist build blames the requirement being collected", () => {
    expect(blameFromPipOutput(BUILD_FAILED, ["six==1.17.0", "evil==1.0"])).toEqual([
      { index: 1, kind: "build", detail: "pip could not build evil==1.0" },
    ]);
  });

  test("nothing recognisable blames nothing", () => {
    expect(blameFromPipOutput("ERROR: something else went wrong\n", ["six==1.17.0"])).toEqual([]);
  });
});

describe("applyBlame", () => {
  test("relax: a conflicting substitution is loosened once, then dropped", () => {
    const plan = planPins(answers, "relax");
    const asked = installLines(plan);
    const blame = blameFromPipOutput(CONFLICT.replace("(line 2)", "(line 3)"), asked);
    expect(applyBlame(plan, asked, blame, "relax")).toEqual([expect.stringContaining("botocore==1.43.11: conflicts:")]);
    expect(installLines(plan)).toContain("botocore");
    const again = installLines(plan);
    expect(
      applyBlame(plan, again, [{ index: again.indexOf("botocore"), kind: "conflict", detail: "still" }], "relax"),
    ).toEqual(["botocore==1.43.11: still; left out"]);
    expect(installLines(plan)).not.toContain("botocore");
  });

  test("default: a blamed exact pin is left out (never installed at another version on purpose)", () => {
    const plan = planPins(answers, "default");
    const asked = installLines(plan);
    applyBlame(plan, asked, [{ index: 0, kind: "dependency-not-found", detail: "needs x" }], "default");
    expect(installLines(plan)).toEqual([]);
  });

  test("a pin with one version in the index is dropped at once (loosening cannot help)", () => {
    const plan = planPins(answers, "relax");
    const asked = installLines(plan);
    applyBlame(
      plan,
      asked,
      [{ index: asked.indexOf("boto3==1.43.107"), kind: "dependency-not-found", detail: "needs x" }],
      "relax",
    );
    expect(installLines(plan)).not.toContain("boto3");
  });
});

describe("outcomes and report", () => {
  test("what is installed decides: pinned, present, substituted, at another version, missing, skipped", () => {
    const plan = planPins(answers, "relax");
    const lines = answers.map((a) => a.line);
    const installed = {
      pins: [
        { line: lines[0]!, installed: "1.17.0", satisfied: true },
        { line: lines[1]!, installed: "23.2.1", satisfied: true },
        { line: lines[2]!, installed: "1.43.107", satisfied: false },
        { line: lines[3]!, installed: "1.43.107", satisfied: false },
        { line: lines[4]!, satisfied: false },
        { line: lines[5]!, satisfied: false },
        { line: lines[6]!, installed: "2.34.2", satisfied: false },
      ],
      distributions: {},
    };
    plan[3]!.install = undefined; // botocore dropped, pulled in by boto3
    const result = outcomes(plan, installed);
    expect(result.map((r) => r.outcome)).toEqual([
      "pinned",
      "present",
      "substituted",
      "other-version",
      "missing",
      "skipped",
      "substituted",
    ]);
    const report = reportLines([...result, { requirement: "studioml==0.0.48", outcome: "skipped", why: "client" }]);
    expect(report[0]).toBe("requirements: 2 installed as pinned, 3 at another version, 1 missing, 2 skipped (8 lines)");
    expect(report).toContain("  substituted boto3==1.43.11 -> 1.43.107 (the index has 1.43.107)");
    expect(report).toContain("  at another version as a dependency: botocore==1.43.11 -> 1.43.107");
    expect(report).toContain("  missing libcst==1.0.1: not in the index");
    expect(report).toContain("  skipped studioml==0.0.48: client");
  });
});

describe("superset", () => {
  test("PEP 440 equality of versions", () => {
    expect(normalVersion("1.0")).toBe(normalVersion("1.0.0"));
    expect(normalVersion("V2.1")).toBe(normalVersion("2.1"));
    expect(normalVersion("1.0rc1")).toBe(normalVersion("1.0.0-RC1"));
    expect(normalVersion("1.0.post2")).toBe(normalVersion("1.0-post2"));
    expect(normalVersion("1.0")).not.toBe(normalVersion("1.0.1"));
  });

  test("only plain name==version pins are judged", () => {
    expect(plainPin("Six==1.17.0")).toEqual({ name: "six", version: "1.17.0" });
    expect(plainPin("six>=1")).toBeUndefined();
    expect(plainPin("six[x]==1")).toBeUndefined();
    expect(plainPin("six==1.*")).toBeUndefined();
    expect(plainPin(`six==1.17.0 --hash=sha256:${"a".repeat(64)}`)).toEqual({ name: "six", version: "1.17.0" });
  });

  test("every pin met by name and version, or no reuse", () => {
    const have = { six: "1.17.0", "typing-extensions": "4.16.0", numpy: "2.4.6" };
    expect(satisfiesPins(have, ["six==1.17", "typing_extensions==4.16.0"])).toBe(true);
    expect(satisfiesPins(have, ["six==1.17.0", "numpy==2.4.5"])).toBe(false);
    expect(satisfiesPins(have, ["six==1.17.0", "scipy==1.0"])).toBe(false);
    expect(satisfiesPins(have, ["six>=1"])).toBe(false);
    expect(satisfiesPins(have, [])).toBe(false); // no pins: its own (empty) environment, not someone's stack
  });
});
