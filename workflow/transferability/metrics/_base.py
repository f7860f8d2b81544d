"""Shared pieces of the metric functions: warnings, the registry and input validation."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class MetricWarning(UserWarning):
    """A metric dropped samples or returned NaN because the data were degenerate."""


#: Config name → registered metric (see :func:`register_metric`).
METRICS: dict[str, Callable[..., float]] = {}

#: What a registered metric is computed from:
#: ``"layer"``       one layer's :class:`~transferability.metrics.stats.LayerStats`;
#: ``"prediction"``  the source head's softmax outputs and the target labels;
#: ``"aggregate"``   values of other metrics over the compared models (e.g. ``c56``);
#: ``"features"``    one layer's activations in memory, float32 (n, d), and the target labels
#:                   (for metrics that need every sample at once; bounded in size by the workflow).
KINDS = ("layer", "prediction", "aggregate", "features")

#: Names the tables step gives its own rows: trivial baselines and the QUANTA study's scores.
RESERVED_PREFIX = "baseline_"
RESERVED_NAMES = ("quanta",)

#: The plugin being loaded (:func:`plugin_registration`): its source and the names it registers.
_LOADING: list[tuple[str, list[str]]] = []


@contextlib.contextmanager
def plugin_registration(source: str) -> Iterator[list[str]]:
    """Within the block, :func:`register_metric` tags what it registers with ``source`` (a
    plugin file) and appends the names to the list yielded."""
    names: list[str] = []
    _LOADING.append((source, names))
    try:
        yield names
    finally:
        _LOADING.pop()


def unregister(names: list[str] | tuple[str, ...]) -> None:
    """Forget registered metrics (a plugin being reloaded after an edit)."""
    for name in names:
        METRICS.pop(name, None)


def register_metric(
    name: str, *, higher_is_better: bool, kind: str = "layer", inputs: tuple[str, ...] = ()
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: record ``higher_is_better``/``kind`` on the function registered under ``name``.

    ``aggregate`` metrics name the per-model metrics they combine in ``inputs``.
    ``layer`` metrics are registered in their statistics form ``f(stats: LayerStats) -> float``
    (the array form ``f(features, labels)`` is the public wrapper); ``prediction`` metrics as
    ``f(probs, labels) -> float``; ``features`` metrics as ``f(features, labels) -> float`` on
    float32 (n, d) activations. A metric that is undefined on the data raises ``ValueError``
    (the tables then hold NaN with the message).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"metric name must be a lower-case identifier, got {name!r}")
    if name.startswith(RESERVED_PREFIX) or name in RESERVED_NAMES:
        raise ValueError(
            f"metric name {name!r} is reserved (the tables' {RESERVED_PREFIX}* and "
            f"{', '.join(RESERVED_NAMES)} rows); choose another name"
        )

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        plugin = _LOADING[-1][0] if _LOADING else None
        if name in METRICS and METRICS[name] is not fn:
            owner = getattr(METRICS[name], "plugin", None)
            raise ValueError(
                f"metric name {name!r} is already registered "
                + (f"by plugin {owner}" if owner else "as a built-in metric")
                + "; choose another name"
            )
        fn.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        fn.kind = kind  # type: ignore[attr-defined]
        fn.metric_name = name  # type: ignore[attr-defined]
        fn.inputs = tuple(inputs)  # type: ignore[attr-defined]
        fn.plugin = plugin  # type: ignore[attr-defined]
        METRICS[name] = fn
        if _LOADING:
            _LOADING[-1][1].append(name)
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
