"""Fine-tuning jobs (SPEC §6, thesis §2.3.3): every source checkpoint on every target, one
accuracy curve per (target, source, seed, pretrain step) — ``finetune/{target}/{source}/seed
{seed}/step{step}.csv``.

Both tracks share the bookkeeping: the checkpoint grid of the protocol (:func:`finetune_grid`),
evaluation on the target's test split at every grid point, and the curve's rows
(:func:`curve_table`). They differ in what a track's protocol prescribes: the thesis CNN's
checkpoints of one source run are trained together by the multi-run trainer on in-memory
tensors (:func:`finetune`, Adam); an image track's source is trained alone from image files with
augmentation, SGD with momentum and a step schedule (:func:`finetune_images`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from transferability.artifacts import write_csv
from transferability.data.targets import ArrayTarget, IndexedTarget
from transferability.jobs.sources import source_spec
from transferability.run.config import INITIAL_SOURCE

log = logging.getLogger(__name__)


def finetune_grid(protocol: Mapping, train_samples: int, *, context: str):
    """The protocol's checkpoints on a training split of ``train_samples`` images; a grid that
    cannot work fails before any work, its message starting with ``context`` (which target,
    which config key)."""
    from transferability.training.schedule import resolve_checkpoints

    return resolve_checkpoints(
        list(protocol["checkpoints"]), train_samples, int(protocol["batch_size"]), context=context
    )


def curve_table(
    records: Sequence, *, target: str, source: str, seed: int, pretrain_step: str
) -> pd.DataFrame:
    """A fine-tuning curve: one row per checkpoint record
    (:class:`~transferability.training.loop.CheckpointRecord` with the test split's
    ``test_loss`` and ``test_accuracy``), identified by target, source, seed and the source's
    pre-training step."""
    return pd.DataFrame(
        [
            r.row(
                target=target,
                source=source,
                seed=seed,
                pretrain_step=pretrain_step,
                finetune_step=r.checkpoint.label,
            )
            for r in records
        ]
    )


def _write_curve(curve: pd.DataFrame, path: str | Path) -> None:
    write_csv(curve, path)
    last = curve.iloc[-1]
    log.info("fine-tuned %s step %s on %s: final accuracy %.4f", last["source"],
             last["pretrain_step"], last["target"], last["test_accuracy"])  # fmt: skip


def finetune(
    checkpoint_paths: Mapping[str, str | Path],
    dataset_path: str | Path,
    curve_paths: Mapping[str, str | Path],
    *,
    target: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
    runs_together: Mapping[str, int] | None = None,
    policy: str = "thesis_cnn",
) -> None:
    """Fine-tune every pre-training checkpoint on the target under ``policy`` (default the
    thesis's: conv layers transferred, fc re-initialised, all weights trained) and write one
    accuracy curve per checkpoint.

    Head initialisation and batch order depend only on (seed, target), so every source and
    checkpoint of a seed is fine-tuned from the same head with the same data order: differences
    between curves come from the transferred weights alone. The checkpoints are therefore
    trained together (multi-run trainer, one shared batch), ``runs_together[device]`` at a time.
    """
    from transferability.models import finetune_model, model_from_checkpoint
    from transferability.training.loop import configure_torch, derive_seed
    from transferability.training.multirun import RUNS_TOGETHER, train_runs

    on = configure_torch(threads, device)
    group = int({**RUNS_TOGETHER, **(runs_together or {})}[on.type])
    data = ArrayTarget(dataset_path)
    train, _, test = data.training_splits(
        protocol.get("train_samples"), protocol.get("eval_samples")
    )
    context = f"fine-tuning on {target!r} (finetune.checkpoints)"
    checkpoints = finetune_grid(protocol, len(train), context=context)
    head_seed = derive_seed(seed, target, "head")
    data_seed = derive_seed(seed, target, "finetune-data")
    steps = list(checkpoint_paths)
    for first in range(0, len(steps), group):
        chunk = steps[first : first + group]
        models, sources = [], []
        for step in chunk:
            source_model, meta = model_from_checkpoint(checkpoint_paths[step])
            models.append(
                finetune_model(source_model, data.num_classes, policy, head_seed=head_seed)
            )
            sources.append(meta["source"])
        records: list[list] = [[] for _ in chunk]
        train_runs(
            models,
            train,
            checkpoints,
            batch_size=int(protocol["batch_size"]),
            lr=float(protocol["lr"]),
            data_seeds=[data_seed] * len(chunk),
            evaluate={"test": test},
            on_checkpoint=lambda run, record, _state, records=records: records[run].append(record),
            device=on,
        )
        for step, source, run_records in zip(chunk, sources, records, strict=True):
            curve = curve_table(
                run_records, target=target, source=source, seed=seed, pretrain_step=step
            )
            _write_curve(curve, curve_paths[step])


def finetune_images(
    checkpoint: str | Path | None,
    root: str | Path,
    index_csv: str | Path,
    curve_path: str | Path,
    *,
    target: str,
    source: str,
    seed: int,
    protocol: Mapping,
    resize: int | None,
    crop: int | None,
    extras: str | None = None,
    scratch_arch: str | None = None,
    policy: str = "last_conv",
    target_format: str = "imagefolder",
    threads: int = 1,
    device: str = "auto",
) -> pd.DataFrame:
    """Fine-tune one source on one target (thesis §2.3.3) and write its accuracy curve.

    The fine-tuning model comes from :func:`transferability.models.finetune_model` under
    ``policy`` (default the thesis's VGG rule ``last_conv``: features transferred, a new
    classifier seeded by (seed, target), only the last conv layer and the classifier trained).
    With ``checkpoint=None`` the baseline ``scratch_arch`` is trained from scratch, all weights
    trainable. SGD with momentum, lr × ``lr_gamma`` every ``lr_step_epochs`` epochs, evaluation
    on the target's test split (centre crop) at the log-grid checkpoints.
    """
    import torch
    import torch.nn.functional as F

    from transferability.data.transforms import build_transform
    from transferability.models import (
        build_model,
        finetune_model,
        model_from_checkpoint,
        train_mode,
    )
    from transferability.training.loop import CheckpointRecord, configure_torch, derive_seed
    from transferability.training.schedule import steps_per_epoch

    on = configure_torch(threads, device)
    data = IndexedTarget(root, index_csv, target_format)
    num_classes = data.num_classes
    batch_size = int(protocol["batch_size"])
    n_train = len(data.labels("train"))
    per_epoch = steps_per_epoch(n_train, batch_size)
    context = f"target {target!r} (targets.{target}.checkpoints)"
    checkpoints = finetune_grid(protocol, n_train, context=context)
    if checkpoint is None:
        if scratch_arch is None:
            raise ValueError("fine-tuning from scratch needs scratch_arch")
        spec = source_spec(scratch_arch, num_classes=num_classes)
        model = build_model(spec, seed=derive_seed(seed, target, "scratch"))
    else:
        source_model, _ = model_from_checkpoint(checkpoint)
        head_seed = derive_seed(seed, target, "head")
        model = finetune_model(source_model, num_classes, policy, head_seed=head_seed)
    model.to(on)
    params = [p for p in model.parameters() if p.requires_grad]
    lr0 = float(protocol["lr"])
    optimizer = torch.optim.SGD(params, lr=lr0, momentum=float(protocol["momentum"]))
    torch.manual_seed(derive_seed(seed, target, "augment"))  # random crops and flips
    from transferability.models import model_inputs

    inputs = model_inputs(model.spec, resize=resize, crop=crop)
    resize, crop = inputs.resize, inputs.crop
    train_transform = build_transform(True, resize=resize, crop=crop, extras=extras, inputs=inputs)
    test_transform = build_transform(False, resize=resize, crop=crop, inputs=inputs)
    test = data.dataset(
        "test", test_transform, data.limit("test", protocol.get("eval_samples") or None)
    )
    loader = data.loader(
        "train",
        batch_size=batch_size,
        transform=train_transform,
        shuffle=True,
        generator=torch.Generator().manual_seed(derive_seed(seed, target, "finetune-data")),
    )

    def evaluate() -> tuple[float, float]:
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.inference_mode():
            for x, y in torch.utils.data.DataLoader(test, batch_size=batch_size):
                logits = model(x.to(on))
                loss_sum += float(F.cross_entropy(logits, y.to(on), reduction="sum"))
                correct += int((logits.argmax(1).cpu() == y).sum())
        train_mode(model)
        n = max(len(test), 1)
        return loss_sum / n, correct / n

    records, done = [], 0
    batches = iter(loader)
    loss_sum = torch.zeros((), device=on)
    train_mode(model)
    for c in checkpoints:
        todo = c.batches - done
        for step in range(done, c.batches):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            decays = (step // per_epoch) // int(protocol["lr_step_epochs"])
            for group in optimizer.param_groups:
                group["lr"] = lr0 * float(protocol["lr_gamma"]) ** decays
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x.to(on)), y.to(on))
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        done = c.batches
        test_loss, test_accuracy = evaluate()
        records.append(
            CheckpointRecord(
                c,
                float(loss_sum) / todo if todo else math.nan,
                {"test_loss": test_loss, "test_accuracy": test_accuracy},
            )
        )
        loss_sum.zero_()
        log.info(
            "%s on %s, checkpoint %s: test accuracy %.4f", source, target, c.label, test_accuracy
        )
    curve = curve_table(records, target=target, source=source, seed=seed, pretrain_step="final")
    _write_curve(curve, curve_path)
    return curve


def share_initial(table_path: str | Path, out_path: str | Path, *, source: str) -> None:
    """Write the untrained model's table (metrics or fine-tuning curve, :func:`initial_model`)
    as ``source``'s step-0 table: the same rows with ``source`` in the ``source`` column.

    Cells are copied as text, so every value is the one the untrained model's job wrote."""
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    if "source" not in table.columns or set(table["source"]) - {INITIAL_SOURCE}:
        raise ValueError(
            f"{table_path}: not an untrained model's table (expected a 'source' column holding "
            f"{INITIAL_SOURCE!r} only, got {sorted(set(table.get('source', [])))[:3]})"
        )
    table["source"] = source
    write_csv(table, out_path)
