"""A tiny studioml experiment: echoes its arguments, 'trains' a line fit, saves a model file."""
import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--msg", default="")
args = parser.parse_args()

print(f"msg={args.msg!r} lr={args.lr} steps={args.steps}", flush=True)
w = 0.0
for step in range(args.steps):
    # fit y = 3x on x=1: gradient of (w-3)^2 is 2(w-3)
    w -= args.lr * 2 * (w - 3.0)
    print(f"step {step + 1}: loss={(w - 3.0) ** 2:.6f} w={w:.4f}", flush=True)

mapping = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))
with open(os.path.join(mapping["modeldir"], "model.json"), "w") as f:
    json.dump({"w": w}, f)
print("saved model to modeldir/model.json")
