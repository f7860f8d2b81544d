"""``transferability rank``: rank candidate models for a target without fine-tuning (SPEC §12).

Given a target — a known dataset name (its test split), an image folder with one sub-folder
per class, or a torchvision dataset root — and candidate models (checkpoints written by the
workflow, plain weight files or torchvision weight names of any architecture of
:mod:`transferability.models`), extract one layer for a class-balanced subset, compute the
chosen metrics and rank the models by one of them.

Nothing here is a second implementation of the workflow: the subset comes from
:func:`~transferability.data.arrays.balanced_subset` (datasets) or
:func:`~transferability.data.folders.extraction_subset` (folders), CNN inputs from
:func:`~transferability.training.loop.to_input`, other inputs from the image tracks' extraction
transform (:func:`~transferability.data.folders.build_transform`), the activation files from
:func:`~transferability.jobs.extract.record_layers` (in a temporary folder, streamed: memory stays
bounded for any layer) and the values from :func:`~transferability.jobs.metric_jobs.metric_table`
(so an
undefined metric is NaN with the same note as in the workflow's tables). Aggregate metrics
(``c56``) are computed over the ranked models, as the workflow computes them over its models.

Every problem the user can fix (unreadable model, unknown name, wrong image size, too few
samples per class) raises :class:`RankError` with a message naming the file or value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transferability.data.arrays import DATASET_ROOT, KNOWN_DATASETS

__all__ = [
    "CNN_INPUT_SIZE",
    "DEFAULT_METRICS",
    "Candidate",
    "RankError",
    "RankResult",
    "Target",
    "default_layer",
    "extract",
    "format_table",
    "load_candidate",
    "load_target",
    "rank_models",
    "write_table_csv",
]

#: Metrics ranked by default (the thesis's conclusion and the literature's usual set).
DEFAULT_METRICS: tuple[str, ...] = ("rsa", "logme", "leep", "nce", "hscore_reg")
#: Side of the grey images the thesis CNN takes.
CNN_INPUT_SIZE = 28
#: Images per forward pass (CNN: one tensor; other models: the batch of the DataLoader).
CNN_BATCH = 1000
IMAGE_BATCH = 16


class RankError(ValueError):
    """A problem with the user's input (model file, target, names, sizes), named in the message."""


# --------------------------------------------------------------------------- target


