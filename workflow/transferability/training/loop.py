"""Training one CNN run on in-memory tensors, with evaluation at log-spaced checkpoints.

Pre-training (SPEC §6.1) and fine-tuning share :func:`train_run`. Data stay as one uint8 tensor
per split (no per-sample DataLoader); batches are normalised on the fly. Convolutions run in
``channels_last`` layout: 1.2–2× faster on this project's CPUs (benchmarks/channels_last.py).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferability.data.targets import Split
from transferability.data.transforms import PIXEL_MEAN, PIXEL_STD
from transferability.training.schedule import Checkpoint

log = logging.getLogger(__name__)


#: Run-samples per evaluation batch by device type. On CPU a small batch keeps its convolution
#: activations in cache: the multi-run trainer evaluates 3.6-4x faster than with 4 096
#: (benchmarks/eval_batch.py). On a GPU large batches, without holding more than a few hundred
#: MB of activations.
EVAL_RUN_SAMPLES = {"cpu": 96, "cuda": 4096}


def eval_batch_size(device: str | torch.device, runs: int = 1) -> int:
    """Samples per evaluation batch when ``runs`` models see each batch (at least 1)."""
    per_batch = EVAL_RUN_SAMPLES.get(torch.device(device).type, EVAL_RUN_SAMPLES["cuda"])
    return max(1, per_batch // runs)


#: Test-only precision switch: ``TRANSFERABILITY_DTYPE=float64`` makes every job train, evaluate
#: and extract in float64 (torch's default dtype; activation files stay float32). float32
#: training is bit-reproducible on one machine but not across instruction sets (AVX-512 vs AVX2
#: kernels round differently and training amplifies it); in float64 the same tiny runs agree
#: across them within the tolerances of tests/test_golden_tables.py (docs/reliability.md).
DTYPE_ENV = "TRANSFERABILITY_DTYPE"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def compute_dtype() -> torch.dtype:
    """The floating-point dtype jobs compute in: float32 unless :data:`DTYPE_ENV` says
    otherwise."""
    name = os.environ.get(DTYPE_ENV, "float32")
    if name not in DTYPES:
        raise ValueError(
            f"environment variable {DTYPE_ENV}={name!r}: expected one of {list(DTYPES)}"
        )
    return DTYPES[name]


def configure_torch(threads: int, device: str = "auto") -> torch.device:
    """Set up torch for one workflow job and return the device it trains on.

    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available). CPU results are
    bit-reproducible for a given ``threads`` (intra-op threads). On CUDA float32
    stays float32 (TF32 off: with TF32 convolutions a multi-run and its single runs differed by
    ~2 % relative in the parameters after 20 steps, without by 1.5e-4; docs/performance.md), and
    cuDNN picks its algorithms freely, so GPU results are reproducible only up to float rounding.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config 'device: cuda' but torch sees no CUDA device on this machine")
    torch.set_num_threads(threads)
    torch.set_default_dtype(compute_dtype())
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    # No torch.use_deterministic_algorithms: the CPU kernels used here are deterministic at a
    # fixed thread count (tests/test_pipeline_training.py), and the call imports torch._inductor
    # and torch._dynamo, 1.5-3 s per job (benchmarks/results/job_overhead.md).
    return torch.device(device)


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from integers and names (independent of Python's hash salt)."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def to_input(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images (n, 28, 28) → normalised floats (n, 1, 28, 28) in channels_last layout
    (torch's default dtype: float32, or float64 under :data:`DTYPE_ENV`)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 3:
        raise ValueError(
            f"expected uint8 images of shape (n, h, w), got {x.dtype} {tuple(x.shape)}"
        )
    x = (x.to(torch.get_default_dtype()).unsqueeze(1) / 255.0 - PIXEL_MEAN) / PIXEL_STD
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def evaluate_predictions(model: nn.Module, split: Split) -> tuple[float, torch.Tensor]:
    """(mean cross-entropy loss, predicted class of every sample) of ``model`` in eval mode on
    ``split``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    predictions = []
    batch = eval_batch_size(split.images.device)
    for start in range(0, len(split), batch):
        logits = model(to_input(split.images[start : start + batch]))
        target = split.labels[start : start + batch]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        predictions.append(logits.argmax(1))
    model.train(was_training)
    predicted = torch.cat(predictions) if predictions else split.labels[:0]
    return float(loss_sum) / max(len(split), 1), predicted


def evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` in eval mode on ``split``."""
    loss, predicted = evaluate_predictions(model, split)
    correct = int((predicted == split.labels).sum())
    return loss, correct / max(len(split), 1)


def batch_order(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless stream of index batches: a fresh permutation per epoch, last batch may be short."""
    while True:
        perm = torch.randperm(n, generator=generator)
        yield from perm.split(batch_size)


class Progress:
    """Progress of a training loop: every ``interval`` seconds one log line (batches done /
    total, samples per second, time left), so a long job's ``log:`` file shows where it is
    between log-spaced checkpoints; and, when stderr is a terminal outside CI, a tqdm bar.
    Costs one clock read per step (no device sync)."""

    def __init__(self, total: int, *, samples_per_step: int, what: str,
                 interval: float = 30.0) -> None:  # fmt: skip
        self.total, self.samples_per_step, self.what = total, samples_per_step, what
        self.interval, self.done = interval, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if total and sys.stderr.isatty() and not os.environ.get("CI"):
            try:
                from tqdm import tqdm
            except ImportError:  # the bar is a convenience; the log lines are the record
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=what, unit="batch", leave=False)

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.done * self.samples_per_step / (now - self.start)
            left = (self.total - self.done) * self.samples_per_step / rate if rate else math.inf
            log.info("%s: %d/%d batches (%.0f %%), %.0f samples/s, %.0f s left", self.what,
                     self.done, self.total, 100 * self.done / self.total, rate, left)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class CheckpointRecord:
    """What is known about a run at one checkpoint."""

    checkpoint: Checkpoint
    train_loss: float  # mean training-batch loss since the previous checkpoint (NaN at step 0)
    metrics: dict[str, float]  # whatever ``evaluate_fn`` returned

    def row(self, **identity) -> dict:
        """One row of a training or fine-tuning curve table: ``identity`` columns, then the
        checkpoint's progress (batches, samples, epochs), the training loss and the metrics."""
        c = self.checkpoint
        return {**identity, "batches": c.batches, "samples": c.samples, "epochs": c.epochs,
                "train_loss": self.train_loss, **self.metrics}  # fmt: skip


def train_run(
    model: nn.Module,
    train: Split,
    checkpoints: list[Checkpoint],
    *,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    data_seed: int,
    evaluate_fn: Callable[[nn.Module], dict[str, float]],
    on_checkpoint: Callable[[CheckpointRecord, nn.Module], None],
) -> list[CheckpointRecord]:
    """Train until the last checkpoint, calling ``on_checkpoint`` at each one (in order).

    The loss is accumulated on the device and read only at checkpoints (no per-step host sync).
    """
    model.to(memory_format=torch.channels_last).train()
    generator = torch.Generator().manual_seed(data_seed)
    # Dropout draws from the global generator: seed it per run so that a run's result does not
    # depend on what ran before it in the same process.
    torch.manual_seed(derive_seed(data_seed, "dropout"))
    batches = batch_order(len(train), batch_size, generator)
    records = []
    done = 0
    loss_sum = torch.zeros((), device=next(model.parameters()).device)  # no host sync per step
    start = time.perf_counter()
    total = checkpoints[-1].batches if checkpoints else 0
    progress = Progress(total, samples_per_step=batch_size, what="training")
    for checkpoint in checkpoints:
        todo = checkpoint.batches - done
        for _ in range(todo):
            idx = next(batches)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(to_input(train.images[idx])), train.labels[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            progress.step()
        train_loss = float(loss_sum) / todo if todo else float("nan")
        loss_sum.zero_()
        done = checkpoint.batches
        record = CheckpointRecord(checkpoint, train_loss, evaluate_fn(model))
        on_checkpoint(record, model)
        records.append(record)
        log.info(
            "checkpoint %s: %d batches, %d samples, %.1f s, %s",
            checkpoint.label,
            checkpoint.batches,
            checkpoint.samples,
            time.perf_counter() - start,
            record.metrics,
        )
    progress.close()
    return records
