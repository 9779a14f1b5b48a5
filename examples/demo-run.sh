#!/usr/bin/env bash
# The demo on the embedded default (local directory queue + file storage) with a binary that is
# already there: starts a runner, submits the hello workspace with `submit --wait`, prints the
# experiment's log, the runner's log and the artifacts that landed in storage. A release archive
# ships it as demo.sh beside the binary and hello/; `npm run demo` builds first (examples/demo.sh).
#
#   ./demo.sh [run flags …]       e.g. ./demo.sh --pip-find-links /srv/wheelhouse --pip-no-index
#   STUDIO_RUNNER=path/to/studio-runner DEMO_REQUIREMENTS=requirements.txt DEMO_DIR=/tmp/demo ./demo.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN=${STUDIO_RUNNER:-$here/studio-runner}
[ -x "$BIN" ] || { echo "demo: no studio-runner binary at $BIN (set STUDIO_RUNNER)" >&2; exit 2; }
WORKSPACE=${DEMO_WORKSPACE:-$here/hello}
DEMO=${DEMO_DIR:-$(mktemp -d -t studio-runner-demo-XXXX)}
mkdir -p "$DEMO"
echo "== demo directory: $DEMO"

"$BIN" run --queue-root "$DEMO/queue" --working-dir "$DEMO/work" --cache-dir "$DEMO/cache" \
  --file-storage-roots "$DEMO/storage" --limit-tasks 1 "$@" 2> "$DEMO/runner.log" &
runner=$!
trap 'kill $runner 2>/dev/null || true' EXIT

requirements=()
if [ -n "${DEMO_REQUIREMENTS:-}" ]; then requirements=(--requirements "$DEMO_REQUIREMENTS"); fi
echo "== submitting $(basename "$WORKSPACE") and waiting for it"
"$BIN" submit --queue-root "$DEMO/queue" --storage "file://$DEMO/storage" --workspace "$WORKSPACE" \
  ${requirements[@]+"${requirements[@]}"} --wait --wait-timeout 10m train.py --msg "hello from the demo" --lr 0.3 --steps 6
wait $runner
trap - EXIT

echo "== runner log"
cat "$DEMO/runner.log"
echo "== results in storage"
find "$DEMO/storage" -name '*.tar' | sort | while read -r t; do echo "$t"; tar tvf "$t" | sed 's/^/    /'; done
key=$(basename "$(dirname "$(find "$DEMO/storage" -name modeldir.tar | head -1)")")
echo "== modeldir/model.json of $key"
tar xOf "$DEMO/storage/studioml-artifacts/experiments/$key/modeldir.tar" model.json; echo