@dataclass(frozen=True, eq=False)
class Target:
    """The class-balanced samples every candidate model sees.

    ``kind`` is ``"dataset"`` (``images``: uint8 (n, 28, 28) from the test split,
    ``sample_index``: rows of that split) or ``"folder"`` (``root`` and ``paths`` relative to it,
    ``sample_index``: positions in the folder's sorted listing). ``labels`` are 0..K-1 in the order
    of ``classes``; samples are ordered by (label, index).
    """

    name: str
    kind: str
    labels: np.ndarray
    sample_index: np.ndarray
    classes: tuple[str, ...]
    per_class: int
    seed: int
    images: np.ndarray | None = None
    root: Path | None = None
    paths: tuple[str, ...] = ()
    format: str = "imagefolder"

    @property
    def n(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        where = "test split" if self.kind == "dataset" else f"image folder {self.root}"
        return (
            f"{self.name} ({where}): {self.n} images = {self.per_class} per class x "
            f"{len(self.classes)} classes, seed {self.seed}"
        )


def _short_classes(classes: list[str], counts: np.ndarray, per_class: int) -> list[str]:
    return [f"{c}: {int(k)}" for c, k in zip(classes, counts, strict=True) if k < per_class]


def load_target(
    target: str | os.PathLike,
    *,
    per_class: int = 50,
    seed: int = 0,
    data_dir: str | os.PathLike = DATASET_ROOT,
    format: str = "imagefolder",
    allow_download: bool = False,
) -> Target:
    """Choose ``per_class`` samples of every class of ``target`` (seeded, as the workflow does).

    ``format``: the layout of a folder target (:data:`transferability.data.layouts.FORMATS`:
    class folders, or a torchvision dataset root such as ``cifar10``; downloaded only with
    ``allow_download``).

    ``target``: a name in :data:`~transferability.data.arrays.KNOWN_DATASETS` (read from
    ``<data_dir>/<name>/data.npz``, test split, :func:`balanced_subset`) or an image folder
    (listing and subset as the VGG track: :func:`list_image_folder`, :func:`extraction_subset`
    over the whole folder). A known name wins over a folder of that name (write ``./mnist``).

    Raises :class:`RankError`: unknown name and no such folder (known names listed), dataset
    file missing or corrupt, a class with fewer than ``per_class`` samples (classes and counts
    named), or a folder without usable class folders.
    """
    from transferability.data.arrays import balanced_subset, dataset_path, load_dataset

    if per_class < 1:
        raise RankError(f"--per-class must be >= 1, got {per_class}")
    text = os.fspath(target)
    if text in KNOWN_DATASETS:
        path = dataset_path(text, data_dir)
        try:
            ds = load_dataset(path)
        except (FileNotFoundError, ValueError) as err:
            raise RankError(str(err)) from err
        classes = [str(c) for c in range(ds.num_classes)]  # the class ids are the names
        counts = np.bincount(ds.test_y, minlength=ds.num_classes)
        short = _short_classes(classes, counts, per_class)
        if short:
            raise RankError(
                f"target {text}: need {per_class} test images per class (--per-class), but "
                f"class(es) have fewer: {', '.join(short)}"
            )
        index = balanced_subset(ds.test_y, per_class, seed, num_classes=ds.num_classes)
        return Target(
            name=text,
            kind="dataset",
            labels=ds.test_y[index],
            sample_index=index,
            classes=tuple(classes),
            per_class=per_class,
            seed=seed,
            images=ds.test_x[index],
        )
    root = Path(text)
    if not root.is_dir() and not (allow_download and format != "imagefolder"):
        raise RankError(
            f"target {text!r} is neither a known dataset ({', '.join(KNOWN_DATASETS)}) nor an "
            "image folder (a directory with one sub-folder of images per class)"
        )
    from transferability.data.folders import extraction_subset
    from transferability.data.layouts import list_target

    try:
        paths, labels, classes = list_target(root, format, allow_download=allow_download)
    except (OSError, ValueError) as err:
        raise RankError(str(err)) from err
    counts = np.bincount(labels, minlength=len(classes))
    short = _short_classes([repr(c) for c in classes], counts, per_class)
    if short:
        raise RankError(
            f"image folder {root}: need {per_class} images per class (--per-class), but class "
            f"folder(s) hold fewer: {', '.join(short)}"
        )
    # The whole folder is the target: every image is a candidate for the subset.
    index = pd.DataFrame(
        {"path": paths, "label": labels, "class": [classes[i] for i in labels], "split": "test"}
    )
    chosen = extraction_subset(index, per_class=per_class, seed=seed, split="test")
    return Target(
        name=root.name or text,
        kind="folder",
        labels=chosen["label"].to_numpy(dtype=np.int64),
        sample_index=chosen.index.to_numpy(dtype=np.int64),
        classes=tuple(classes),
        per_class=per_class,
        seed=seed,
        root=root,
        paths=tuple(chosen["path"]),
        format=format,
    )


# --------------------------------------------------------------------------- candidates


@dataclass(eq=False)
class Candidate:
    """A loaded candidate model (any family of :mod:`transferability.models`)."""

    label: str
    path: Path
    model: Any  # torch.nn.Module with .spec
    meta: dict = field(default_factory=dict)
    weights: str | None = None  # a torchvision weight name: its own input transform

    @property
    def kind(self) -> str:
        """``"cnn"`` (the thesis CNN: 28 × 28 grey inputs) or ``"image"`` (RGB transforms)."""
        return "cnn" if self.model.spec.arch == "thesis_cnn" else "image"

    @property
    def layers(self) -> tuple[str, ...]:
        from transferability.models import layer_names

        return layer_names(self.model)

    @property
    def head_layer(self) -> str | None:
        """The layer whose outputs are the source head's logits (None: no head)."""
        from transferability.models import head_layer

        return head_layer(self.model)


def default_layer(candidate: Candidate) -> str:
    """``fc1`` for the thesis CNN, ``fc7`` for a VGG with classifier, ``pool5`` for a VGG
    encoder, else ``penultimate`` (the pooled features the peers rank with)."""
    if candidate.kind == "cnn":
        return "fc1"
    if candidate.model.spec.arch.startswith("vgg"):
        return "fc7" if "fc7" in candidate.layers else "pool5"
    return "penultimate"


def _read_error(path: Path, err: Exception) -> RankError:
    text = str(err)
    if "Weights only load failed" in text or "UnpicklingError" in text:
        detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), "")
        return RankError(
            f"model file {path} holds pickled code or objects other than tensors"
            + (f" ({detail})" if detail else "")
            + "; refused: checkpoints are read with weights_only=True, so nothing in them runs"
        )
    first = text.split(". ")[0].removeprefix(f"cannot read checkpoint {path}: ")
    return RankError(
        f"cannot read model file {path}: it is truncated, corrupted or not a PyTorch "
        f"checkpoint ({first})"
    )


