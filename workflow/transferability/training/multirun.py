"""Training R runs of the thesis CNN together on one device (SPEC §9.1).

The R runs share an architecture (the seeds of a source in pre-training; the checkpoints of one
source run being fine-tuned on a target). Their parameters are stacked along a leading run axis
(``torch.func.stack_module_state``) and one optimizer step updates all of them; each run keeps

- its own initialisation (one state dict per run),
- its own data order: the batches of :func:`training.batch_order` from a ``torch.Generator``
  seeded with the run's data seed (all runs have the same n and batch size, so a short last
  batch of an epoch is short for every run and the runs stay in lockstep),
- its own dropout masks, drawn from the run's own generator seeded with the run's dropout seed,
  exactly as :func:`training.train_run` draws them from the global generator, so a run's masks
  never depend on which other runs share the group,
- its own Adam state: Adam is elementwise and the summed loss ``Σ_r mean_loss_r`` gives each
  run the gradient of its own loss, so Adam on the stacked tensors is R independent Adams.

A run therefore produces the checkpoints, histories and accuracies that :func:`train_run` gives
with the same seeds, up to float rounding (grouped vs. single convolutions, batched vs. single
matrix products). On CPU even the dropout masks are bit-identical (``bernoulli_`` on the same
generator state); on CUDA the single-run path uses the fused dropout kernel, whose masks cannot
be reproduced, so there a run's masks are its own but differ from the single-run path's.

Two interchangeable forward implementations ("backends") compute the same function:

``"grouped"``
    Grouped convolutions over a (batch, run × channel, h, w) channels_last layout and batched
    matrix products for the fc layers. Fastest on CPU (benchmarks/train_throughput.py).
``"vmap"``
    ``torch.func.vmap`` of the per-run forward over the stacked parameters (``functional_call``
    of the model for evaluation); PyTorch lowers the convolutions to grouped ones itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from transferability.models.thesis_cnn import ThesisCNN
from transferability.training.loop import (
    PIXEL_MEAN,
    PIXEL_STD,
    CheckpointRecord,
    Progress,
    Split,
    derive_seed,
    eval_batch_size,
)
from transferability.training.schedule import Checkpoint

__all__ = ["RUNS_TOGETHER", "Backend", "MultiRunCNN", "train_runs"]

log = logging.getLogger(__name__)

Backend = Literal["grouped", "vmap"]

#: Runs trained together per device type by default (benchmarks/train_throughput.py: on the
#: 2-core CPU, grouped runs gain up to R ≈ 4 and lose beyond 12; on a GPU throughput grows to
#: R ≈ 48 and beyond).
RUNS_TOGETHER = {"cpu": 4, "cuda": 48}

EvaluateFn = Callable[["MultiRunCNN"], Sequence[Mapping[str, float]]]


def _normalise(images: torch.Tensor) -> torch.Tensor:
    # The same float operations as training.to_input, so that inputs are bit-identical.
    return (images.to(torch.get_default_dtype()) / 255.0 - PIXEL_MEAN) / PIXEL_STD


def _normalise_(x: torch.Tensor) -> torch.Tensor:
    """In-place :func:`_normalise` of float pixel values 0…255."""
    return x.div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)


# ReLU after max-pooling: the same values and gradients as ThesisCNN's pool(relu(conv)) (ReLU is
# monotone and its gradient at a pooled maximum ≤ 0 is zero either way) on a 4× smaller tensor.


def _forward_one(
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    mask1: torch.Tensor | None = None,
    mask2: torch.Tensor | None = None,
) -> torch.Tensor:
    """One run's :meth:`ThesisCNN.forward` with dropout as given (pre-scaled) masks."""
    x = torch.relu(F.max_pool2d(F.conv2d(x, params["conv1.weight"], params["conv1.bias"]), 2))
    x = torch.relu(F.max_pool2d(F.conv2d(x, params["conv2.weight"], params["conv2.bias"]), 2))
    x = x.flatten(1)
    if mask1 is not None:
        x = x * mask1
    x = torch.relu(F.linear(x, params["fc1.weight"], params["fc1.bias"]))
    if mask2 is not None:
        x = x * mask2
    return F.linear(x, params["fc2.weight"], params["fc2.bias"])


