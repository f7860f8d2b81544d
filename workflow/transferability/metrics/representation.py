"""Representation metrics of the thesis (§2.2): TwoNN intrinsic dimension, sum-of-squares ratio
and RSA delta, each computed from :class:`~transferability.metrics.stats.LayerStats`.

Each public ``f(features[, labels])`` builds the statistics of in-memory activations and calls
the registered statistics form ``_f(stats)``; the workflow streams the statistics from HDF5
instead (same numbers, bounded memory).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from transferability.metrics._base import register_metric, require_classes, warn
from transferability.metrics.stats import LayerStats, layer_stats

__all__ = [
    "TwoNNResult",
    "correlation_rdm",
    "rsa_delta",
    "ss_ratio",
    "two_nn_id",
    "two_nn_id_details",
    "two_nn_id_subsampled",
]


# --------------------------------------------------------------------------------------------
# TwoNN intrinsic dimension
# --------------------------------------------------------------------------------------------


class TwoNNResult(NamedTuple):
    """Result of :func:`two_nn_id_details`.

    ``id``: the TwoNN estimate (``nan`` if undefined); ``n_used``: points with a defined ratio
    ``mu = r2 / r1`` (``n − n_duplicates``), the denominator of the empirical CDF; ``n_fit``:
    the ``int(n_used·(1 − discard))`` smallest ratios in the fit; ``n_duplicates``: points
    dropped because ``r1 = 0`` (every copy of a duplicated row).
    """

    id: float
    n_used: int
    n_fit: int
    n_duplicates: int


def _r1_r2(stats: LayerStats, idx: np.ndarray | None = None):
    """First/second neighbour distances of the non-duplicated samples among ``idx``."""
    d2 = stats.sq_distances
    groups = stats.duplicate_of
    if idx is not None:
        d2, groups = d2[np.ix_(idx, idx)], groups[idx]
    _, inverse, copies = np.unique(groups, return_inverse=True, return_counts=True)
    single = copies[inverse] == 1
    n_dup = int((~single).sum())
    d2 = d2[single].copy()
    d2[np.arange(len(d2)), np.flatnonzero(single)] = np.inf  # exclude the point itself
    if d2.shape[1] < 3 or len(d2) == 0:
        return np.empty(0), np.empty(0), n_dup
    two = np.sqrt(np.partition(d2, 1, axis=1)[:, :2])
    return two[:, 0], two[:, 1], n_dup


def _two_nn_fit(
    r1: np.ndarray, r2: np.ndarray, n_dup: int, discard: float
) -> tuple[TwoNNResult, list[str]]:
    """TwoNN line fit as in scikit-dimension 0.5 ``TwoNN(discard_fraction=discard)``."""
    reasons: list[str] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = r2 / r1
    bad = ~np.isfinite(mu)
    if bad.any():  # distinct rows at distance 0 after rounding: treat like duplicates
        n_dup += int(bad.sum())
        mu = mu[~bad]
    if n_dup:
        reasons.append(
            f"TwoNN: dropped {n_dup} points with zero distance to their nearest neighbour "
            "(duplicate samples)"
        )
    n_used = len(mu)
    n_fit = int(n_used * (1 - discard))  # same expression as scikit-dimension
    n_fit = min(n_fit, n_used - 1)  # F = 1 would give −log 0; only reached with discard = 0
    if n_fit < 2:
        reasons.append(f"TwoNN: only {n_used} points with a defined ratio r2/r1; ID is NaN")
        return TwoNNResult(math.nan, n_used, max(n_fit, 0), n_dup), reasons
    log_mu = np.log(np.sort(mu)[:n_fit])
    y = -np.log1p(-np.arange(1, n_fit + 1) / n_used)
    sxx = float(log_mu @ log_mu)
    if sxx == 0.0:
        reasons.append("TwoNN: all fitted ratios r2/r1 equal 1 (equidistant neighbours); ID is NaN")
        return TwoNNResult(math.nan, n_used, n_fit, n_dup), reasons
    return TwoNNResult(float(log_mu @ y) / sxx, n_used, n_fit, n_dup), reasons


def _check_discard(discard: float) -> float:
    discard = float(discard)
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1), got {discard}")
    return discard


def _two_nn_details(stats: LayerStats, discard: float = 0.1) -> TwoNNResult:
    discard = _check_discard(discard)
    if stats.n < 3:
        raise ValueError(f"TwoNN needs at least 3 samples, got {stats.n}")
    result, reasons = _two_nn_fit(*_r1_r2(stats), discard)
    for reason in reasons:
        warn(reason)
    return result


@register_metric("id", higher_is_better=False)
def _two_nn_id(stats: LayerStats, discard: float = 0.1) -> float:
    return _two_nn_details(stats, discard).id


def two_nn_id_details(features: Any, discard: float = 0.1) -> TwoNNResult:
    """:func:`two_nn_id` with bookkeeping: ``(id, n_used, n_fit, n_duplicates)``."""
    return _two_nn_details(layer_stats(features, None), discard)


def two_nn_id(features: Any, discard: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017, as used by Ansuini et al. 2019).

    For each sample, ``r1``/``r2`` are the Euclidean distances to its first and second nearest
    neighbours (float64, from the Gram matrix of the centred samples; itself excluded) and
    ``mu = r2 / r1``. Under local uniformity ``mu`` is Pareto with shape ``d``:
    ``−log(1 − F(mu)) = d · log(mu)``. With the ``N`` ratios sorted ascending and
    ``F(mu_i) = i / N``, ``d`` is the least-squares slope through the origin of ``−log(1 − F)``
    against ``log mu`` over the ``int(N·(1 − discard))`` smallest ratios — exactly
    scikit-dimension 0.5 ``TwoNN(discard_fraction=discard)``.

    Direction: lower is better (``higher_is_better = False``).

    Parameters
    ----------
    features
        Activations, shape (n, d) with n >= 3 (ndim > 2 is flattened).
    discard
        Fraction of the largest ratios left out of the fit, in [0, 1).

    Returns
    -------
    float
        The estimated intrinsic dimension.

    Notes
    -----
    Byte-identical samples (``r1 = 0``; every copy) have no ratio and are dropped with a
    :class:`MetricWarning`; :func:`two_nn_id_details` reports how many (scikit-dimension keeps
    near-copies whose Gram distance rounds to ~1e-7 and so differs on duplicated data; Ansuini
    et al. also drop ``r1 = r2``, which is kept here as ``mu = 1``). Fewer than 2 points in the
    fit, or all fitted ratios equal to 1, give ``nan`` with a warning.
    """
    return two_nn_id_details(features, discard).id