def load_candidate(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    arch: str | None = None,
    image_size: int | None = None,
    allow_download: bool = False,
) -> Candidate:
    """Load a model and rebuild it (eval mode, CPU).

    Without ``arch``: a checkpoint written by the workflow (``{'state_dict', 'meta'}``; the meta
    names the architecture, thesis CNN checkpoints have ``num_classes`` only). With ``arch``: a
    plain weight file (a state dict, e.g. saved from a torchvision model) or a torchvision
    weight name (``ResNet18_Weights.IMAGENET1K_V1``, read from the local torch hub cache) of
    that architecture. The label is ``name``, or ``"<source> seed<seed> step<step>"`` from the
    meta (else the file name).

    Raises :class:`RankError` naming the file when it is missing, truncated, holds pickled
    code, or does not fit its architecture (every mismatching key and shape listed).
    """
    from transferability.artifacts import load_checkpoint
    from transferability.models import ModelError, ModelSpec, family_of, load_model

    if arch is not None:
        try:
            model = load_model(
                ModelSpec.create(arch, image_size=image_size),
                str(path),
                allow_download=allow_download,
            )
        except FileNotFoundError as err:
            raise RankError(str(err)) from err
        except ModelError as err:
            raise RankError(f"model {path} (--arch {arch}): {err}") from err
        weights = str(path)
        return Candidate(name or Path(weights).name, Path(weights), model.eval(), {}, weights)
    path = Path(path)
    if not path.is_file():
        raise RankError(f"model file {path} does not exist")
    try:
        state, meta = load_checkpoint(path)
    except ValueError as err:
        if "not a transferability checkpoint" in str(err):
            raise RankError(
                f"model file {path} is not a checkpoint of this workflow (expected a dict with "
                "'state_dict' and 'meta'); for a plain weight file, give its architecture "
                "(--arch resnet18)"
            ) from err
        raise _read_error(path, err) from err
    if not isinstance(state, Mapping) or not isinstance(meta, Mapping):
        raise RankError(f"model file {path}: 'state_dict' and 'meta' must be dicts")
    meta = dict(meta)
    if "arch" not in meta and not ({"conv1.weight", "fc2.weight"} <= set(state)):
        keys = ", ".join(sorted(state)[:6]) + (", ..." if len(state) > 6 else "")
        raise RankError(
            f"model file {path}: unknown layout (state keys [{keys}]"
            f"; meta keys {sorted(meta)}); expected a checkpoint whose meta names its 'arch' "
            "or a thesis CNN checkpoint (conv1/conv2/fc1/fc2 and meta num_classes)"
        )
    try:
        spec = ModelSpec.from_meta(meta)
        family = family_of(spec)
        model = family.build(spec, 0)
        family.load_state(model, state, f"model file {path}")
    except (ModelError, ValueError, TypeError) as err:
        raise RankError(f"model file {path}: the weights do not fit its meta: {err}") from err
    model.eval()
    return Candidate(name or _meta_label(meta, path), path, model, meta)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(err).__name__


