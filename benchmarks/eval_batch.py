"""Evaluation batch size on CPU: the batches the workflow used before issue 17 vs
``training.eval_batch_size``, side by side in one run (ratios, not absolute times).

Every pre-training, fine-tuning and study job evaluates models on 500-1 000 test images at each
checkpoint: ``MultiRunCNN.evaluate`` (R runs see each batch) and ``training.evaluate`` (one
model, the studies). Before, both used large batches (4 096 // R run-samples, 250 samples);
now CPU batches hold ``EVAL_RUN_SAMPLES["cpu"]`` run-samples, so that a batch's convolution
activations stay in cache. One thread, as a workflow job runs; the median of 7 repetitions.

    .venv/bin/python benchmarks/eval_batch.py

Writes ``benchmarks/results/eval_batch-cpu.{json,md}``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from transferability.models.thesis_cnn import build_cnn
from transferability.training.loop import EVAL_RUN_SAMPLES, Split, eval_batch_size, evaluate
from transferability.training.multirun import MultiRunCNN

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = 1000
REPEATS = 7
OLD_MULTI_RUN_SAMPLES = 4096  # multirun.EVAL_RUN_SAMPLES before issue 17
OLD_SINGLE_BATCH = 250  # training.EVAL_BATCH before issue 17


def _median_seconds(fn) -> float:
    fn()  # first call: oneDNN primitive creation
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _single_model(split: Split, batch: int) -> float:
    model = build_cnn(10, seed=0).to(memory_format=torch.channels_last).eval()  # as train_run
    saved = EVAL_RUN_SAMPLES["cpu"]
    EVAL_RUN_SAMPLES["cpu"] = batch  # training.evaluate reads the batch from here
    try:
        return _median_seconds(lambda: evaluate(model, split))
    finally:
        EVAL_RUN_SAMPLES["cpu"] = saved


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    split = Split(
        torch.randint(0, 256, (SAMPLES, 28, 28), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (SAMPLES,), generator=generator),
    )
    rows = []
    for runs in (1, 2, 4, 6):
        net = MultiRunCNN([build_cnn(10, seed=s) for s in range(runs)])
        old_batch = max(1, OLD_MULTI_RUN_SAMPLES // runs)
        new_batch = eval_batch_size("cpu", runs)
        old = _median_seconds(lambda: net.evaluate(split, old_batch))  # noqa: B023
        new = _median_seconds(lambda: net.evaluate(split, new_batch))  # noqa: B023
        rows.append({"path": "MultiRunCNN.evaluate", "runs": runs, "old_batch": old_batch,
                     "new_batch": new_batch, "old_s": old, "new_s": new})  # fmt: skip
    rows.append({"path": "training.evaluate", "runs": 1, "old_batch": OLD_SINGLE_BATCH,
                 "new_batch": eval_batch_size("cpu"),
                 "old_s": _single_model(split, OLD_SINGLE_BATCH),
                 "new_s": _single_model(split, eval_batch_size("cpu"))})  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_batch-cpu.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"Evaluation of {SAMPLES} MNIST-shaped images on CPU, 1 thread, torch "
        f"{torch.__version__}; median of {REPEATS} repetitions. Batch = samples per batch "
        "(each seen by every run).",
        "",
        "| path | runs | old batch | new batch | old (s) | new (s) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['runs']} | {r['old_batch']} | {r['new_batch']} | "
            f"{r['old_s']:.3f} | {r['new_s']:.3f} | {r['old_s'] / r['new_s']:.2f}× |"
        )
    (RESULTS / "eval_batch-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
