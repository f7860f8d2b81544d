"""Training throughput of the thesis CNN, side by side in one process on one device (SPEC §9):

(a) ``thesis_loop``: the thesis's way, one run at a time: a torchvision-style MNIST dataset
    (PIL image → ``ToTensor`` → ``Normalize`` per sample) through a ``DataLoader`` (batch 64,
    shuffled), the model in the default NCHW layout, Adam 1e-4, ``loss.item()`` every step;
(b) ``per_run``: the library's single-run path, ``training.train_run``, on in-memory tensors
    (on CUDA its step loop, see :func:`_per_run_on_device`); ``per_run_compiled``: the same
    with ``torch.compile(model)`` (compilation time in the ``first call`` column);
(c) ``multi_run_<backend>``: ``multirun.train_runs`` with R runs at once (own data seeds, as
    seeds of a source would be), for both backends; ``multi_run_grouped_shared_data``: R runs
    with one data order and one dropout seed (the checkpoints of a source being fine-tuned on
    one target, as the workflow's fine-tuning jobs train them).

Data: synthetic uint8 images of MNIST's shape (60 000 × 28 × 28, 10 classes). Each variant is
warmed up, then timed over a fixed number of steps (≈ ``--seconds`` long, fixed from the warm-up
rate) ``--reps`` times, interleaved with the other variants; the median is reported.

Throughput is in run-samples per second (R × batch × steps / time). GFLOP/s uses the forward
multiply-adds of the convolutions and linear layers × 2 FLOP × 3 (forward + backward), printed
below. The matmul peak is a 2048 × 2048 float32 matmul measured in the same process.

Writes ``benchmarks/results/train_throughput-<device>.{json,md}`` (``-quick`` with ``--quick``)
and prints the table; on CUDA also the projected wall time of the paper-scale CNN grid.

    python benchmarks/train_throughput.py [--quick] [--runs 1 4 12 48] [--device cpu]

Needs only torch, torchvision, numpy and this repository (``workflow/`` is put on sys.path when
``transferability`` is not installed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    import transferability  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from transferability.models.thesis_cnn import build_cnn
from transferability.training.loop import (
    Split,
    batch_order,
    configure_torch,
    derive_seed,
    to_input,
    train_run,
)
from transferability.training.multirun import train_runs
from transferability.training.schedule import Checkpoint

BATCH = 64
LR = 1e-4
N_TRAIN = 60_000
NUM_CLASSES = 10
#: Paper-scale CNN track (SPEC §9): 60 pre-training + 1 440 fine-tuning runs of 100 epochs.
PAPER_EPOCHS = 150_000
RESULTS = Path(__file__).resolve().parent / "results"


def forward_macs(num_classes: int = NUM_CLASSES) -> dict[str, int]:
    """Multiply-adds per sample of each conv / linear layer of the thesis CNN (forward)."""
    return {
        "conv1": 26 * 26 * 32 * (1 * 3 * 3),
        "conv2": 11 * 11 * 64 * (32 * 3 * 3),
        "fc1": 1600 * 128,
        "fc2": 128 * num_classes,
    }


def flop_per_sample() -> float:
    """Training FLOP per sample: 2 FLOP per multiply-add × 3 (forward, input and weight
    gradients). Conv1's input gradient is never computed, so the work done is slightly less
    (``exact_flop_per_sample``); GFLOP/s uses this conventional count."""
    return 6.0 * sum(forward_macs().values())


def exact_flop_per_sample() -> float:
    return flop_per_sample() - 2.0 * forward_macs()["conv1"]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(device: str, size: int = 2048) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    reps = 50 if device == "cuda" else 8
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / reps)
    return 2.0 * size**3 / best / 1e9


# --- (a) the thesis's loop -------------------------------------------------------------------


class ThesisMNIST(torch.utils.data.Dataset):
    """What ``torchvision.datasets.MNIST(transform=...)`` does per sample, over given arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index], mode="L")
        return self.transform(image), int(self.labels[index])


def thesis_loop(images: np.ndarray, labels: np.ndarray, device: str) -> Callable[[int], int]:
    loader = torch.utils.data.DataLoader(
        ThesisMNIST(images, labels), batch_size=BATCH, shuffle=True
    )
    model = build_cnn(NUM_CLASSES, seed=0).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    batches = iter(loader)

    def run(steps: int) -> int:
        nonlocal batches
        done = 0
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            loss.item()
            done += len(y)
        return done

    return run


