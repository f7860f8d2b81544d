"""Featuremap metrics S1–S6 and the combined index C5,6 of Ueno & Kondo (seed ``002_…``,
"A base model selection methodology for efficient fine-tuning", ICLR 2020 submission).

All six are computed on post-ReLU featuremaps ``F_i`` of shape (c, h, w) of the target images
(the paper: the last convolutional layer, ten randomly chosen images per class); flat (n, d)
activations are treated as c = d channels of 1 × 1 (SPEC §7).

* S1–S3 (hypothesis H1, "easy to classify") are functions of the column-centred Gram matrix of
  :class:`~transferability.metrics.stats.LayerStats` and share
  :func:`~transferability.metrics.representation.sum_of_squares` with the SS ratio.
* S5 (sparsity) follows from the per-sample non-zero counts of the same streaming pass.
* S4 (channel correlation) and S6 (steepness) need every element of one image at once: they
  come from :func:`~transferability.metrics.per_image.sample_stats`, which ``stats.py`` calls
  on row blocks in a second pass when ``with_sample_stats=True``.
* :func:`c56` combines S5 and S6 over the compared models (an *aggregate* metric).

Each public ``sN(fmaps, labels)`` builds the statistics of in-memory activations and calls the
registered statistics form ``_sN(stats)``; the workflow streams the statistics from HDF5
instead (same numbers, bounded memory).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from transferability.metrics._base import register_metric, require_classes, to_numpy, warn
from transferability.metrics.per_image import sample_stats
from transferability.metrics.representation import sum_of_squares
from transferability.metrics.stats import LayerStats, layer_stats

__all__ = ["c56", "s1", "s2", "s3", "s4", "s5", "s6", "sample_stats"]


def _samples(stats: LayerStats, key: str, metric: str) -> np.ndarray:
    if stats.sample_stats is None:
        raise ValueError(
            f"{metric} needs per-image featuremap statistics, but the statistics were gathered "
            "without with_sample_stats=True"
        )
    return np.asarray(stats.sample_stats[key], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# S1–S3: between/within sums of squares and the pseudo-F
# --------------------------------------------------------------------------------------------


@register_metric("s1", higher_is_better=True)
def _s1(stats: LayerStats) -> float:
    require_classes(stats.counts)
    ssw, tss = sum_of_squares(stats)
    return max(tss - ssw, 0.0)


@register_metric("s2", higher_is_better=False)
def _s2(stats: LayerStats) -> float:
    require_classes(stats.counts, 1)
    return sum_of_squares(stats)[0]


@register_metric("s3", higher_is_better=True)
def _s3(stats: LayerStats) -> float:
    require_classes(stats.counts)
    n, k = stats.n, len(stats.counts)
    if n <= k:
        raise ValueError(f"S3 needs more samples than classes, got {n} samples in {k} classes")
    ssw, tss = sum_of_squares(stats)
    ssb = max(tss - ssw, 0.0)
    if tss <= 0.0:
        warn("S3: total sum of squares is 0 (all samples identical); S3 is NaN")
        return math.nan
    if ssw <= 0.0:
        warn("S3: within-class sum of squares is 0 (every class collapsed to a point); S3 is inf")
        return math.inf
    return (ssb / (k - 1)) / (ssw / (n - k))


def s1(fmaps: Any, labels: Any) -> float:
    """S1: between-class sum of squares ``Σ_k n_k Σ_d (F̄ − F̄_k)²`` over all elements d
    (Ueno & Kondo §3.1, "sum of variance of class average": inter-class discreteness).

    Equals ``TSS − SSW`` (:func:`~transferability.metrics.representation.sum_of_squares`).
    Direction: higher is better. ``fmaps`` (n, c, h, w) or (n, d); needs two classes
    (``ValueError``).
    """
    return _s1(layer_stats(fmaps, labels))


def s2(fmaps: Any, labels: Any) -> float:
    """S2: within-class sum of squares ``Σ_k Σ_{i∈k} Σ_d (F_i − F̄_k)²`` (Ueno & Kondo §3.2,
    "sum of class-wise featuremap variance"; the k-means objective).

    Direction: lower is better. Defined for one class too (then the total sum of squares).
    """
    return _s2(layer_stats(fmaps, labels))


def s3(fmaps: Any, labels: Any) -> float:
    """S3: pseudo-F ``[S1/(K−1)] / [S2/(N−K)]`` (Calinski & Harabasz 1974; Ueno & Kondo §3.3),
    equal to ``sklearn.metrics.calinski_harabasz_score`` on the flattened featuremaps.

    Direction: higher is better. Needs two classes and more samples than classes
    (``ValueError``). All samples identical gives ``nan``, S2 = 0 with S1 > 0 (every class
    collapsed to a point) gives ``inf``, each with a :class:`MetricWarning` (scikit-learn
    returns 1.0 when S2 = 0).
    """
    return _s3(layer_stats(fmaps, labels))


# --------------------------------------------------------------------------------------------
# S4–S6: per-image statistics
# --------------------------------------------------------------------------------------------


@register_metric("s4", higher_is_better=False)
def _s4(stats: LayerStats) -> float:
    return float(_samples(stats, "s4", "S4").sum())


@register_metric("s5", higher_is_better=False)
def _s5(stats: LayerStats) -> float:
    # From the streaming pass's non-zero counts: no second pass needed (equals the mean of
    # sample_stats' "nonzero_fraction").
    return float(np.mean(stats.row_nonzero / stats.n_features))


@register_metric("s6", higher_is_better=False)
def _s6(stats: LayerStats) -> float:
    values = _samples(stats, "s6", "S6")
    dense = int(np.count_nonzero(stats.row_nonzero == stats.n_features))
    if dense:
        warn(
            f"S6: {dense} of {stats.n} images have no zero element; their near-maximum count is "
            "divided by 1 instead of 0"
        )
    return float(values.mean())


def s4(fmaps: Any, labels: Any = None) -> float:
    """S4: ``Σ_images Σ_{channels i≠j} |Pearson(F(i,:,:), F(j,:,:))|`` (Ueno & Kondo §3.4,
    correlation between the channels of each image's featuremap; hypothesis H2, "divergent
    information").

    Direction: lower is better. Conventions: ordered pairs i ≠ j as the formula reads (each
    unordered pair counted twice; an image's value lies in [0, c(c−1)]); the *sum* over images
    as in SPEC §7 (it grows with n, which is the same for every compared model on one target
    subset, so rankings equal those of the mean). A pair involving a channel that is constant
    over the h·w positions (a dead channel, or every channel of a 1 × 1 map, so flat layers
    give 0) contributes 0: no linear dependence is measurable, and ``np.corrcoef``'s NaN would
    poison the whole sum. ``labels`` are accepted for a uniform signature and only checked.
    """
    return _s4(layer_stats(fmaps, labels, with_sample_stats=True))


def s5(fmaps: Any, labels: Any = None) -> float:
    """S5: mean over images of the fraction of non-zero featuremap elements (Ueno & Kondo §3.5,
    sparsity; hypothesis H3). Exact zeros only (−0.0 counts as zero); negative values count as
    non-zero.

    Direction: lower is better. Label-free (``labels`` only checked if given).
    """
    return _s5(layer_stats(fmaps, labels))


def s6(fmaps: Any, labels: Any = None) -> float:
    """S6: mean over images of ``#{high elements} / #{zero elements}`` (Ueno & Kondo §3.6,
    steepness; hypothesis H3), where a high element is one "whose difference from the maximum
    element value [of that image] is less than 1": ``max − x < 1`` (the maximum included, an
    element at exactly ``max − 1`` not). The margin 1 is absolute, so S6 depends on the scale
    of the activations.

    Direction: lower is better. Zero denominator: an image with no exact zero divides by 1
    instead (with a :class:`MetricWarning`). Fewer zeros should never make S6 better, and
    dividing by 1 keeps that order (a dense image scores like one with a single zero, the
    worst finite denominator) where skipping such images would reward dense models and ``inf``
    would make the mean useless. Label-free (``labels`` only checked if given).
    """
    return _s6(layer_stats(fmaps, labels, with_sample_stats=True))


for _fn, _better in ((s1, True), (s2, False), (s3, True), (s4, False), (s5, False), (s6, False)):
    _fn.higher_is_better = _better  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# C5,6: combination over compared models
# --------------------------------------------------------------------------------------------


def _scaled(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Min → −1, max → +1 over ``values[valid]``; 0 there if those are all equal; NaN
    elsewhere."""
    out = np.full(values.shape, np.nan)
    if valid.any():
        v = values[valid]
        lo, hi = v.min(), v.max()
        out[valid] = 0.0 if hi == lo else 2.0 * (v - lo) / (hi - lo) - 1.0
    return out


