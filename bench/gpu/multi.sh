#!/usr/bin/env bash
# The allocation check on a machine with two GPUs (device tool, nvidia-h200-x2): two experiments
# asking for one GPU each run at once on different cards; one asking for two waits for both and
# then sees both; a job over its RAM is killed by the cgroup limit. Logs go to $OUT.
set -u
BIN=${BIN:-./studio-runner}
OUT=${OUT:-$(mktemp -d)}
W=$(mktemp -d)
export PYTHONUNBUFFERED=1
{ date -u +%FT%TZ; nvidia-smi -L; "$BIN" gpus; } > "$OUT/machine.txt" 2>&1
common=(--queue-root "$W/q" --storage "file://$W/storage" --workspace bench/gpu --pythonver 3 --ram 16g --env TRAIN_STEPS=400)
for name in one-a one-b; do "$BIN" submit "${common[@]}" --queue local_gpu --gpus 1 train_gpu.py >> "$OUT/keys.txt"; done
"$BIN" submit "${common[@]}" --queue local_gpu --gpus 2 train_gpu.py >> "$OUT/keys.txt"
"$BIN" submit --queue-root "$W/q" --storage "file://$W/storage" --workspace bench/gpu --pythonver 3 --ram 100m --queue local_hog hog.py >> "$OUT/keys.txt"
"$BIN" run --queue-root "$W/q" --working-dir "$W/work" --cache-dir "$W/cache" --venv-system-site-packages --limit-tasks 4 > "$OUT/runner.log" 2>&1
echo "runner exit $?" >> "$OUT/keys.txt"
i=0
for key in $(head -4 "$OUT/keys.txt"); do
  i=$((i + 1))
  tar -xOf "$W/storage/studioml-artifacts/experiments/$key/output.tar" > "$OUT/output-$i.txt" 2>&1
done
grep -h -E "device_count|uuid|trained|memory limit|allocat" "$OUT"/output-*.txt
grep -E "starting|has GPUs|finished|cgroup|limits" "$OUT/runner.log"
