#!/usr/bin/env bash
# The demo on the embedded default (local directory queue + file storage): builds the binary,
# starts a runner, submits examples/hello with `submit --wait`, and prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "run 'npm install' first" >&2; exit 2; }
"$BUN" run build.ts
BIN=dist/studio-runner
DEMO=${DEMO_DIR:-$(mktemp -d -t studio-runner-demo-XXXX)}
mkdir -p "$DEMO"
echo "== demo directory: $DEMO"

"$BIN" run --queue-root "$DEMO/queue" --working-dir "$DEMO/work" --cache-dir "$DEMO/cache" --file-storage-roots "$DEMO/storage" --limit-tasks 1 2> "$DEMO/runner.log" &
runner=$!
trap 'kill $runner 2>/dev/null || true' EXIT

echo "== submitting examples/hello and waiting for it"
"$BIN" submit --queue-root "$DEMO/queue" --storage "file://$DEMO/storage" --workspace examples/hello \
  --wait --wait-timeout 10m train.py --msg "hello from the demo" --lr 0.3 --steps 6
wait $runner
trap - EXIT

echo "== runner log"
cat "$DEMO/runner.log"
echo "== results in storage"
find "$DEMO/storage" -name '*.tar' | sort | while read -r t; do echo "$t"; tar tvf "$t" | sed 's/^/    /'; done
key=$(basename "$(dirname "$(find "$DEMO/storage" -name modeldir.tar | head -1)")")
echo "== modeldir/model.json of $key"
tar xOf "$DEMO/storage/studioml-artifacts/experiments/$key/modeldir.tar" model.json; echo
