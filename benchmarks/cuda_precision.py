"""CUDA precision and speed of the multi-run trainer (needs a CUDA device).

1. Equivalence on CUDA: R = 3 runs of ``multirun.train_runs`` (dropout off, both backends) against
   three ``training.train_run`` runs with the same seeds, 20 steps, largest relative parameter
   difference, with TF32 convolutions/matmuls off and on.
2. Run-samples/s of ``train_runs`` (batch 64, synthetic MNIST-shaped data) for R runs, shared or
   own data order, dropout on/off, TF32 off/on.

Run from the repository root: ``python benchmarks/cuda_precision.py | tee
benchmarks/results/cuda_precision-<gpu>.txt``. Its output drove the choice of float32 without
TF32 on CUDA (``training.configure_torch``, README, Performance).
"""

import sys
import time

sys.path.insert(0, "workflow")
import numpy as np
import torch

from transferability.models.thesis_cnn import build_cnn
from transferability.training.loop import Split, train_run
from transferability.training.multirun import train_runs
from transferability.training.schedule import Checkpoint, resolve_checkpoints

dev = "cuda"
print(
    torch.__version__,
    torch.cuda.get_device_name(),
    "cudnn tf32",
    torch.backends.cudnn.allow_tf32,
    "matmul tf32",
    torch.backends.cuda.matmul.allow_tf32,
    flush=True,
)
rng = np.random.default_rng(0)
n = 100
labels = rng.integers(0, 3, n)
images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
images[:, 5:10, 5:10] += (labels * 60).astype(np.uint8)[:, None, None]
train = Split.from_numpy(images, labels)
cks = resolve_checkpoints(["0", "3b", "7b", "20b"], n, 16)
for tf32 in (False, True):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    singles = []
    for s in range(3):
        m = build_cnn(3, s)
        m.drop1.p = m.drop2.p = 0.0
        m = m.to(dev)
        saved = {}
        train_run(
            m,
            Split(train.images.to(dev), train.labels.to(dev)),
            cks,
            batch_size=16,
            optimizer=torch.optim.Adam(m.parameters(), lr=1e-3),
            data_seed=10 + s,
            evaluate_fn=lambda m: {},
            on_checkpoint=lambda r, m, saved=saved: saved.__setitem__(
                r.checkpoint.label, {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            ),
        )
        singles.append(saved)
    for backend in ("grouped", "vmap"):
        out = {}
        train_runs(
            [build_cnn(3, s) for s in range(3)],
            train,
            cks,
            batch_size=16,
            lr=1e-3,
            data_seeds=[10, 11, 12],
            evaluate=lambda net: [{}] * net.runs,
            dropout=(0.0, 0.0),
            device=dev,
            backend=backend,
            on_checkpoint=lambda i, r, st, out=out: out.__setitem__((i, r.checkpoint.label), st),
        )
        worst = 0.0
        for i in range(3):
            for k, v in singles[i]["20b"].items():
                worst = max(worst, float((out[(i, "20b")][k] - v).norm() / v.norm()))
        print(
            f"tf32={tf32} backend={backend}: max relative param diff after 20 steps {worst:.2e}",
            flush=True,
        )

# rates
N = 60000
imgs = torch.randint(0, 256, (N, 28, 28), dtype=torch.uint8)
labs = torch.randint(0, 10, (N,))
tr = Split(imgs, labs)


def rate(R, shared, dropout, tf32, steps=300, backend="grouped"):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    states = [build_cnn(10, s).state_dict() for s in range(R)]
    seeds = [0] * R if shared else list(range(R))

    def go(k):
        train_runs(
            states,
            tr,
            [Checkpoint("0", 0, 0, 0.0), Checkpoint("x", k, k * 64, 0.0)],
            batch_size=64,
            lr=1e-4,
            data_seeds=seeds,
            evaluate=lambda net: [{}] * net.runs,
            device=dev,
            backend=backend,
            dropout=dropout,
        )

    go(5)
    torch.cuda.synchronize()
    t = time.perf_counter()
    go(steps)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return R * 64 * steps / dt, dt / steps * 1e3


for R in (1, 12, 48, 96, 192):
    for shared in (True, False):
        for dropout in (None, (0.0, 0.0)):
            for tf32 in (False, True):
                if R in (1, 192) and (not shared or tf32):
                    continue
                r, ms = rate(R, shared, dropout, tf32)
                drop = "on " if dropout is None else "off"
                print(
                    f"R={R:3d} shared={shared!s:5} dropout={drop} tf32={tf32!s:5}: "
                    f"{r:12,.0f} run-samples/s  {ms:6.2f} ms/step",
                    flush=True,
                )
r, ms = rate(12, True, None, False, backend="vmap")
print(f"vmap R=12 shared: {r:,.0f} {ms:.2f} ms/step")