# --- (b) per-run and (c) multi-run through the library ---------------------------------------


def _checkpoints(steps: int) -> list[Checkpoint]:
    samples = steps * BATCH
    return [Checkpoint("0", 0, 0, 0.0), Checkpoint(f"{steps}b", steps, samples, samples / N_TRAIN)]


def per_run(train: Split, device: str, compiled: bool = False) -> Callable[[int], int]:
    """(b); with ``compiled``, the model through ``torch.compile`` (its compile time is the
    first call's, reported as ``first_call_s``)."""
    train = Split(train.images.to(device), train.labels.to(device))
    model = build_cnn(NUM_CLASSES, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if compiled:
        model = torch.compile(model)
    if device != "cpu":
        return _per_run_on_device(model, optimizer, train, device)

    def run(steps: int) -> int:
        train_run(
            model,
            train,
            _checkpoints(steps),
            batch_size=BATCH,
            optimizer=optimizer,
            data_seed=0,
            evaluate_fn=lambda m: {},
            on_checkpoint=lambda record, m: None,
        )
        return steps * BATCH

    return run


def _per_run_on_device(model, optimizer, train: Split, device: str) -> Callable[[int], int]:
    """``train_run``'s step loop with the loss accumulator on ``device`` (``train_run`` keeps it
    in a CPU tensor, which a CUDA loss cannot be added to in place)."""
    model.to(memory_format=torch.channels_last).train()
    batches = batch_order(len(train), BATCH, torch.Generator().manual_seed(0))
    torch.manual_seed(derive_seed(0, "dropout"))

    def run(steps: int) -> int:
        loss_sum = torch.zeros((), device=device)
        for _ in range(steps):
            idx = next(batches).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(to_input(train.images[idx])), train.labels[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        float(loss_sum)
        return steps * BATCH

    return run


def multi_run(
    train: Split, device: str, runs: int, backend: str, shared_data: bool
) -> Callable[[int], int]:
    states = [build_cnn(NUM_CLASSES, seed).state_dict() for seed in range(runs)]
    data_seeds = [0] * runs if shared_data else list(range(runs))
    train = Split(train.images.to(device), train.labels.to(device))

    def run(steps: int) -> int:
        train_runs(
            states,
            train,
            _checkpoints(steps),
            batch_size=BATCH,
            lr=LR,
            data_seeds=data_seeds,
            evaluate=lambda net: [{}] * net.runs,
            device=device,
            backend=backend,
        )
        return steps * BATCH * runs

    return run


# --- measurement -----------------------------------------------------------------------------


def timed(run: Callable[[int], int], steps: int, device: str) -> tuple[int, float]:
    sync(device)
    start = time.perf_counter()
    samples = run(steps)
    sync(device)
    return samples, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 12, 48])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--seconds", type=float, default=None, help="per timed repetition")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="short run, '-quick' outputs")
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # The workflow's settings (CPU: deterministic algorithms; CUDA: float32 without TF32). The
    # cuda table of 2026-11-23 predates this line: it ran with PyTorch's defaults (TF32 convs).
    configure_torch(torch.get_num_threads(), device)
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    reps = args.reps or (1 if args.quick else 5)
    threads = torch.get_num_threads()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, N_TRAIN)
    train = Split.from_numpy(images, labels)

    variants: list[tuple[str, int, Callable[[int], int]]] = [
        ("thesis_loop", 1, thesis_loop(images, labels, device)),
        ("per_run", 1, per_run(train, device)),
        ("per_run_compiled", 1, per_run(train, device, compiled=True)),
    ]
    for runs in args.runs:
        for name, backend, shared in (
            ("multi_run_grouped", "grouped", False),
            ("multi_run_vmap", "vmap", False),
            ("multi_run_grouped_shared_data", "grouped", True),
        ):
            variants.append((name, runs, multi_run(train, device, runs, backend, shared)))

    peak = matmul_peak_gflops(device)
    print(f"{device}, {threads} threads: 2048² float32 matmul {peak:,.0f} GFLOP/s", flush=True)
    steps: dict[int, int] = {}
    first_call: dict[int, float] = {}
    for i, (name, runs, run) in enumerate(variants):
        _, first_call[i] = timed(run, 2, device)  # warm-up: allocations, kernels, compilation
        samples, elapsed = timed(run, 3, device)
        rate = samples / elapsed
        steps[i] = max(3, round(seconds * rate / (BATCH * runs)))
        print(f"  warm-up {name} R={runs}: {rate:,.0f} run-samples/s", flush=True)

    rates: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    measured: dict[int, int] = {}
    for _ in range(reps):
        for i, (_, _, run) in enumerate(variants):
            samples, elapsed = timed(run, steps[i], device)
            rates[i].append(samples / elapsed)
            measured[i] = samples

    flop = flop_per_sample()
    thesis_rate = statistics.median(rates[0])
    rows = []
    for i, (name, runs, _) in enumerate(variants):
        rate = statistics.median(rates[i])
        rows.append(
            {
                "variant": name,
                "runs": runs,
                "device": device,
                "samples_per_s": round(rate, 1),
                "gflops": round(rate * flop / 1e9, 2),
                "fraction_of_matmul_peak": round(rate * flop / 1e9 / peak, 4),
                "ratio_to_thesis_loop": round(rate / thesis_rate, 3),
                "samples_measured": measured[i],
                "first_call_s": round(first_call[i], 2),
                "repetitions": reps,
                "spread": round((max(rates[i]) - min(rates[i])) / rate, 3),
                "threads": threads,
                "matmul_peak_gflops": round(peak, 1),
                "tf32_convolutions": device == "cuda" and torch.backends.cudnn.allow_tf32,
            }
        )

    multi = [r for r in rows if r["variant"].startswith("multi_run")]
    best = max(multi, key=lambda r: r["samples_per_s"])
    grid_samples = PAPER_EPOCHS * N_TRAIN
    grid_hours = grid_samples / best["samples_per_s"] / 3600
    projection = (
        f"Projected paper-scale CNN grid on this {device}: {PAPER_EPOCHS:,} MNIST epochs × "
        f"{N_TRAIN:,} samples = {grid_samples:.2e} run-samples / {best['samples_per_s']:,.0f} "
        f"run-samples/s (best multi-run: {best['variant']}, R = {best['runs']}) = "
        f"{grid_hours:,.1f} h ({grid_hours / 24:,.1f} days) of training, without evaluation."
    )
    name = f"train_throughput-{device}" + ("-quick" if args.quick else "")
    markdown = render(rows, device, threads, peak, projection)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def render(rows: list[dict], device: str, threads: int, peak: float, projection: str) -> str:
    macs = forward_macs()
    processor = platform.processor() or platform.machine()
    if device == "cuda":
        processor = torch.cuda.get_device_name()
    lines = [
        f"Thesis CNN training throughput on {device} ({processor}, {threads} threads, "
        f"torch {torch.__version__}), batch {BATCH}, Adam {LR}, synthetic MNIST-shaped data "
        f"({N_TRAIN:,} × 28 × 28 uint8). Median of {rows[0]['repetitions']} timed repetitions "
        "(spread = (max − min) / median).",
        "",
        "| variant | R | run-samples/s | GFLOP/s | of matmul peak | × thesis loop | spread "
        "| first call (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['runs']} | {r['samples_per_s']:,.0f} | {r['gflops']:.1f} | "
            f"{r['fraction_of_matmul_peak']:.1%} | {r['ratio_to_thesis_loop']:.2f}× | "
            f"{r['spread']:.0%} | {r['first_call_s']:.2f} |"
        )
    per_run = next(r for r in rows if r["variant"] == "per_run")
    multi = [r for r in rows if r["variant"].startswith("multi_run")]
    best = max(multi, key=lambda r: r["samples_per_s"])
    lines += [
        "",
        f"FLOP per training sample: forward multiply-adds conv1 {macs['conv1']:,}, conv2 "
        f"{macs['conv2']:,}, fc1 {macs['fc1']:,}, fc2 {macs['fc2']:,} = "
        f"{sum(macs.values()):,} MAC; × 2 FLOP × 3 (forward + backward) = "
        f"{flop_per_sample() / 1e6:.2f} MFLOP (the work actually done, without conv1's unneeded "
        f"input gradient: {exact_flop_per_sample() / 1e6:.2f} MFLOP). Matmul peak: 2048² float32 "
        f"matmul, {peak:,.0f} GFLOP/s.",
        "",
        f"Best multi-run: {best['variant']} at R = {best['runs']}, "
        f"{best['samples_per_s'] / per_run['samples_per_s']:.2f}× the per-run path "
        f"({best['ratio_to_thesis_loop']:.2f}× the thesis loop; per-run path "
        f"{per_run['ratio_to_thesis_loop']:.2f}×).",
        "",
        projection,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
