#!/usr/bin/env bash
# The test command: builds the binary, runs every bun test file (unit, conformance, e2e) and
# prints "N passed, N failed" from bun's JUnit report. Usage: bash test/run.sh [bun test filters]
# `bash test/run.sh --unit` (npm run test:unit): only the unit and in-process tests (test/unit), no build.
set -uo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "run 'npm install' first" >&2; exit 2; }

# Cloud SDKs must never probe metadata servers from tests.
export METADATA_SERVER_DETECTION=none GCE_METADATA_HOST=127.0.0.1:9 GCE_METADATA_IP=127.0.0.1:9 AWS_EC2_METADATA_DISABLED=true
# pip: use the machine's offline mirror directly when it has one (no retries against an index
# that cannot be reached). The runner passes pip's own configuration through unchanged.
if [ -d /opt/pypi/simple ] && [ -z "${PIP_INDEX_URL:-}" ]; then
  export PIP_INDEX_URL=file:///opt/pypi/simple
  [ -d /opt/pypi-more/simple ] && export PIP_EXTRA_INDEX_URL=file:///opt/pypi-more/simple
fi
export PIP_RETRIES=${PIP_RETRIES:-0} PIP_DISABLE_PIP_VERSION_CHECK=1

unit=0
if [ "${1:-}" = "--unit" ]; then
  unit=1
  shift
  set -- test/unit "$@"
fi
[ "$unit" = 1 ] || "$BUN" run build.ts || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p .test-tmp
report=.test-tmp/junit.xml
rm -f "$report"
rm -rf .test-tmp/logs
"$BUN" test --timeout 900000 --reporter=junit --reporter-outfile="$report" "$@" 2>&1 | tee .test-tmp/bun-test.log
status=${PIPESTATUS[0]}
if [ ! -s "$report" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
read -r tests failures errors skipped < <("$BUN" -e '
  const xml = require("fs").readFileSync(process.argv[1], "utf8");
  const m = /<testsuites[^>]*\btests="(\d+)"[^>]*\bfailures="(\d+)"/.exec(xml) ?? [];
  const sk = /<testsuites[^>]*\bskipped="(\d+)"/.exec(xml) ?? [];
  const er = /<testsuites[^>]*\berrors="(\d+)"/.exec(xml) ?? [];
  console.log(m[1] ?? 0, m[2] ?? 0, er[1] ?? 0, sk[1] ?? 0);
' "$report")
failed=$((failures + errors))
passed=$((tests - failed - skipped))
# After a whole run: no test credential may appear in any log the binary wrote.
if [ $# -eq 0 ]; then
  if "$BUN" test/secret-scan.ts; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
