"""Stage 1 — transferability metrics (SPEC §7): pure functions on NumPy/torch arrays, their
registry, and user plugins (:mod:`.plugins`). May import :mod:`transferability.artifacts` only:
no model, training or job code.

Layer metrics take one layer's activations ``features`` (n, d) — or (n, c, h, w) featuremaps —
and the target ``labels``; prediction metrics take the source head's softmax ``probs`` (n, z).
Each function has ``higher_is_better``. The workflow computes every layer metric of one
activation file from one streamed :class:`~transferability.metrics.stats.LayerStats`
(:func:`compute_layer_metrics`), which gives the same numbers as the array functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transferability.metrics._base import (
    METRICS,
    MetricWarning,
    check_names,
    metric_names,
    register_metric,
)
from transferability.metrics.featuremap import c56, s1, s2, s3, s4, s5, s6, sample_stats
from transferability.metrics.linear import hscore, hscore_reg, logme
from transferability.metrics.peers_classifier import nleep, sfda
from transferability.metrics.peers_geometry import etran, etran_parts, gbc, parc, transrate
from transferability.metrics.prediction import leep, nce
from transferability.metrics.representation import (
    TwoNNResult,
    correlation_rdm,
    rsa_delta,
    ss_ratio,
    two_nn_id,
    two_nn_id_details,
    two_nn_id_subsampled,
)
from transferability.metrics.stats import LayerStats, layer_stats, layer_stats_from_h5

__all__ = [
    "METRICS",
    "LayerStats",
    "MetricWarning",
    "TwoNNResult",
    "c56",
    "s1",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
    "sample_stats",
    "compute_layer_metrics",
    "etran",
    "etran_parts",
    "gbc",
    "hscore",
    "hscore_reg",
    "leep",
    "logme",
    "nce",
    "compute_metrics",
    "correlation_rdm",
    "layer_stats",
    "layer_stats_from_h5",
    "metric_names",
    "nleep",
    "parc",
    "register_metric",
    "rsa_delta",
    "sfda",
    "ss_ratio",
    "transrate",
    "two_nn_id",
    "two_nn_id_details",
    "two_nn_id_subsampled",
]

#: Layer metrics that need the per-image featuremap statistics (a second pass over the file).
NEEDS_SAMPLE_STATS: set[str] = {"s4", "s6"}
#: Layer metrics that need each sample's logsumexp over its features (gathered in the pass).
NEEDS_ROW_LOGSUMEXP: set[str] = {"etran"}


def _layer_names(names: Iterable[str] | str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    check_names(names)
    wrong = [n for n in names if METRICS[n].kind != "layer"]  # type: ignore[attr-defined]
    if wrong:
        raise ValueError(f"{wrong} are not layer metrics (layer metrics: {metric_names('layer')})")
    return names


def metrics_from_stats(stats: LayerStats, names: Iterable[str]) -> dict[str, float]:
    """Every requested layer metric from one :class:`LayerStats`."""
    return {name: float(METRICS[name](stats)) for name in names}


def compute_metrics(features: Any, labels: Any, names: Iterable[str] | str) -> dict[str, float]:
    """Layer metrics ``names`` (config names) of in-memory activations; ``ValueError`` lists the
    known names for an unknown one."""
    names = _layer_names(names)
    stats = layer_stats(features, labels, **stats_options(names))
    return metrics_from_stats(stats, names)


def compute_layer_metrics(path: str | Path, names: Iterable[str] | str) -> dict[str, float]:
    """Layer metrics ``names`` of one activation file, streamed (bounded memory)."""
    names = _layer_names(names)
    stats = layer_stats_from_h5(path, **stats_options(names))
    return metrics_from_stats(stats, names)


def stats_options(names: Iterable[str]) -> dict[str, bool]:
    """What the statistics pass must gather for the layer metrics ``names``."""
    names = set(names)
    return {
        "with_sample_stats": bool(NEEDS_SAMPLE_STATS & names),
        "with_row_logsumexp": bool(NEEDS_ROW_LOGSUMEXP & names),
    }