def _meta_label(meta: Mapping, path: Path) -> str:
    if all(k in meta for k in ("source", "seed", "step")):
        return f"{meta['source']} seed{meta['seed']} step{meta['step']}"
    return path.name


def _unique_labels(candidates: list[Candidate]) -> None:
    """Make labels unique: repeated ones get the file path appended."""
    seen: dict[str, int] = {}
    for c in candidates:
        seen[c.label] = seen.get(c.label, 0) + 1
    for c in candidates:
        if seen[c.label] > 1:
            c.label = f"{c.label} [{c.path}]"


# --------------------------------------------------------------------------- extraction


def _cnn_images(target: Target) -> np.ndarray:
    """uint8 (n, 28, 28) images of the target for the CNN; folder images converted to grey."""
    if target.images is not None:
        return target.images
    from PIL import Image

    from transferability.data.layouts import open_image

    out = np.empty((target.n, CNN_INPUT_SIZE, CNN_INPUT_SIZE), dtype=np.uint8)
    for i, rel in enumerate(target.paths):
        path = target.root / rel
        try:
            with open_image(target.root, rel, target.format) as image:
                if image.size != (CNN_INPUT_SIZE, CNN_INPUT_SIZE):
                    w, h = image.size
                    raise RankError(
                        f"image {path} is {w}x{h}; the thesis CNN needs {CNN_INPUT_SIZE}x"
                        f"{CNN_INPUT_SIZE} grey-scale images (resize the folder first)"
                    )
                out[i] = np.asarray(image.convert("L"), dtype=np.uint8)
        except RankError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise RankError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return out


def _transform_inputs(candidate: Candidate, resize: int | None, crop: int | None):
    """The images an RGB model takes: its own (:func:`transferability.models.input_spec`: a
    weight name's transform, a timm model's pretrained config, ``image_size``, 32 for CIFAR
    VGGs, else 256 → 224) with the given resize and crop."""
    from transferability.models import input_spec, model_inputs

    own = input_spec(candidate.model.spec, candidate.weights)
    inputs = model_inputs(candidate.model.spec, resize, crop, weights=candidate.weights)
    resize, crop = inputs.resize, inputs.crop
    if own.fixed_size and crop != own.crop:
        raise RankError(
            f"model {candidate.label} ({candidate.path}) takes {own.crop}x{own.crop} inputs, "
            f"but the crop is {crop} (--crop, or the config's transforms)"
        )
    if crop < 16 or resize < crop:
        raise RankError(f"need --resize >= --crop >= 16, got resize {resize}, crop {crop}")
    return inputs


def _check_layer(candidate: Candidate, layer: str) -> None:
    if layer not in candidate.layers:
        raise RankError(
            f"model {candidate.label} ({candidate.path}) has no layer {layer!r}; its layers: "
            f"{', '.join(candidate.layers)}"
        )


def _batches(
    candidate: Candidate,
    target: Target,
    *,
    resize: int | None,
    crop: int | None,
    batch_size: int | None,
):
    """The target's images as the model takes them, in sample order, batch by batch.

    CNN: :func:`to_input` of the 28×28 grey images (a folder's images are converted with PIL
    ``L``; another size raises :class:`RankError` naming the file). Other models: the image
    tracks' extraction transform (``build_transform`` with the model's own
    sizes and statistics by default, :func:`_transform_inputs`)."""
    import torch

    if candidate.kind == "cnn":
        from transferability.training.loop import to_input

        images = _cnn_images(target)
        step = batch_size or CNN_BATCH
        return (to_input(images[i : i + step]) for i in range(0, len(images), step))
    from transferability.data.folders import ImageFolderSplit, build_transform
    from transferability.data.targets import ArrayImages

    inputs = _transform_inputs(candidate, resize, crop)
    transform = build_transform(False, resize=inputs.resize, crop=inputs.crop, inputs=inputs)
    if target.images is not None:
        dataset = ArrayImages(target.images, target.labels, transform)
    else:
        frame = pd.DataFrame({"path": list(target.paths), "label": target.labels})
        dataset = ImageFolderSplit(target.root, frame, transform, format=target.format)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size or IMAGE_BATCH)
    return (x for x, _ in _named_errors(loader))


