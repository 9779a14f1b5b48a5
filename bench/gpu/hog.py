# Allocates 400 MiB in 10 MiB steps: run with resources_needed.ram below that to see the
# runner's memory limit kill it (bench/gpu/multi.sh).
import time

blocks = []
print("allocating", flush=True)
for _ in range(40):
    blocks.append(bytearray(10 * 1024 * 1024))
    time.sleep(0.01)
print("allocated", len(blocks) * 10, "MiB", flush=True)
