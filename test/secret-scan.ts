// Runs after the test suite (test/run.sh): looks through every log the compiled binary wrote
// during the tests (kept in .test-tmp/logs) and every experiment log (output.tar) left in the
// tests' storage for the credentials the tests use. Prints what it scanned and exits 1 on a find.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const TMP = join(import.meta.dir, "..", ".test-tmp");

/** Credential values the tests hand to storage servers, brokers, submitters and runners. */
export const TEST_SECRETS = [
  "exampleSecretKey123",
  "aliasSecret456",
  "ack-test-secret",
  "fake-secret-for-fauxqs",
  "nobody-secret",
  "not-the-secret-0123456789",
  "submitter-secret-value",
  "topsecret-value-42",
  "whatever-secret",
  "runner-secret-value",
  "runner-secret-xyz987",
  "bench-secret",
  "test-only-passphrase",
];

function* files(dir: string, depth = 0): Generator<string> {
  if (depth > 12 || !existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    let st;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      if (name === "node_modules" || name === "venvs" || name === "artifacts") continue;
      yield* files(path, depth + 1);
    } else if (st.isFile()) yield path;
  }
}

const finds: string[] = [];
let logs = 0;
let outputs = 0;
const check = (where: string, text: string) => {
  for (const s of TEST_SECRETS) if (text.includes(s)) finds.push(`${where}: contains ${s.slice(0, 4)}…`);
};
for (const f of files(join(TMP, "logs"))) {
  logs++;
  check(f, readFileSync(f, "utf8"));
}
for (const f of files(TMP)) {
  if (!f.endsWith("/output.tar")) continue;
  const r = spawnSync("tar", ["-xOf", f], { encoding: "utf8", maxBuffer: 1024 * 1024 * 1024 });
  outputs++;
  check(f, r.stdout ?? "");
}
console.log(
  `secret scan: ${logs} runner/CLI logs and ${outputs} experiment logs searched for ${TEST_SECRETS.length} test credentials`,
);
for (const f of finds) console.log(`  FOUND ${f}`);
process.exit(finds.length ? 1 : 0);