def extract_files(
    candidate: Candidate,
    target: Target,
    layer: str,
    out_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    resize: int | None = None,
    crop: int | None = None,
    batch_size: int | None = None,
) -> tuple[Path, Path | None]:
    """Write ``layer`` of ``candidate`` on ``target`` and the source head's logits to activation
    files in ``out_dir``, with the workflow's own writer
    (:func:`transferability.jobs.extract.record_layers`: streamed batch by batch, so a large layer
    never has to fit in memory). Returns ``(layer file, logits file or None without a head)``.
    Eval mode, ``torch.inference_mode``."""
    import torch

    from transferability.jobs.extract import record_layers

    _check_layer(candidate, layer)
    out_dir = Path(out_dir)
    model = candidate.model.to(torch.device(device)).eval()
    layer_file = out_dir / f"{layer}.h5"
    outputs = {layer: layer_file}
    logits_file = None
    if candidate.head_layer is not None:
        logits_file = layer_file if layer in ("logits", candidate.head_layer) else None
        if logits_file is None:
            logits_file = outputs["logits"] = out_dir / "logits.h5"
    attrs = {"model": str(candidate.path), "source": candidate.label, "target": target.name}
    record_layers(
        model,
        _batches(candidate, target, resize=resize, crop=crop, batch_size=batch_size),
        outputs,
        labels=target.labels,
        sample_index=target.sample_index,
        attrs=attrs,
        compression=None,
    )
    return layer_file, logits_file


