#!/usr/bin/env bash
# The GPU check on a real GPU machine (run through the device tool, see README "GPUs"): the
# compiled runner's NVML inventory, then bench/gpu/train_gpu.py run directly, through the
# runner (one GPU asked for), and directly again; a request for two GPUs is left for a bigger
# runner. Logs and timings go to $OUT.
set -u
BIN=${BIN:-./studio-runner}
OUT=${OUT:-$(mktemp -d)}
W=$(mktemp -d)
export PYTHONUNBUFFERED=1
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi -L
  nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader
  env | grep -E '^(CUDA|NVIDIA)_VISIBLE' || true
  python3 -c 'import sys, torch; print(sys.executable, "torch", torch.__version__)'
} > "$OUT/machine.txt" 2>&1
"$BIN" gpus --json > "$OUT/gpus.json" 2>&1
"$BIN" gpus >> "$OUT/machine.txt" 2>&1

direct() {
  local s e
  s=$(date +%s%N)
  python3 bench/gpu/train_gpu.py > "$OUT/direct-$1.log" 2>&1
  e=$(date +%s%N)
  echo "direct run $1: process $(( (e - s) / 1000000 )) ms" >> "$OUT/timings.txt"
}

direct 1
mkdir -p "$W/storage"
# Queued first, so the runner sees it: two GPUs on a one-GPU machine stays queued.
"$BIN" submit --queue-root "$W/q" --queue local_two --storage "file://$W/storage" --workspace bench/gpu --gpus 2 --pythonver 3 train_gpu.py > "$OUT/submit-two.log" 2>&1
"$BIN" run --queue-root "$W/q" --working-dir "$W/work" --cache-dir "$W/cache" --venv-system-site-packages --limit-tasks 1 > "$OUT/runner.log" 2>&1 &
runner=$!
s=$(date +%s%N)
"$BIN" submit --queue-root "$W/q" --queue local --storage "file://$W/storage" --workspace bench/gpu --gpus 1 --pythonver 3 --wait train_gpu.py > "$OUT/submit.log" 2>&1
echo "submit --wait exit $?" >> "$OUT/timings.txt"
e=$(date +%s%N)
wait $runner
echo "runner exit $?" >> "$OUT/timings.txt"
echo "through the runner: submit to results $(( (e - s) / 1000000 )) ms" >> "$OUT/timings.txt"
key=$(head -1 "$OUT/submit.log")
tar -xOf "$W/storage/studioml-artifacts/experiments/$key/output.tar" > "$OUT/output-tar.txt" 2>&1 || echo "no output.tar for $key" >> "$OUT/timings.txt"
ls "$W/q/local_two" >> "$OUT/timings.txt" 2>&1
direct 2
cat "$OUT/timings.txt"
