"""Source-model jobs: the untrained thesis CNN (:func:`initial_model`), pre-training the CNN
on an MNIST-like dataset at log-spaced checkpoints (:func:`pretrain`), training an image-track
source from scratch (:func:`pretrain_weights`) and loading any family's source from a weight file
into a checkpoint with its baselines' facts (:func:`load_source`).

Every function takes plain paths and settings (no Snakemake objects), so it runs anywhere."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from transferability import __version__
from transferability.artifacts import write_csv
from transferability.data.arrays import load_dataset
from transferability.data.targets import ArrayTarget
from transferability.data.transforms import grey_to_rgb
from transferability.run.config import INITIAL_SOURCE, INITIAL_STEP

log = logging.getLogger(__name__)


def initial_model(checkpoint_path: str | Path, *, num_classes: int, seed: int) -> None:
    """Save the untrained thesis CNN of (``seed``, ``num_classes``): the step-0 model that every
    source's run of that seed starts from (its weights depend on nothing else)."""
    from transferability.artifacts import save_checkpoint
    from transferability.models import ModelSpec, build_model
    from transferability.training.loop import configure_torch

    configure_torch(1, "cpu")  # the dtype the runs train in: the weights are drawn in it
    spec = ModelSpec("thesis_cnn", num_classes)
    model = build_model(spec, seed)
    meta = {"source": INITIAL_SOURCE, "seed": seed, "step": INITIAL_STEP, **spec.meta(),
            "dtype": str(next(model.parameters()).dtype)}  # fmt: skip
    save_checkpoint(checkpoint_path, model.state_dict(), {**meta, "version": __version__})
    log.info("untrained model of seed %d, %d classes: %s", seed, num_classes, checkpoint_path)


def pretrain(
    dataset_path: str | Path,
    checkpoint_paths: Mapping[str, str | Path],
    history_path: str | Path,
    *,
    source: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
    initial: str | Path | None = None,
) -> pd.DataFrame:
    """Pre-train one run of the thesis CNN on ``dataset_path`` and save a checkpoint at every
    label in ``checkpoint_paths`` (label → path), plus the history table, which also has the
    untrained model's row (step 0, evaluated on this source's data).

    The run starts from ``initial``, the file :func:`initial_model` wrote for (``seed``, the
    dataset's classes); without it from the same model built here. One run per job, so that
    adding a seed adds a job (SPEC §5); it goes through the multi-run trainer with R = 1, which
    is the faster path on CPU too (benchmarks/train_throughput.py).
    """
    import torch

    from transferability.artifacts import save_checkpoint
    from transferability.models import ModelSpec, build_model, model_from_checkpoint
    from transferability.training.loop import DTYPE_ENV, configure_torch, derive_seed
    from transferability.training.multirun import train_runs
    from transferability.training.schedule import resolve_checkpoints

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    train, train_eval, test = ArrayTarget(dataset).training_splits(
        protocol.get("train_samples"), protocol.get("eval_samples")
    )
    batch_size = int(protocol["batch_size"])
    lr = float(protocol["lr"])
    labels = list(dict.fromkeys([INITIAL_STEP, *checkpoint_paths]))
    checkpoints = resolve_checkpoints(labels, len(train), batch_size)
    spec = ModelSpec("thesis_cnn", dataset.num_classes)
    if initial is None:
        model = build_model(spec, seed)
    else:
        model, meta = model_from_checkpoint(initial)
        if model.spec != spec or int(meta.get("seed", -1)) != seed:
            raise ValueError(
                f"{initial}: the untrained model of seed {meta.get('seed')} with "
                f"{model.spec.num_classes} classes, but run {source} seed {seed} needs seed {seed} "
                f"with {dataset.num_classes} classes ({dataset.name})"
            )
        if meta.get("dtype") != str(torch.get_default_dtype()):  # another dtype, other weights
            raise ValueError(
                f"{initial}: the untrained model was drawn in {meta.get('dtype')}, but this run "
                f"trains in {torch.get_default_dtype()} (environment variable {DTYPE_ENV}); "
                "remake it (delete it: the workflow makes it again)"
            )
        model.train()
    rows = []

    def on_checkpoint(_run, record, state):
        row = record.row(
            source=source, dataset=dataset.name, seed=seed, step=record.checkpoint.label
        )
        rows.append(row)
        if record.checkpoint.label not in checkpoint_paths:
            return
        meta = {
            **row,
            **spec.meta(),
            "batch_size": batch_size,
            "lr": lr,
            "device": on.type,
            "version": __version__,
            "protocol": json.dumps(dict(protocol), sort_keys=True),  # provenance (SPEC §10)
        }
        save_checkpoint(checkpoint_paths[record.checkpoint.label], state, meta)

    train_runs(
        [model],
        train,
        checkpoints,
        batch_size=batch_size,
        lr=lr,
        data_seeds=[derive_seed(seed, "pretrain-data")],
        evaluate={"train_eval": train_eval, "test": test},
        on_checkpoint=on_checkpoint,
        device=on,
    )
    history = pd.DataFrame(rows)
    write_csv(history, history_path)
    return history