@register_metric("c56", higher_is_better=True, kind="aggregate", inputs=("s5", "s6"))
def c56(s5_values: Any, s6_values: Any, alpha: float = 0.574) -> np.ndarray:
    """C5,6(α) = (1 − α)·Ŝ5 + α·Ŝ6 over the compared models (Ueno & Kondo, "Combining two
    metrics"; α = 0.574 gives their 0.426·S5 + 0.574·S6, the best combination on average).

    Ŝ5 and Ŝ6 are S5 and S6 scaled linearly to [−1, 1] over the compared models (min → −1,
    max → +1) and sign-flipped so that higher = better, i.e.
    ``c56 = −((1 − α)·scaled(S5) + α·scaled(S6))``: the model with the lowest S5 and S6 gets 1,
    the one with the highest both −1. (The paper scaled over all architectures and targets it
    studied; here the scale is the set of models passed in.)

    Parameters
    ----------
    s5_values, s6_values
        One S5 and one S6 value per compared model (same length, same order).
    alpha
        Weight of S6, in [0, 1].

    Returns
    -------
    numpy.ndarray
        One value per compared model (float64) — an array, not a float: the metric only exists
        relative to the other models. Direction: higher is better.

    Notes
    -----
    If all (finite) values of S5, or of S6, are equal, that term is 0 for every model (no
    spread to scale; the other term alone ranks the models). A non-finite S5 or S6 gives NaN
    for that model and is left out of the other models' scaling.
    """
    a = np.asarray(to_numpy(s5_values), dtype=np.float64)
    b = np.asarray(to_numpy(s6_values), dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(
            f"S5/S6 values must be 1-D (one per model), got shapes {a.shape} and {b.shape}"
        )
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} S5 values but {len(b)} S6 values")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    valid = np.isfinite(a) & np.isfinite(b)
    return -((1.0 - alpha) * _scaled(a, valid) + alpha * _scaled(b, valid))