def _linear_runs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(R, B, i) @ (R, o, i)ᵀ + (R, o) → (R, B, o)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class MultiRunCNN:
    """R runs of :class:`ThesisCNN` as stacked parameters on one device.

    Parameters
    ----------
    runs
        R models or state dicts of one architecture (same number of classes).
    device
        Where parameters, optimizer state and data live.
    backend
        ``"grouped"`` or ``"vmap"`` (see the module docstring); both compute the same function.
    dropout
        Dropout probabilities (before fc1, before fc2). Default: taken from the models when
        ``runs`` are models (they must agree), else ThesisCNN's (0.25, 0.5).

    Attributes
    ----------
    params
        Parameter name → leaf tensor of shape (R, ...) with ``requires_grad``.
    """

    def __init__(
        self,
        runs: Sequence[nn.Module | Mapping[str, torch.Tensor]],
        *,
        device: str | torch.device = "cpu",
        backend: Backend = "grouped",
        dropout: tuple[float, float] | None = None,
    ) -> None:
        if len(runs) < 1:
            raise ValueError("need at least one run")
        if backend not in ("grouped", "vmap"):
            raise ValueError(f"backend must be 'grouped' or 'vmap', got {backend!r}")
        models = [self._as_module(r) for r in runs]
        num_classes = {m.fc2.out_features for m in models}
        if len(num_classes) != 1:
            raise ValueError(f"runs differ in their number of classes: {sorted(num_classes)}")
        if dropout is None:
            if all(isinstance(r, Mapping) for r in runs):
                dropout = (0.25, 0.5)
            else:
                modules = [m for r, m in zip(runs, models, strict=True) if isinstance(r, nn.Module)]
                given = {(m.drop1.p, m.drop2.p) for m in modules}
                if len(given) != 1:
                    raise ValueError(f"runs differ in their dropout probabilities: {given}")
                (dropout,) = given
        if not all(0.0 <= p < 1.0 for p in dropout):
            raise ValueError(f"dropout probabilities must be in [0, 1), got {dropout}")
        self.device = torch.device(device)
        self.backend: Backend = backend
        self.dropout = (float(dropout[0]), float(dropout[1]))
        self.num_classes = num_classes.pop()
        params, buffers = stack_module_state(models)
        if buffers:
            raise ValueError(f"unexpected buffers {list(buffers)}")
        self.params = {
            k: v.detach().to(self.device, copy=True).requires_grad_() for k, v in params.items()
        }
        self.runs = len(models)
        with torch.device("meta"):
            self._template = ThesisCNN(self.num_classes).eval()

    @staticmethod
    def _as_module(run: nn.Module | Mapping[str, torch.Tensor]) -> ThesisCNN:
        if isinstance(run, ThesisCNN):
            return run
        if isinstance(run, nn.Module):
            raise TypeError(f"expected ThesisCNN models or state dicts, got {type(run).__name__}")
        num_classes = run["fc2.weight"].shape[0]
        with torch.device("meta"):  # no initialisation, no draw from the global generator
            model = ThesisCNN(num_classes)
        model.load_state_dict(run, assign=True)
        return model

    # --- inputs ------------------------------------------------------------------------------

    def inputs(self, images: torch.Tensor, shared: bool) -> torch.Tensor:
        """Network input for this backend from uint8 images (R, B, h, w), or (B, h, w) when all
        runs see the same batch (``shared``)."""
        if self.backend == "vmap" and not shared:
            return _normalise(images.unsqueeze(2))  # (R, B, 1, h, w)
        # (B, R, h, w) channels_last: the run axis is the channel axis. The strides are set
        # explicitly since with one channel the layout is ambiguous and oneDNN would fall back
        # to NCHW activations, whose pooling is several times slower.
        images = images.unsqueeze(1) if shared else images.transpose(0, 1)
        x = torch.empty(images.shape, device=images.device, memory_format=torch.channels_last)
        return _normalise_(x.copy_(images))

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        shared: bool,
        masks: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Logits (R, B, classes) of every run on input ``x`` from :meth:`inputs`.

        ``masks`` are the pre-scaled dropout masks, (R, B, 1600) and (R, B, 128), each None for
        no dropout there; ``masks=None`` is evaluation.
        """
        m1, m2 = masks if masks is not None else (None, None)
        if self.backend == "vmap":
            if m1 is None and m2 is None:
                fn = vmap(self._call_template, in_dims=(0, None if shared else 0))
                return fn(self.params, x)
            in_dims = (0, None if shared else 0, *(None if m is None else 0 for m in (m1, m2)))
            return vmap(_forward_one, in_dims=in_dims)(self.params, x, m1, m2)
        return self._forward_grouped(x, shared, m1, m2)

    def _call_template(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template, params, (x,))

    def _forward_grouped(self, x, shared, m1, m2) -> torch.Tensor:
        p, r = self.params, self.runs
        w1 = p["conv1.weight"].flatten(0, 1)
        h = F.conv2d(x, w1, p["conv1.bias"].flatten(), groups=1 if shared else r)
        h = torch.relu(F.max_pool2d(h, 2))
        w2 = p["conv2.weight"].flatten(0, 1)
        h = torch.relu(F.max_pool2d(F.conv2d(h, w2, p["conv2.bias"].flatten(), groups=r), 2))
        h = h.reshape(h.shape[0], r, -1).transpose(0, 1)  # (R, B, 1600), per-run flatten order
        if m1 is not None:
            h = h * m1
        h = torch.relu(_linear_runs(h, p["fc1.weight"], p["fc1.bias"]))
        if m2 is not None:
            h = h * m2
        return _linear_runs(h, p["fc2.weight"], p["fc2.bias"])

    # --- per-run access and evaluation -------------------------------------------------------

    def state_dict(self, run: int) -> dict[str, torch.Tensor]:
        """A CPU copy of run ``run``'s parameters, as :meth:`ThesisCNN.state_dict` names them."""
        return {k: v[run].detach().to("cpu", copy=True) for k, v in self.params.items()}

    def model(self, run: int) -> ThesisCNN:
        """Run ``run`` as a stand-alone :class:`ThesisCNN` (on CPU, with this dropout)."""
        with torch.device("meta"):
            model = ThesisCNN(self.num_classes)
        model.load_state_dict(self.state_dict(run), assign=True)
        model.drop1.p, model.drop2.p = self.dropout
        return model

    @torch.inference_mode()
    def evaluate(
        self, split: Split, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy loss, accuracy) of every run (eval mode), each of shape (R,),
        float64 on CPU; all runs see each evaluation batch at once."""
        if batch_size is None:
            batch_size = eval_batch_size(self.device, self.runs)
        images = split.images.to(self.device)
        labels = split.labels.to(self.device)
        loss_sum = torch.zeros(self.runs, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.runs, dtype=torch.int64, device=self.device)
        for start in range(0, len(split), batch_size):
            target = labels[start : start + batch_size]
            logits = self.forward(self.inputs(images[start : start + batch_size], True), True)
            loss = F.cross_entropy(logits.flatten(0, 1), target.repeat(self.runs), reduction="none")
            loss_sum += loss.view(self.runs, -1).sum(1).double()
            correct += (logits.argmax(2) == target).sum(1)
        n = max(len(split), 1)
        return loss_sum.cpu() / n, correct.cpu().double() / n


class _Batches:
    """Index batches (R, b) on the device, as :func:`training.batch_order` gives per run."""

    def __init__(self, n: int, batch_size: int, data_seeds: Sequence[int], device) -> None:
        self.n, self.batch_size, self.device = n, batch_size, device
        # Runs with one data seed see one batch: the input is computed once for all of them.
        self.shared = len(set(data_seeds)) == 1
        seeds = data_seeds[:1] if self.shared else data_seeds
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.perms: torch.Tensor | None = None
        self.pos = n

    def __next__(self) -> torch.Tensor:
        if self.pos >= self.n:
            perms = [torch.randperm(self.n, generator=g) for g in self.generators]
            self.perms = torch.stack(perms).to(self.device)  # one copy per epoch
            self.pos = 0
        idx = self.perms[:, self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


class _Masks:
    """Pre-scaled dropout masks (R, b, d) drawn from one generator per run on the device.

    Draw order and call (``bernoulli_(1 - p)`` on a (b, d) float tensor, then ``div_(1 - p)``)
    are those of ``F.dropout`` on CPU, so CPU masks equal :func:`training.train_run`'s. Runs
    with one dropout seed (fine-tuning) would draw identical masks: one is drawn and shared.
    """

    def __init__(self, dropout, dropout_seeds: Sequence[int], device) -> None:
        self.dropout, self.device, self.runs = dropout, device, len(dropout_seeds)
        seeds = dropout_seeds[:1] if len(set(dropout_seeds)) == 1 else dropout_seeds
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def draw(self, b: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        g_count = len(self.generators)
        masks = [
            None if p == 0 else torch.empty(g_count, b, d, device=self.device)
            for p, d in zip(self.dropout, (1600, 128), strict=True)
        ]
        for i, g in enumerate(self.generators):
            for p, m in zip(self.dropout, masks, strict=True):  # per step: drop1, then drop2
                if m is not None:
                    m[i].bernoulli_(1 - p, generator=g)
        m1, m2 = (
            m if m is None else m.div_(1 - p).expand(self.runs, -1, -1)
            for p, m in zip(self.dropout, masks, strict=True)
        )
        return m1, m2


def train_runs(
    runs: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    train: Split,
    checkpoints: Sequence[Checkpoint],
    *,
    batch_size: int,
    lr: float,
    data_seeds: Sequence[int],
    evaluate: Mapping[str, Split] | EvaluateFn,
    on_checkpoint: Callable[[int, CheckpointRecord, dict[str, torch.Tensor]], None] | None = None,
    dropout_seeds: Sequence[int] | None = None,
    dropout: tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    backend: Backend = "grouped",
) -> list[list[CheckpointRecord]]:
    """Train R runs together with Adam until the last checkpoint; R × :func:`train_run`.

    Parameters
    ----------
    runs
        R initial :class:`ThesisCNN` models or state dicts (not modified).
    train
        Training split (uint8 images, int64 labels), copied to ``device`` once.
    checkpoints
        From :func:`schedule.resolve_checkpoints` (sorted by training progress).
    batch_size, lr
        Batch size per run and Adam's learning rate (other Adam settings: PyTorch defaults).
    data_seeds
        One per run: seeds the run's batch order as ``train_run(data_seed=...)`` does. Runs with
        equal data seeds see the same batches (computed once when all are equal).
    evaluate
        Either evaluation splits by name, giving ``{name}_loss`` and ``{name}_accuracy`` per run
        (e.g. ``{"train_eval": ..., "test": ...}`` as the pipeline names them), or a callable
        taking this :class:`MultiRunCNN` and returning R metric dicts.
    on_checkpoint
        Called as ``on_checkpoint(run_index, record, state_dict)`` at every checkpoint, runs in
        order; ``state_dict`` is a CPU copy of that run's parameters.
    dropout_seeds
        One per run; default ``derive_seed(data_seed, "dropout")``, the seed ``train_run`` uses.
    dropout
        Dropout probabilities (before fc1, before fc2); ``(0, 0)`` turns dropout off. Default:
        from the models, or ThesisCNN's (0.25, 0.5) for state dicts.
    device
        Default CUDA when available, else CPU.
    backend
        ``"grouped"`` or ``"vmap"``; same results up to float rounding.

    Returns
    -------
    list[list[CheckpointRecord]]
        Per run, one record per checkpoint, in order. ``train_loss`` is the mean training-batch
        loss since the previous checkpoint (NaN at step 0), accumulated on the device.
    """
    r = len(runs)
    if len(data_seeds) != r:
        raise ValueError(f"need one data seed per run: {r} runs, {len(data_seeds)} seeds")
    if dropout_seeds is None:
        dropout_seeds = [derive_seed(int(s), "dropout") for s in data_seeds]
    if len(dropout_seeds) != r:
        raise ValueError(f"need one dropout seed per run: {r} runs, {len(dropout_seeds)} seeds")
    if batch_size < 1 or len(train) < 1:
        raise ValueError(f"need batch_size >= 1 and training data, got {batch_size}, {len(train)}")
    if list(checkpoints) != sorted(checkpoints, key=lambda c: c.batches):
        raise ValueError("checkpoints must be sorted by training progress")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    net = MultiRunCNN(runs, device=device, backend=backend, dropout=dropout)
    device = net.device
    images = train.images.to(device)
    labels = train.labels.to(device)
    batches = _Batches(len(train), batch_size, data_seeds, device)
    masks = _Masks(net.dropout, dropout_seeds, device)
    optimizer = torch.optim.Adam(list(net.params.values()), lr=lr)
    evaluate_fn = evaluate if callable(evaluate) else _split_evaluator(evaluate)
    records: list[list[CheckpointRecord]] = [[] for _ in range(r)]
    loss_sum = torch.zeros(r, device=device)
    done = 0
    start = time.perf_counter()
    progress = Progress(checkpoints[-1].batches if checkpoints else 0,
                        samples_per_step=r * batch_size, what=f"training {r} run(s)")  # fmt: skip
    for checkpoint in checkpoints:
        todo = checkpoint.batches - done
        for _ in range(todo):
            idx = next(batches)
            b = idx.shape[1]
            if batches.shared:
                x = net.inputs(images[idx[0]], shared=True)
                y = labels[idx[0]].repeat(r)
            else:
                x = net.inputs(images[idx], shared=False)
                y = labels[idx].flatten()
            logits = net.forward(x, batches.shared, masks.draw(b))
            run_losses = F.cross_entropy(logits.flatten(0, 1), y, reduction="none").view(r, b)
            run_losses = run_losses.mean(1)
            optimizer.zero_grad(set_to_none=True)
            run_losses.sum().backward()
            optimizer.step()
            loss_sum += run_losses.detach()
            progress.step()
        train_losses = (loss_sum / todo).tolist() if todo else [float("nan")] * r
        loss_sum.zero_()
        done = checkpoint.batches
        metrics = list(evaluate_fn(net))
        if len(metrics) != r:
            raise ValueError(f"evaluate returned {len(metrics)} metric dicts for {r} runs")
        for i in range(r):
            record = CheckpointRecord(checkpoint, train_losses[i], dict(metrics[i]))
            if on_checkpoint is not None:
                on_checkpoint(i, record, net.state_dict(i))
            records[i].append(record)
        log.info(
            "checkpoint %s: %d runs, %d batches, %d samples, %.1f s",
            checkpoint.label,
            r,
            checkpoint.batches,
            checkpoint.samples,
            time.perf_counter() - start,
        )
    progress.close()
    return records


def _split_evaluator(splits: Mapping[str, Split]) -> EvaluateFn:
    on_device: dict[str, Split] = {}  # copied to the device at the first checkpoint only

    def evaluate_fn(net: MultiRunCNN) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in range(net.runs)]
        for name, split in splits.items():
            if name not in on_device:
                on_device[name] = Split(split.images.to(net.device), split.labels.to(net.device))
            loss, acc = net.evaluate(on_device[name])
            for i in range(net.runs):
                out[i][f"{name}_loss"] = float(loss[i])
                out[i][f"{name}_accuracy"] = float(acc[i])
        return out

    return evaluate_fn
