#!/usr/bin/env bash
# `npm run demo`: builds the binary, then runs the demo on the embedded default with it
# (examples/demo-run.sh: a local directory queue and file storage, examples/hello submitted with
# `submit --wait`, the results printed). Extra arguments are flags for the runner.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "run 'npm install' first" >&2; exit 2; }
"$BUN" run build.ts
STUDIO_RUNNER="$PWD/dist/studio-runner" exec examples/demo-run.sh "$@"
