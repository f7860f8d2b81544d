"""One function per job of the image-folder tracks (SPEC §6.2: the thesis's VGG track, and the
model zoo of any torchvision architecture): source weights, target split, extraction,
fine-tuning. Every model goes through :mod:`transferability.families` (build, load, layers,
fine-tuning policy), so nothing here depends on the architecture.

Like :mod:`transferability.pipeline`, every function takes plain paths and settings, so it runs
without Snakemake. Models are rebuilt from a checkpoint's metadata (the
:class:`~transferability.families.ModelSpec`), which :func:`load_source` writes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from transferability import __version__
from transferability.artifacts import write_csv

log = logging.getLogger(__name__)

#: Head size of a ``random`` source (no file to read it from): ImageNet's, or CIFAR-10's.
RANDOM_HEAD = {False: 1000, True: 10}


def source_spec(
    arch: str, *, cifar: bool = False, image_size: int | None = None, num_classes: int | None = 1000
):
    """The :class:`~transferability.families.ModelSpec` of a configured source."""
    from transferability.families import ModelSpec

    return ModelSpec.create(arch, num_classes, cifar=cifar, image_size=image_size)


def model_inputs(spec, resize: int | None = None, crop: int | None = None):
    """The images ``spec``'s model takes (:func:`transferability.families.input_spec`: its
    statistics, interpolation and sizes) with the configured ``resize`` and ``crop`` where
    given (``config.image_transforms``; None leaves a timm model its own)."""
    from dataclasses import replace

    from transferability.families import input_spec

    own = input_spec(spec)
    crop = crop or own.crop
    return replace(own, resize=resize or (own.resize if crop == own.crop else crop), crop=crop)


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

    ``out_info``: a JSON file with what the baselines read (:mod:`transferability.baselines`):
    ``pretrain_samples`` (steps × batch size) and ``source_accuracy`` (test accuracy on the
    first :data:`SOURCE_EVAL_SAMPLES` test images of the dataset)."""
    import torch
    import torch.nn.functional as F

    from transferability.artifacts import atomic_path
    from transferability.data import load_dataset
    from transferability.families import build_model, input_spec
    from transferability.training import configure_torch, derive_seed

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


def grey_to_rgb(images, inputs):
    """uint8 grey images (n, h, w) → float (n, 3, crop, crop) normalised as the model's
    ``inputs`` (:class:`~transferability.families.InputSpec`) say: ImageNet statistics for
    torchvision models, a timm model's own."""
    import torch
    import torch.nn.functional as F

    size = inputs.crop
    x = images.to(torch.get_default_dtype()).div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(inputs.mean).view(1, 3, 1, 1)
    std = torch.tensor(inputs.std).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def split_target(
    root: str | Path,
    index_csv: str | Path,
    subset_csv: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    per_class: int = 30,
    subset_seed: int = 0,
    subset_split: str = "test",
    target_format: str = "imagefolder",
    allow_download: bool = False,
) -> pd.DataFrame:
    """The target's fixed 80/20 class-stratified split (``index_csv``: every model is fine-tuned
    and evaluated on the same images) and its extraction subset (``subset_csv``: ``per_class``
    images per class of ``subset_split``, with ``sample_index`` = their row in the split
    index)."""
    from transferability.imagefolder import extraction_subset, write_split_index

    index = write_split_index(
        root,
        index_csv,
        test_fraction=test_fraction,
        seed=seed,
        format=target_format,
        allow_download=allow_download,
    )
    subset = extraction_subset(index, per_class=per_class, seed=subset_seed, split=subset_split)
    subset = subset.rename_axis("sample_index").reset_index()
    write_csv(subset, subset_csv)
    log.info(
        "target %s: %d images, %d test, %d for extraction",
        root,
        len(index),
        int((index["split"] == "test").sum()),
        len(subset),
    )
    return subset