def extract(
    candidate: Candidate,
    target: Target,
    layer: str,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(activations, logits)`` of ``candidate`` on ``target`` in memory: the layer's outputs
    as float32 (n, *layer_shape) and the source head's logits (n, classes), None without a head
    (:func:`extract_files` through a temporary folder; ``options`` as there)."""
    import tempfile

    from transferability.artifacts import read_activations

    with tempfile.TemporaryDirectory(prefix="rank-") as tmp:
        layer_file, logits_file = extract_files(candidate, target, layer, tmp, **options)
        values, _, attrs = read_activations(layer_file)
        activations = values.reshape((len(values), *attrs["layer_shape"]))
        logits = None if logits_file is None else read_activations(logits_file)[0]
    return activations, logits


def _named_errors(loader):
    try:
        yield from loader
    except (FileNotFoundError, ValueError) as err:  # ImageFolderSplit names the file
        raise RankError(str(err)) from err


# --------------------------------------------------------------------------- ranking


@dataclass
class RankResult:
    """The ranking: ``table`` (columns ``rank, model, <metric>...``, sorted by rank),
    ``rows`` (tidy: model, checkpoint, layer, metric, value, note — one per model and metric,
    as :func:`~transferability.jobs.metric_jobs.metric_table` plus the model), ``directions``
    (metric → higher is better), the ranking metric ``by`` and the ``target``."""

    table: pd.DataFrame
    rows: pd.DataFrame
    directions: dict[str, bool]
    by: str
    target: Target
    metrics: tuple[str, ...]


def _check_metrics(metrics: Sequence[str], by: str | None) -> tuple[list[str], str]:
    from transferability.metrics import check_names

    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise RankError("no metrics given")
    try:
        check_names(metrics)
    except ValueError as err:
        raise RankError(str(err)) from err
    by = by or metrics[0]
    if by not in metrics:
        raise RankError(f"--by {by!r} is not among the metrics {metrics}")
    return metrics, by


def rank_models(
    models: Sequence[str | os.PathLike | Candidate],
    target: str | os.PathLike | Target,
    *,
    names: Sequence[str] | None = None,
    layer: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: str | None = None,
    per_class: int = 50,
    seed: int = 0,
    data_dir: str | os.PathLike = DATASET_ROOT,
    device: str = "cpu",
    threads: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    batch_size: int | None = None,
    target_format: str = "imagefolder",
    allow_download: bool = False,
) -> RankResult:
    """Rank ``models`` (checkpoint paths or loaded :class:`Candidate`) for ``target``.

    ``target``: dataset name, image folder or a :class:`Target` (then ``per_class``, ``seed``
    and ``data_dir`` are unused). ``layer``: one layer for every model (default
    :func:`default_layer` per model). ``by``: ranking metric (default the first), oriented by
    its ``higher_is_better``; NaN ranks last; ties share the better rank. ``threads``: torch
    intra-op threads (None: leave as is). Aggregate metrics (``c56``) are computed over the
    ranked models from their inputs (computed when not requested).

    Raises :class:`RankError` on any input problem (see :func:`load_target`,
    :func:`load_candidate`, :func:`extract`).
    """
    import tempfile

    from transferability.jobs.metric_jobs import metric_table
    from transferability.metrics import METRICS, metric_names

    metrics, by = _check_metrics(metrics, by)
    if not models:
        raise RankError("no candidate models given")
    if names is not None and len(names) != len(models):
        raise RankError(f"got {len(names)} --name for {len(models)} --model; give one per model")
    _set_up_torch(device, threads)
    candidates = []  # models first: a bad file or layer fails before any data is read
    for i, m in enumerate(models):
        c = m if isinstance(m, Candidate) else load_candidate(m)
        if names is not None:
            c.label = names[i]
        candidates.append(c)
    _unique_labels(candidates)
    layers = {c.label: layer or default_layer(c) for c in candidates}
    for c in candidates:
        _check_layer(c, layers[c.label])
    if not isinstance(target, Target):
        target = load_target(
            target,
            per_class=per_class,
            seed=seed,
            data_dir=data_dir,
            format=target_format,
            allow_download=allow_download,
        )

    aggregates = [m for m in metrics if m in metric_names("aggregate")]
    needed = list(dict.fromkeys(metrics + [i for a in aggregates for i in METRICS[a].inputs]))
    layer_metrics = [m for m in needed if m in metric_names("layer") + metric_names("features")]
    prediction_metrics = [m for m in needed if m in metric_names("prediction")]
    rows = []
    for c in candidates:  # the workflow's own files and metric table, in a temporary folder
        with tempfile.TemporaryDirectory(prefix="rank-") as tmp:
            layer_file, logits_file = extract_files(
                c, target, layers[c.label], tmp, device=device, resize=resize, crop=crop,
                batch_size=batch_size,
            )  # fmt: skip
            table = metric_table([layer_file], layer_metrics + prediction_metrics, logits_file)
        for row in table.to_dict("records"):
            rows.append({"model": c.label, "checkpoint": str(c.path), **row})
    tidy = pd.DataFrame(rows, columns=["model", "checkpoint", "layer", "metric", "value", "note"])
    if aggregates:
        tidy = pd.concat([tidy, _aggregate_rows(tidy, candidates, aggregates)], ignore_index=True)
    tidy = tidy[tidy["metric"].isin(metrics)].reset_index(drop=True)
    directions = {m: bool(METRICS[m].higher_is_better) for m in metrics}
    table = _wide(tidy, [c.label for c in candidates], metrics, by, directions[by])
    return RankResult(table, tidy, directions, by, target, tuple(metrics))


def _set_up_torch(device: str, threads: int | None) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise RankError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RankError("--device cuda, but torch sees no CUDA device on this machine")
    if threads is not None:
        if threads < 1:
            raise RankError(f"--threads must be >= 1, got {threads}")
        from transferability.training.loop import configure_torch

        configure_torch(threads, device)


def _aggregate_rows(
    tidy: pd.DataFrame, candidates: list[Candidate], aggregates: list[str]
) -> pd.DataFrame:
    """Aggregate metrics (``c56``) over the ranked models, each from its per-model inputs."""
    from transferability.metrics import METRICS

    rows = []
    for name in aggregates:
        fn = METRICS[name]
        inputs = []
        for metric in fn.inputs:
            part = tidy[tidy["metric"] == metric].set_index("model")
            inputs.append(np.array([part.at[c.label, "value"] for c in candidates], dtype=float))
        layers = tidy[tidy["metric"] == fn.inputs[0]].set_index("model")["layer"]
        values = np.asarray(fn(*inputs), dtype=float)
        for c, value in zip(candidates, values, strict=True):
            rows.append(
                {
                    "model": c.label,
                    "checkpoint": str(c.path),
                    "layer": layers[c.label],
                    "metric": name,
                    "value": value,
                    "note": f"scaled over the {len(candidates)} ranked models",
                }
            )
    return pd.DataFrame(rows, columns=tidy.columns)


def _wide(
    tidy: pd.DataFrame, labels: list[str], metrics: list[str], by: str, higher: bool
) -> pd.DataFrame:
    wide = tidy.pivot(index="model", columns="metric", values="value").reindex(
        index=labels, columns=metrics
    )
    wide.columns.name = None
    key = wide[by] if higher else -wide[by]
    rank = key.rank(method="min", ascending=False, na_option="bottom").astype(int)
    wide = wide.reset_index()
    wide.insert(0, "rank", rank.to_numpy())
    order = np.lexsort((np.arange(len(wide)), wide["rank"].to_numpy()))
    return wide.iloc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- output


def _number(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "nan" if value is None or np.isnan(value) else str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.3e}"


def format_table(result: RankResult, *, arrows: bool = True) -> str:
    """The ranking as plain aligned text: a context line, the header (``rank, model,
    <metric>...``), a line with each metric's direction (``↑`` higher is better, ``↓`` lower;
    ``higher``/``lower`` when ``arrows`` is false), one line per model, then the notes of NaN or
    warned values."""
    up, down = ("↑", "↓") if arrows else ("higher", "lower")
    metrics = list(result.metrics)
    header = ["rank", "model", *metrics]
    direction = ["", "", *(up if result.directions[m] else down for m in metrics)]
    body = [
        [str(r["rank"]), str(r["model"]), *(_number(r[m]) for m in metrics)]
        for _, r in result.table.iterrows()
    ]
    widths = [max(len(row[i]) for row in [header, direction, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [cells[0].rjust(widths[0]), cells[1].ljust(widths[1])]
        parts += [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(parts).rstrip()

    layers = list(dict.fromkeys(result.rows.loc[result.rows["layer"] != "logits", "layer"]))
    by = result.by
    lines = [
        f"target: {result.target.describe()}",
        f"layer:  {', '.join(layers) or '(head outputs only)'}; ranked by {by} "
        f"({'higher' if result.directions[by] else 'lower'} is better)",
        "",
        line(header),
        line(direction),
        *(line(row) for row in body),
    ]
    from transferability.metrics import metric_names

    aggregate = result.rows["metric"].isin(metric_names("aggregate"))  # their note: the scaling
    notes = result.rows[result.rows["note"].astype(bool) & ~aggregate]
    if len(notes):
        lines += ["", "notes:"]
        lines += [f"  {r.model}: {r.metric}: {r.note}" for r in notes.itertuples()]
    return "\n".join(lines) + "\n"


def write_table_csv(result: RankResult, path: str | os.PathLike) -> None:
    """Write ``result.table`` (``rank, model, <metric>...``, values unrounded) atomically."""
    from transferability.artifacts import write_csv

    write_csv(result.table, path)
