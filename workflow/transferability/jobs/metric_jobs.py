"""Metric jobs: every configured metric of one model's activation files on one target, as
tidy rows (:func:`metric_table`); a metric that fails gives NaN with its reason in ``note``."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from transferability.artifacts import activation_shape, read_activations, read_attrs
from transferability.run.config import FEATURES_MAX_BYTES

log = logging.getLogger(__name__)


def _safely(metric, *inputs) -> tuple[float, str]:
    """``(value, note)``: NaN with the reason when the metric is undefined on these data, the
    warnings' text as note when it is defined (SPEC §10: one bad value never stops a table)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value, note = _scalar(metric(*inputs))
        except ValueError as err:
            value, note = math.nan, str(err)
        except Exception as err:
            plugin = getattr(metric, "plugin", None)
            if plugin is None:  # a built-in metric's bug: never hide it
                raise
            raise RuntimeError(
                f"metric {metric.metric_name!r} of plugin {plugin} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
    if caught and not note:
        note = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return value, note


def _scalar(value) -> tuple[float, str]:
    """``(value, "")`` for one finite number or NaN; NaN with the reason for anything else (a
    plugin's array, string or infinity must not reach the correlations)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return math.nan, f"undefined: the metric returned {type(value).__name__}, not a number"
    if array.shape != ():
        return (
            math.nan,
            f"undefined: the metric returned an array of shape {array.shape}, not a number",
        )
    if np.isinf(array):
        return math.nan, f"undefined: the metric returned {float(array)}"
    return float(array), ""


#: The layer whose values never depend on the model's weights: the images as fed to the network.
INPUT_LAYER = "input"


def _input_digest(path: str | Path) -> str:
    """A digest of an input layer's activations and labels (the key of its metric rows)."""
    import hashlib

    features, labels, _ = read_activations(path)
    digest = hashlib.blake2b(digest_size=16)
    for array in (features, labels):
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def metric_table(
    activation_files: Sequence[str | Path],
    metrics: Sequence[str],
    logits_file: str | Path | None = None,
    reuse: dict[tuple, list[dict]] | None = None,
    features_max_bytes: int = FEATURES_MAX_BYTES,
) -> pd.DataFrame:
    """Tidy rows (layer, metric, value, note) for one model on one target.

    Layer metrics come from one streamed pass over each activation file (plus a row-block pass
    when featuremap statistics are needed); prediction metrics (LEEP, NCE) from the source
    head's logits, reported under layer ``logits``. Aggregate metrics (``c56``) compare models
    and are added by :func:`build_tables`. A metric that is undefined on these data is NaN with
    the reason in ``note``; unreadable files and NaN/Inf activations raise, naming the file.

    ``reuse``: a dict shared by the calls for several models (e.g. the checkpoints of one run);
    the ``input`` layer's rows are kept there under a digest of its values and labels and reused
    when another model's input layer has the same ones (every checkpoint of a run sees the same
    images, so its rows are computed once per run, not once per checkpoint).

    ``features`` metrics (plugins) receive each layer in memory; a layer larger than
    ``features_max_bytes`` raises before it is read.
    """
    from transferability.metrics import layer_stats_from_h5, metric_names, stats_options

    layer_metrics = [m for m in metrics if m in metric_names("layer")]
    feature_metrics = [m for m in metrics if m in metric_names("features")]
    prediction_metrics = [m for m in metrics if m in metric_names("prediction")]
    options = stats_options(layer_metrics)
    rows = []
    for path in activation_files if layer_metrics or feature_metrics else []:
        layer = read_attrs(path).get("layer", Path(path).stem)
        key = None
        if reuse is not None and layer == INPUT_LAYER:
            key = (_input_digest(path), tuple(layer_metrics + feature_metrics))
            if key in reuse:
                rows += [dict(row) for row in reuse[key]]
                continue
        layer_rows = []
        if layer_metrics:
            stats = layer_stats_from_h5(path, **options)
            layer_rows += layer_metric_rows(layer, stats, layer_metrics)
        if feature_metrics:
            layer_rows += feature_metric_rows(layer, path, feature_metrics, features_max_bytes)
        if key is not None:
            reuse[key] = [dict(row) for row in layer_rows]
        rows += layer_rows
    if prediction_metrics and logits_file is None:  # an encoder-only source has no head
        for name in prediction_metrics:
            note = "undefined: the source model has no classifier head (no logits)"
            rows.append({"layer": "logits", "metric": name, "value": math.nan, "note": note})
    elif prediction_metrics:
        logits, labels, _ = read_activations(logits_file)
        rows += prediction_metric_rows(softmax(logits), labels, prediction_metrics)
    return pd.DataFrame(rows, columns=["layer", "metric", "value", "note"])


def _metric_row(layer: str, name: str, value_note: tuple[float, str]) -> dict:
    value, note = value_note
    return {"layer": layer, "metric": name, "value": value, "note": note}


def layer_metric_rows(layer: str, stats, names: Sequence[str]) -> list[dict]:
    """Rows (layer, metric, value, note) of layer metrics ``names`` from one
    :class:`~transferability.metrics.LayerStats`; undefined values are NaN with the reason."""
    from transferability.metrics import METRICS

    return [_metric_row(layer, name, _safely(METRICS[name], stats)) for name in names]


def feature_metric_rows(
    layer: str, path: str | Path, names: Sequence[str], max_bytes: int = FEATURES_MAX_BYTES
) -> list[dict]:
    """Rows of ``features`` metrics ``names``: each receives the layer of activation file
    ``path`` in memory as float32 (n, d) and the labels. ``ValueError`` names the file when the
    layer is larger than ``max_bytes``."""
    from transferability.metrics import METRICS

    shape = activation_shape(path)
    size = int(np.prod(shape, dtype=np.int64)) * 4
    if size > max_bytes:
        raise ValueError(
            f"{path}: layer {layer!r} holds {shape[0]} × {int(np.prod(shape[1:]))} float32 = "
            f"{size / 2**30:.2f} GiB, more than the {max_bytes / 2**30:g} GiB bound of features "
            f"metrics {list(names)} (config features_max_gib)"
        )
    features, labels, _ = read_activations(path)
    features = np.ascontiguousarray(features.reshape(len(features), -1), dtype=np.float32)
    features.setflags(write=False)  # one array for every metric: none may change it
    return [_metric_row(layer, name, _safely(METRICS[name], features, labels)) for name in names]


def prediction_metric_rows(
    probs: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> list[dict]:
    """Rows of prediction metrics (LEEP, NCE) from the source head's softmax, layer ``logits``."""
    from transferability.metrics import METRICS

    return [_metric_row("logits", name, _safely(METRICS[name], probs, labels)) for name in names]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
