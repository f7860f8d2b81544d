"""Activation jobs: one model on one target's extraction subset, every requested layer into its
own HDF5 file (:func:`record_layers`, streamed batch by batch), for the thesis CNN's checkpoints
(:func:`extract`) and an image track's sources (:func:`extract_images`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from transferability import __version__
from transferability.data.targets import ArrayTarget, IndexedTarget

log = logging.getLogger(__name__)


def record_layers(
    model,
    batches: Iterable,
    outputs: Mapping[str, str | Path],
    *,
    labels: np.ndarray,
    sample_index: np.ndarray,
    attrs: Mapping[str, object],
    compression: str | None = "lzf",
) -> int:
    """Feed ``batches`` (input tensors, in sample order) through ``model`` and write each layer
    of ``outputs`` (layer → activation file; ``"logits"``: the source head's output, stored
    uncompressed) row block by row block: a layer never has to fit in memory for all samples.
    One forward pass per batch, stopping after the last requested layer. Returns the rows.

    Any model of :mod:`transferability.models` works; an encoder without head has no logits.
    """
    import contextlib

    import torch

    from transferability.artifacts import activation_writer
    from transferability.models import forward_layers, head_layer

    head = head_layer(model)
    if "logits" in outputs and head is None:
        raise ValueError(f"{attrs.get('model', 'the model')} has no classifier: no logits to write")
    node = {name: head if name == "logits" else name for name in outputs}
    wanted = list(dict.fromkeys(node.values()))
    device = next(model.parameters()).device
    with contextlib.ExitStack() as stack, torch.inference_mode():
        sinks: dict[str, object] = {}
        row = 0
        for x in batches:
            values = forward_layers(model, x.to(device), wanted)
            if not sinks:
                for name, path in outputs.items():
                    sinks[name] = stack.enter_context(
                        activation_writer(
                            path,
                            len(labels),
                            tuple(values[node[name]].shape[1:]),
                            labels,
                            sample_index,
                            {**attrs, "layer": name},
                            compression=None if name == "logits" else compression,
                        )
                    )
            n = x.shape[0]
            for name, sink in sinks.items():
                sink[row : row + n] = values[node[name]].reshape(n, -1).float().cpu().numpy()
            row += n
    return row


def extract(
    checkpoint_paths: Mapping[str, str | Path],
    dataset_path: str | Path,
    subset_csv: str | Path,
    activation_paths: Mapping[tuple[str, str], str | Path],
    logits_paths: Mapping[str, str | Path],
    *,
    target: str,
    compression: str | None = "lzf",
    threads: int = 1,
) -> None:
    """Feed the target subset through every checkpoint and store each layer's activations
    (``activation_paths[(step, layer)]``) and the source head's logits (``logits_paths[step]``)."""
    from transferability.models import model_from_checkpoint
    from transferability.training.loop import configure_torch, to_input

    configure_torch(threads, "cpu")  # a forward pass over ≤ a few thousand images
    data = ArrayTarget(dataset_path)
    subset = pd.read_csv(subset_csv)
    index = subset["sample_index"].to_numpy()
    labels = subset["label"].to_numpy()
    x = to_input(data.images("test")[index])
    layers = tuple(dict.fromkeys(layer for _, layer in activation_paths))
    for step, checkpoint_path in checkpoint_paths.items():
        model, meta = model_from_checkpoint(checkpoint_path)
        attrs = {
            "model": str(checkpoint_path),
            "source": meta["source"],
            "seed": meta["seed"],
            "step": step,
            "target": target,
            "version": __version__,
            # provenance: how the model was trained and how this subset was extracted
            "protocol": meta.get("protocol", ""),
            "extraction": json.dumps({"subset": str(subset_csv), "compression": compression}),
        }
        outputs = {layer: activation_paths[(step, layer)] for layer in layers}
        outputs["logits"] = logits_paths[step]
        record_layers(
            model, [x], outputs, labels=labels, sample_index=index, attrs=attrs,
            compression=compression,
        )  # fmt: skip
        log.info(
            "extracted %s step %s: %d samples, layers %s", meta["source"], step, len(index), layers
        )


def extract_images(
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
    (:func:`transferability.jobs.extract.record_layers`)."""
    from transferability.data.transforms import build_transform
    from transferability.models import model_from_checkpoint, model_inputs
    from transferability.training.loop import configure_torch

    on = configure_torch(threads, device)
    model, meta = model_from_checkpoint(checkpoint)
    model.to(on).eval()
    # The extraction subset is a split index of its own (plus sample_index: the rows' place in
    # the target's index), drawn from one split.
    subset = IndexedTarget(root, subset_csv, target_format)
    splits = sorted(set(subset.index["split"]))
    if len(splits) != 1:
        raise ValueError(
            f"extraction subset {subset_csv}: rows of one split expected, got {splits}"
        )
    rows = subset.rows(splits[0])
    inputs = model_inputs(model.spec, resize=resize, crop=crop)
    transform = build_transform(False, resize=inputs.resize, crop=inputs.crop, inputs=inputs)
    loader = subset.loader(splits[0], batch_size=batch_size, transform=transform)
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
    count = record_layers(
        model,
        (x for x, _ in loader),
        outputs,
        labels=rows["label"].to_numpy(dtype=np.int64),
        sample_index=rows["sample_index"].to_numpy(dtype=np.int64),
        attrs=attrs,
        compression=compression,
    )
    log.info(
        "extracted %s on %s: %d samples, layers %s", meta["source"], target, count, list(outputs)
    )
