#!/usr/bin/env bash
# The observability check on a real GPU machine (through the device tool): the compiled runner
# serves --prom-address while bench/gpu/train_gpu.py runs on one GPU; /metrics (GPU allocation
# and NVML utilisation), /status and /healthz are sampled every 2 s during the run. Files go to $OUT.
set -u
BIN=${BIN:-./studio-runner}
OUT=${OUT:-$(mktemp -d)}
W=$(mktemp -d)
PORT=${PORT:-19464}
export PYTHONUNBUFFERED=1 TRAIN_STEPS=${TRAIN_STEPS:-600}
get() { python3 -c 'import sys,urllib.request
try:
  r=urllib.request.urlopen(sys.argv[1], timeout=3); print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e: print(e.code); sys.stdout.write(e.read().decode())
except Exception as e: print("error", e)' "$1"; }
mkdir -p "$W/storage"
"$BIN" run --queue-root "$W/q" --working-dir "$W/work" --cache-dir "$W/cache" --venv-system-site-packages \
  --limit-tasks 1 --prom-address "127.0.0.1:$PORT" --gpu-refresh-interval 2s > "$OUT/runner.log" 2>&1 &
runner=$!
"$BIN" submit --queue-root "$W/q" --queue local --storage "file://$W/storage" --workspace bench/gpu --gpus 1 --pythonver 3 --wait train_gpu.py > "$OUT/submit.log" 2>&1 &
submit=$!
i=0
while kill -0 $submit 2>/dev/null && [ $i -lt 120 ]; do
  get "http://127.0.0.1:$PORT/metrics" | grep -E '^(runner_gpu|runner_experiments_running|runner_state)' | sed "s/^/t=$((i*2))s /" >> "$OUT/metrics-gpu.txt"
  get "http://127.0.0.1:$PORT/healthz" > "$W/healthz" && head -1 "$W/healthz" | sed "s/^/t=$((i*2))s healthz /" >> "$OUT/health.txt"
  [ $i -eq 10 ] && get "http://127.0.0.1:$PORT/status" > "$OUT/status-during-run.json"
  i=$((i+1)); sleep 2
done
wait $submit; echo "submit exit $?" >> "$OUT/summary.txt"
get "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics-final.txt" 2>&1
wait $runner; echo "runner exit $?" >> "$OUT/summary.txt"
nvidia-smi --query-gpu=name,uuid --format=csv,noheader >> "$OUT/summary.txt"
grep -E 'utilization' "$OUT/metrics-gpu.txt" | sort -t' ' -k3 -g | tail -3 >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