#: Head size of a ``random`` source (no file to read it from): ImageNet's, or CIFAR-10's.
RANDOM_HEAD = {False: 1000, True: 10}


def source_spec(
    arch: str, *, cifar: bool = False, image_size: int | None = None, num_classes: int | None = 1000
):
    """The :class:`~transferability.models.ModelSpec` of a configured source."""
    from transferability.models import ModelSpec

    return ModelSpec.create(arch, num_classes, cifar=cifar, image_size=image_size)


#: Test images of the pre-training dataset on which a source trained here is evaluated (its
#: ``source_accuracy``; the first ones of the test split).
SOURCE_EVAL_SAMPLES = 2000


def pretrain_weights(
    dataset_path: str | Path,
    out_path: str | Path,
    out_info: str | Path | None = None,
    *,
    arch: str,
    cifar: bool = False,
    image_size: int | None = None,
    seed: int = 0,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    threads: int = 1,
    device: str = "auto",
) -> None:
    """Train ``arch`` on an MNIST-like dataset (grey images as 3 channels at the model's input
    size, ImageNet-normalised) for ``steps`` Adam steps and write a plain state-dict file — the
    kind of file a user brings for an external source, loaded the same way afterwards.

    Adam, not the thesis's SGD: a deep VGG without batch norm does not get off the ground with
    SGD (lr 0.01, momentum 0.9) in a few hundred steps (vgg_tiny on FashionMNIST: loss still
    2.30 after 300 steps, 1.21 with Adam).

    ``out_info``: a JSON file with what the baselines read
    (:mod:`transferability.evaluation.baselines`):
    ``pretrain_samples`` (steps × batch size) and ``source_accuracy`` (test accuracy on the
    first :data:`SOURCE_EVAL_SAMPLES` test images of the dataset)."""
    import torch
    import torch.nn.functional as F

    from transferability.artifacts import atomic_path
    from transferability.data.arrays import load_dataset
    from transferability.models import build_model, input_spec
    from transferability.training.loop import configure_torch, derive_seed

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    spec = source_spec(arch, cifar=cifar, image_size=image_size, num_classes=dataset.num_classes)
    model = build_model(spec, seed).to(on).train()
    inputs = input_spec(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(derive_seed(seed, arch, "vgg-weights"))
    torch.manual_seed(derive_seed(seed, arch, "vgg-dropout"))  # the classifier's dropout
    images = torch.from_numpy(dataset.train_x)
    labels = torch.from_numpy(dataset.train_y)
    loss_sum = torch.zeros((), device=on)
    for _ in range(steps):
        idx = torch.randint(len(labels), (batch_size,), generator=generator)
        x = grey_to_rgb(images[idx], inputs).to(on)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels[idx].to(on))
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
    log.info(
        "trained %s on %s for %d steps: mean loss %.4f",
        arch,
        dataset.name,
        steps,
        float(loss_sum) / steps,
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_path) as tmp:
        torch.save(state, tmp)
    if out_info is not None:
        model.eval()
        test_x = torch.from_numpy(dataset.test_x[:SOURCE_EVAL_SAMPLES])
        test_y = torch.from_numpy(dataset.test_y[:SOURCE_EVAL_SAMPLES])
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(test_y), 256):
                x = grey_to_rgb(test_x[start : start + 256], inputs).to(on)
                predicted = model(x).argmax(1).cpu()
                correct += int((predicted == test_y[start : start + 256]).sum())
        info = {"dataset": dataset.name, "pretrain_samples": steps * batch_size,
                "source_accuracy": correct / len(test_y), "eval_samples": len(test_y)}  # fmt: skip
        with atomic_path(out_info) as tmp:
            Path(tmp).write_text(json.dumps(info, indent=1) + "\n")
        log.info("source accuracy on %d test images: %.4f", len(test_y), info["source_accuracy"])