def two_nn_id_subsampled(
    features: Any, fraction: float = 0.9, repeats: int = 50, seed: int = 0, discard: float = 0.1
) -> float:
    """Mean TwoNN ID over random subsamples (Ansuini et al. 2019: 50 subsamples of 90 %).

    Each repeat draws ``max(3, int(fraction · n))`` samples without replacement
    (``numpy.random.default_rng(seed)``); distances come from one shared Gram matrix. Returns the
    mean over repeats with a finite ID (``nan`` with a :class:`MetricWarning` if none). Lower is
    better.
    """
    discard = _check_discard(discard)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    stats = layer_stats(features, None)
    if stats.n < 3:
        raise ValueError(f"TwoNN needs at least 3 samples, got {stats.n}")
    rng = np.random.default_rng(seed)
    size = max(3, int(fraction * stats.n))
    ids, dup_repeats = [], 0
    for _ in range(int(repeats)):
        result, _ = _two_nn_fit(*_r1_r2(stats, rng.choice(stats.n, size, replace=False)), discard)
        dup_repeats += result.n_duplicates > 0
        ids.append(result.id)
    values = np.asarray(ids)
    finite = np.isfinite(values)
    if dup_repeats:
        warn(f"TwoNN: duplicate samples dropped in {dup_repeats} of {repeats} subsamples")
    if not finite.any():
        warn("TwoNN: ID undefined in every subsample")
        return math.nan
    if not finite.all():
        warn(f"TwoNN: ID undefined in {int((~finite).sum())} of {repeats} subsamples; ignored")
    return float(values[finite].mean())


two_nn_id.higher_is_better = False  # type: ignore[attr-defined]
two_nn_id_details.higher_is_better = False  # type: ignore[attr-defined]
two_nn_id_subsampled.higher_is_better = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Sum of squares
# --------------------------------------------------------------------------------------------


def sum_of_squares(stats: LayerStats) -> tuple[float, float]:
    """``(SSW, TSS)`` with squared Euclidean norms, from the centred Gram matrix:
    ``TSS = tr K``, ``SSW = tr K − Σ_k 1_kᵀ K 1_k / n_k``. Shared with S1–S3."""
    k = stats.centred_gram
    onehot = stats.class_indicator()
    tss = float(np.trace(k))
    between = float(np.sum(np.einsum("ik,ij,jk->k", onehot, k, onehot) / stats.counts))
    return max(tss - between, 0.0), tss


@register_metric("ss", higher_is_better=False)
def _ss_ratio(stats: LayerStats) -> float:
    require_classes(stats.counts)
    ssw, tss = sum_of_squares(stats)
    if tss <= 0.0:
        warn("SS: total sum of squares is 0 (all samples identical); SS is NaN")
        return math.nan
    return ssw / tss


