"""Training-step throughput of the thesis CNN: default (NCHW) vs channels_last memory layout,
side by side in one process, on in-memory tensors (batch 64, Adam). Also forward-only evaluation
at batch 250. Writes benchmarks/results/channels_last-<device>.md and prints it.

    .venv/bin/python benchmarks/channels_last.py [--threads 1 2] [--samples 6400]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from transferability.models.thesis_cnn import build_cnn


def train_rate(channels_last: bool, samples: int, device: str) -> float:
    model = build_cnn(10, seed=0).to(device)
    x = torch.randn(samples, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (samples,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def epoch():
        for i in range(0, samples, 64):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()

    epoch()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    epoch()
    if device == "cuda":
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - start)


@torch.inference_mode()
def eval_rate(channels_last: bool, samples: int, device: str) -> float:
    model = build_cnn(10, seed=0).to(device).eval()
    x = torch.randn(samples, 1, 28, 28, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model(x[:250])
    start = time.perf_counter()
    for i in range(0, samples, 250):
        model(x[i : i + 250])
    if device == "cuda":
        torch.cuda.synchronize()
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=6400)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for kind, fn in (
            ("train step, batch 64", train_rate),
            ("evaluation, batch 250", eval_rate),
        ):
            nchw = fn(False, args.samples, device)
            cl = fn(True, args.samples, device)
            rows.append(f"| {kind} | {threads} | {nchw:,.0f} | {cl:,.0f} | {cl / nchw:.2f}× |")
    table = "\n".join([
        f"Thesis CNN on {device} ({platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.samples} samples)",
        "",
        "| what | threads | NCHW samples/s | channels_last samples/s | ratio |",
        "|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    out = Path(__file__).parent / "results" / f"channels_last-{device}.md"
    out.write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