def _baseline_facts(model, weights: str, info, source_accuracy: float | None) -> dict:
    """``param_count``, ``source_accuracy`` and ``pretrain_samples`` of a loaded source."""
    from transferability.models.weights import is_weight_name, weight_accuracy

    recorded = json.loads(Path(info).read_text()) if info else {}
    accuracy = recorded.get("source_accuracy", source_accuracy)
    if accuracy is None and is_weight_name(weights):
        accuracy = weight_accuracy(weights)
    samples = recorded.get("pretrain_samples", 0 if weights == "random" else None)
    return {
        "param_count": sum(p.numel() for p in model.parameters()),
        "source_accuracy": math.nan if accuracy is None else float(accuracy),
        "pretrain_samples": math.nan if samples is None else int(samples),
    }


def load_source(
    weights: str,
    out_checkpoint: str | Path,
    out_history: str | Path | None = None,
    *,
    source: str,
    seed: int,
    arch: str,
    cifar: bool = False,
    image_size: int | None = None,
    encoder: bool = False,
    remap: Mapping[str, str] | None = None,
    allow_download: bool = False,
    info: str | Path | None = None,
    source_accuracy: float | None = None,
) -> None:
    """Check and load a source's weights (a file, a torchvision weight name, or ``"random"``:
    seeded initialisation) into its architecture and save it as the track's checkpoint
    ``…/seed{seed}/final.pt`` with the metadata needed to rebuild it. ``encoder``: keep no
    head (the file's head, if any, is ignored; e.g. SegNet's VGG16-BN encoder).

    The one-row description (``out_history``) also holds what the baselines read
    (:mod:`transferability.evaluation.baselines`): ``param_count``; ``source_accuracy`` from
    ``info``
    (the JSON :func:`pretrain_weights` writes), else the config's ``source_accuracy``, else a
    torchvision weight's ImageNet acc@1; ``pretrain_samples`` from ``info`` (0 for random
    weights); each NaN when unknown."""
    from transferability.artifacts import save_checkpoint
    from transferability.models import load_model
    from transferability.training.loop import derive_seed

    spec = source_spec(
        arch,
        cifar=cifar,
        image_size=image_size,
        num_classes=RANDOM_HEAD[cifar or arch == "vgg_tiny"],
    )
    model = load_model(
        spec.with_classes(None) if encoder else spec,
        weights,
        remap=remap,
        allow_download=allow_download,
        seed=derive_seed(seed, source, "random"),
        encoder=encoder,
    )
    described = {"source": source, "seed": seed, "step": "final", "arch": arch, "cifar": cifar}
    described["num_classes"] = model.spec.num_classes
    if image_size is not None:
        described["image_size"] = image_size
    described["weights"] = str(weights)
    described.update(_baseline_facts(model, weights, info, source_accuracy))
    meta = {**model.spec.meta(), **described, "version": __version__}
    save_checkpoint(out_checkpoint, model.state_dict(), meta)
    if out_history is not None:  # the track's "pretrain" table: what each source is
        write_csv(pd.DataFrame([described]), out_history)
    log.info("source %s: %s weights %s -> %s", source, arch, weights, out_checkpoint)