def ss_ratio(features: Any, labels: Any) -> float:
    """Sum-of-squares ratio SSW / TSS (thesis §2.2.2; ANOVA decomposition, Fisher 1921).

    ``SSW = Σ_k Σ_{i∈k} ‖x_i − x̄_k‖²`` and ``TSS = Σ_i ‖x_i − x̄‖²`` with *squared* Euclidean
    norms. The thesis's eq. 2.1 writes ``‖x_j − c_i‖`` without the square, but the identity
    ``TSS = SSW + SSB`` (its eq. 2.3) only holds with it, so the square is used. Equivalently
    ``SSW/TSS = 1 / (1 + CH·(K−1)/(n−K))`` with CH the Calinski–Harabasz score.

    Direction: lower is better (0 = every class collapsed to a point, ~1 = labels unrelated to
    the geometry). Needs two classes (``ValueError``); TSS = 0 gives ``nan`` with a
    :class:`MetricWarning`.
    """
    return _ss_ratio(layer_stats(features, labels))


ss_ratio.higher_is_better = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Representational similarity analysis
# --------------------------------------------------------------------------------------------


def _correlation_rdm(stats: LayerStats, keep: np.ndarray) -> np.ndarray:
    """1 − Pearson correlation between the (non-constant) samples ``keep``, clipped to [0, 2]."""
    g = stats.row_centred_gram[np.ix_(keep, keep)]
    norm = np.sqrt(np.diag(g))
    rdm = 1.0 - g / norm[:, None] / norm[None, :]
    np.clip(rdm, 0.0, 2.0, out=rdm)
    rdm = 0.5 * (rdm + rdm.T)
    np.fill_diagonal(rdm, 0.0)
    return rdm


def correlation_rdm(features: Any) -> np.ndarray:
    """Representational dissimilarity matrix ``1 − corr(x_i, x_j)`` between samples (rows).

    Equals ``scipy.spatial.distance.squareform(pdist(features, "correlation"))``, diagonal
    exactly 0, values clipped to [0, 2]. Rows and columns of constant samples (correlation
    undefined) are ``nan`` off the diagonal, as in SciPy, with a :class:`MetricWarning`.
    """
    stats = layer_stats(features, None)
    const = stats.constant_rows
    rdm = np.full((stats.n, stats.n), np.nan)
    keep = np.flatnonzero(~const)
    if const.any():
        warn(f"RDM: {int(const.sum())} constant samples have undefined correlations (NaN)")
    if len(keep):
        rdm[np.ix_(keep, keep)] = _correlation_rdm(stats, keep)
    np.fill_diagonal(rdm, 0.0)
    return rdm


@register_metric("rsa", higher_is_better=True)
def _rsa_delta(stats: LayerStats) -> float:
    require_classes(stats.counts)
    const = stats.constant_rows
    if const.any():
        warn(f"RSA: dropped {int(const.sum())} constant samples (zero variance)")
    keep = np.flatnonzero(~const)
    _, codes, counts = np.unique(stats.codes[keep], return_inverse=True, return_counts=True)
    if len(counts) < 2:
        warn(f"RSA: {len(counts)} class(es) left after dropping constant samples; RSA is NaN")
        return math.nan
    n = len(codes)
    n_within = int((counts.astype(np.int64) ** 2).sum()) - n
    if n_within == 0:
        warn("RSA: no class has two samples, so there is no within-class pair; RSA is NaN")
        return math.nan
    rdm = _correlation_rdm(stats, keep)
    onehot = np.zeros((n, len(counts)))
    onehot[np.arange(n), codes.reshape(-1)] = 1.0
    within = float(np.trace(onehot.T @ rdm @ onehot))  # the strict diagonal is exactly 0
    between = float(rdm.sum()) - within
    return between / (n * n - n - n_within) - within / n_within


def rsa_delta(features: Any, labels: Any) -> float:
    """RSA delta: between-class minus within-class mean dissimilarity (thesis §2.2.3).

    The RDM is ``1 − Pearson correlation`` between samples (Kriegeskorte et al. 2008; see
    :func:`correlation_rdm`). With samples sorted by label, the within-class entries are the
    diagonal blocks without the strict diagonal and the between-class entries all off-diagonal
    blocks; the metric is ``mean(between) − mean(within)``, each pooled over entries. It does
    not depend on the order of the samples.

    Direction: higher is better; range [−2, 2] (2: classes perfectly anti-correlated and
    identical within, e.g. rows ``x`` and ``−x``; ~0 for random labels). Constant samples are
    dropped with a :class:`MetricWarning`; fewer than two classes left, or no within-class pair,
    give ``nan`` with a warning. Needs two classes (``ValueError``).
    """
    return _rsa_delta(layer_stats(features, labels))


rsa_delta.higher_is_better = True  # type: ignore[attr-defined]
