# A small PyTorch training job for the GPU check (bench/gpu/h200.sh): reports what CUDA shows
# it, then trains an 8-layer MLP on synthetic data for a fixed number of steps (about 30 s on
# an H200) and prints the loss every 100 steps and its own run time.
import os
import time

import torch

start = time.perf_counter()
steps = int(os.environ.get("TRAIN_STEPS", "900"))
print("CUDA_VISIBLE_DEVICES =", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
print("torch", torch.__version__, "device_count =", torch.cuda.device_count(), flush=True)
if torch.cuda.device_count() < 1:
    raise SystemExit("no GPU visible")
props = torch.cuda.get_device_properties(0)
print("device name =", props.name, flush=True)
print("device uuid = GPU-" + str(props.uuid), flush=True)
for i in range(1, torch.cuda.device_count()):
    print(f"device {i} uuid = GPU-" + str(torch.cuda.get_device_properties(i).uuid), flush=True)

torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = True
dev = torch.device("cuda:0")
width, batch = 4096, 8192
layers = []
for _ in range(8):
    layers += [torch.nn.Linear(width, width), torch.nn.GELU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randn(batch, width, device=dev)
y = x[:, :16].sum(dim=1, keepdim=True).tanh()
for step in range(1, steps + 1):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if step % 100 == 0 or step == steps:
        print(f"step {step}: loss={loss.item():.5f}", flush=True)
torch.cuda.synchronize()
print(f"trained {steps} steps in {time.perf_counter() - start:.3f} s", flush=True)