def _baseline_facts(model, weights: str, info, source_accuracy: float | None) -> dict:
    """``param_count``, ``source_accuracy`` and ``pretrain_samples`` of a loaded source."""
    from transferability.families.weights import is_weight_name, weight_accuracy

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
    (:mod:`transferability.baselines`): ``param_count``; ``source_accuracy`` from ``info``
    (the JSON :func:`pretrain_weights` writes), else the config's ``source_accuracy``, else a
    torchvision weight's ImageNet acc@1; ``pretrain_samples`` from ``info`` (0 for random
    weights); each NaN when unknown."""
    from transferability.artifacts import save_checkpoint
    from transferability.families import load_model
    from transferability.training import derive_seed

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


def extract(
    checkpoint: str | Path,
    root: str | Path,
    subset_csv: str | Path,
    activation_paths: Mapping[str, str | Path],
    logits_path: str | Path | None,
    *,
    target: str,
    resize: int | None,
    crop: int | None,
    batch_size: int = 16,
    compression: str | None = "lzf",
    target_format: str = "imagefolder",
    threads: int = 1,
    device: str = "cpu",
) -> None:
    """Feed the target's extraction subset through one model and write each requested layer
    (``activation_paths[layer]``) and, for models with a classifier, the source head's logits
    (:func:`transferability.pipeline.record_layers`)."""
    import torch

    from transferability.families import model_from_checkpoint
    from transferability.imagefolder import ImageFolderSplit, build_transform
    from transferability.pipeline import record_layers
    from transferability.training import configure_torch

    on = configure_torch(threads, device)
    model, meta = model_from_checkpoint(checkpoint)
    model.to(on).eval()
    subset = pd.read_csv(subset_csv)
    inputs = model_inputs(model.spec, resize, crop)
    transform = build_transform(False, resize=inputs.resize, crop=inputs.crop, inputs=inputs)
    dataset = ImageFolderSplit(root, subset, transform, format=target_format)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    outputs = dict(activation_paths)
    if logits_path is not None:
        outputs["logits"] = logits_path
    attrs = {
        "model": str(checkpoint),
        "source": meta["source"],
        "seed": meta["seed"],
        "step": "final",
        "target": target,
        "version": __version__,
    }
    rows = record_layers(
        model,
        (x for x, _ in loader),
        outputs,
        labels=subset["label"].to_numpy(),
        sample_index=subset["sample_index"].to_numpy(),
        attrs=attrs,
        compression=compression,
    )
    log.info(
        "extracted %s on %s: %d samples, layers %s", meta["source"], target, rows, list(outputs)
    )


def finetune(
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

    The fine-tuning model comes from :func:`transferability.families.finetune_model` under
    ``policy`` (default the thesis's VGG rule ``last_conv``: features transferred, a new
    classifier seeded by (seed, target), only the last conv layer and the classifier trained).
    With ``checkpoint=None`` the baseline ``scratch_arch`` is trained from scratch, all weights
    trainable. SGD with momentum, lr × ``lr_gamma`` every ``lr_step_epochs`` epochs, evaluation
    on the target's test split (centre crop) at the log-grid checkpoints.
    """
    import torch
    import torch.nn.functional as F

    from transferability.families import (
        build_model,
        finetune_model,
        model_from_checkpoint,
        train_mode,
    )
    from transferability.imagefolder import ImageFolderSplit, build_transform, read_split_index
    from transferability.schedule import resolve_checkpoints, steps_per_epoch
    from transferability.training import configure_torch, derive_seed

    on = configure_torch(threads, device)
    index = read_split_index(index_csv, root, format=target_format)
    train_rows = index[index["split"] == "train"].reset_index(drop=True)
    test_rows = index[index["split"] == "test"].reset_index(drop=True)
    if protocol.get("eval_samples"):
        test_rows = test_rows.sample(
            n=min(len(test_rows), int(protocol["eval_samples"])), random_state=0
        ).reset_index(drop=True)
    num_classes = int(index["label"].max()) + 1
    batch_size = int(protocol["batch_size"])
    per_epoch = steps_per_epoch(len(train_rows), batch_size)
    checkpoints = resolve_checkpoints(  # first: a grid that cannot work fails before any work
        list(protocol["checkpoints"]),
        len(train_rows),
        batch_size,
        context=f"target {target!r} (targets.{target}.checkpoints)",
    )
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
    inputs = model_inputs(model.spec, resize, crop)
    resize, crop = inputs.resize, inputs.crop
    train_transform = build_transform(True, resize=resize, crop=crop, extras=extras, inputs=inputs)
    train = ImageFolderSplit(root, train_rows, train_transform, format=target_format)
    test_transform = build_transform(False, resize=resize, crop=crop, inputs=inputs)
    test = ImageFolderSplit(root, test_rows, test_transform, format=target_format)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=batch_size,
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

    rows, done = [], 0
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
        rows.append(
            {
                "target": target,
                "source": source,
                "seed": seed,
                "pretrain_step": "final",
                "finetune_step": c.label,
                "batches": c.batches,
                "samples": c.samples,
                "epochs": c.epochs,
                "train_loss": float(loss_sum) / todo if todo else math.nan,
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
            }
        )
        loss_sum.zero_()
        log.info(
            "%s on %s, checkpoint %s: test accuracy %.4f", source, target, c.label, test_accuracy
        )
    curve = pd.DataFrame(rows)
    write_csv(curve, curve_path)
    return curve
