"""Shared pieces of the metric functions: warnings, the registry and input validation."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


class MetricWarning(UserWarning):
    """A metric dropped samples or returned NaN because the data were degenerate."""


#: Config name → registered metric (see :func:`register_metric`).
METRICS: dict[str, Callable[..., float]] = {}

#: What a registered metric is computed from:
#: ``"layer"``       one layer's :class:`~transferability.metrics.stats.LayerStats`;
#: ``"prediction"``  the source head's softmax outputs and the target labels;
#: ``"aggregate"``   values of other metrics over the compared models (e.g. ``c56``).
KINDS = ("layer", "prediction", "aggregate")


def register_metric(
    name: str, *, higher_is_better: bool, kind: str = "layer", inputs: tuple[str, ...] = ()
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: record ``higher_is_better``/``kind`` on the function registered under ``name``.

    ``aggregate`` metrics name the per-model metrics they combine in ``inputs``.
    ``layer`` metrics are registered in their statistics form ``f(stats: LayerStats) -> float``
    (the array form ``f(features, labels)`` is the public wrapper); ``prediction`` metrics as
    ``f(probs, labels) -> float``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        if name in METRICS and METRICS[name] is not fn:
            raise ValueError(f"metric name {name!r} is already registered")
        fn.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        fn.kind = kind  # type: ignore[attr-defined]
        fn.metric_name = name  # type: ignore[attr-defined]
        fn.inputs = tuple(inputs)  # type: ignore[attr-defined]
        METRICS[name] = fn
        return fn

    return decorator


def metric_names(kind: str | None = None) -> list[str]:
    """Registered metric names (of one kind), sorted."""
    return sorted(n for n, f in METRICS.items() if kind is None or f.kind == kind)  # type: ignore[attr-defined]


def check_names(names: list[str]) -> None:
    """Raise ``ValueError`` naming unknown metrics and listing the known ones."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        known = ", ".join(metric_names())
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}")


def warn(message: str) -> None:
    warnings.warn(message, MetricWarning, stacklevel=3)


def to_numpy(a: Any) -> np.ndarray:
    """``np.asarray`` that also takes torch tensors (detached, moved to CPU) without torch."""
    if hasattr(a, "detach") and hasattr(a, "cpu") and hasattr(a, "numpy"):
        t = a.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # bfloat16/float16 have no (or a lossy) NumPy path
        return t.numpy()
    return np.asarray(a)


def check_features(features: Any, *, min_samples: int = 1) -> np.ndarray:
    """Features as float64 (n, d); ndim > 2 is flattened. ``ValueError`` on bad input."""
    x = to_numpy(features)
    if x.ndim < 2:
        raise ValueError(
            f"features must be 2-D (n_samples, n_features), got an array of shape {x.shape}"
        )
    if x.dtype.kind not in "biuf":
        raise ValueError(f"features must be real numbers, got dtype {x.dtype}")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if d == 0:
        raise ValueError("features have no columns (n_features = 0)")
    if n < min_samples:
        raise ValueError(f"need at least {min_samples} samples, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN/Inf")
    return x


def check_labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, counts)``: labels mapped to 0..K-1 (sorted by value) and class sizes."""
    y = to_numpy(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got an array of shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"features have {n} samples but labels have {len(y)} entries")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise ValueError("labels must be integers (got non-integral floats)")
    elif y.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    _, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    return codes.reshape(-1), counts


def require_classes(counts: np.ndarray | None, minimum: int = 2) -> None:
    """``ValueError`` unless labels were given and hold at least ``minimum`` classes."""
    if counts is None:
        raise ValueError("this metric needs labels")
    if len(counts) < minimum:
        raise ValueError(f"need at least {minimum} distinct classes, got {len(counts)}")
