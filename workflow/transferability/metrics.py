"""Representation metrics on one layer's activations (SPEC §7, thesis §2.2).

Every metric is a pure NumPy function ``f(features[, labels]) -> float`` that accepts NumPy
arrays, anything :func:`numpy.asarray` takes, or CPU torch tensors, computes in float64 and
returns a Python float. Each carries the attributes

``higher_is_better``
    ``True`` if a larger value predicts better transfer.
``inputs``
    the kinds of its positional arguments, e.g. ``("features", "labels")``; used by
    :func:`compute_metrics` to call it.

and is listed in :data:`METRICS` under its config name. New metrics (H-score, LogME, LEEP,
S1–S6, ...) join with the :func:`register_metric` decorator.

Input rules shared by all metrics (one validation helper):

* ``features`` is ``(n, d)``; ``(n, c, h, w)`` or any other ``ndim > 2`` array is flattened to
  ``(n, -1)``; 0-D/1-D input raises ``ValueError``; NaN or Inf raises ``ValueError``.
* ``labels`` is 1-D, integer valued (ints, bools, or floats holding whole numbers), with one
  entry per sample; any values are allowed (they are only compared for equality).
* Invalid input raises ``ValueError``. Degenerate but valid data (all points identical,
  constant rows, ...) gives ``nan`` plus a :class:`MetricWarning` that states the reason, so
  that one bad layer never crashes a table (SPEC §10).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "METRICS",
    "MetricWarning",
    "TwoNNResult",
    "compute_metrics",
    "correlation_rdm",
    "register_metric",
    "rsa_delta",
    "ss_ratio",
    "two_nn_id",
    "two_nn_id_details",
    "two_nn_id_subsampled",
]

_EPS = np.finfo(np.float64).eps
#: Bytes of row differences materialised at once when computing exact distances.
_CHUNK_BYTES = 32 * 2**20


class MetricWarning(UserWarning):
    """A metric dropped samples or returned NaN because the data were degenerate."""


#: Config name -> metric function (see :func:`register_metric`).
METRICS: dict[str, Callable[..., float]] = {}


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    inputs: tuple[str, ...] = ("features", "labels"),
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: set ``higher_is_better``/``inputs`` on a metric and add it to :data:`METRICS`.

    Parameters
    ----------
    name
        The metric's name in the workflow config (``"id"``, ``"ss"``, ...).
    higher_is_better
        Direction of the metric.
    inputs
        Kinds of the positional arguments, in order; :func:`compute_metrics` passes the array
        given for each kind (``"features"``, ``"labels"``, or an extra keyword such as
        ``"probs"``).
    """

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        if name in METRICS and METRICS[name] is not fn:
            raise ValueError(f"metric name {name!r} is already registered")
        fn.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        fn.inputs = tuple(inputs)  # type: ignore[attr-defined]
        fn.metric_name = name  # type: ignore[attr-defined]
        METRICS[name] = fn
        return fn

    return decorator


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _to_numpy(a: Any) -> np.ndarray:
    """``np.asarray`` that also takes torch tensors (detached, moved to CPU) without torch."""
    if hasattr(a, "detach") and hasattr(a, "cpu") and hasattr(a, "numpy"):
        t = a.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # bfloat16/float16 have no (or a lossy) NumPy path
        return t.numpy()
    return np.asarray(a)


def _check_features(features: Any, *, min_samples: int = 1) -> np.ndarray:
    x = _to_numpy(features)
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


def _check_labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, counts)``: labels mapped to 0..K-1 (sorted by value) and class sizes."""
    y = _to_numpy(labels)
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


def _check_inputs(
    features: Any,
    labels: Any = None,
    *,
    min_samples: int = 1,
    min_classes: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate features (and labels if given) for every metric in this module.

    Returns ``(x, codes, counts)``: ``x`` float64 of shape (n, d); ``codes``/``counts`` are
    ``None`` when ``labels`` is ``None``.
    """
    x = _check_features(features, min_samples=min_samples)
    if labels is None:
        if min_classes:
            raise ValueError("this metric needs labels")
        return x, None, None
    codes, counts = _check_labels(labels, x.shape[0])
    if len(counts) < min_classes:
        raise ValueError(f"need at least {min_classes} distinct classes, got {len(counts)}")
    return x, codes, counts


def _warn(message: str) -> None:
    warnings.warn(message, MetricWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# TwoNN intrinsic dimension
# --------------------------------------------------------------------------------------------


class TwoNNResult(NamedTuple):
    """Result of :func:`two_nn_id_details`.

    Attributes
    ----------
    id
        The TwoNN intrinsic dimension (``nan`` if undefined).
    n_used
        Points with a defined ratio ``mu = r2 / r1`` (``n - n_duplicates``); the empirical
        CDF is ``i / n_used``.
    n_fit
        Points in the least-squares fit: ``int(n_used * (1 - discard))`` smallest ratios.
    n_duplicates
        Points dropped because ``r1 = 0`` (every copy of a duplicated row).
    """

    id: float
    n_used: int
    n_fit: int
    n_duplicates: int


def _centred_gram(x: np.ndarray, *, rows: bool = False) -> np.ndarray:
    """n × n float64 Gram matrix of ``x`` centred per column (default) or per row (``rows``).

    Accumulated over column chunks, so the centred copy never exceeds ``_CHUNK_BYTES``.
    """
    n, d = x.shape
    mean = x.mean(axis=1, keepdims=True) if rows else x.mean(axis=0)
    gram = np.zeros((n, n))
    step = max(1, _CHUNK_BYTES // (8 * n))
    for s in range(0, d, step):
        xc = x[:, s : s + step] - (mean if rows else mean[s : s + step])
        gram += xc @ xc.T
    return gram


class _NeighbourDistances:
    """Exact first/second nearest-neighbour distances for any subset of the rows of ``x``.

    The n × n Gram matrix of the column-centred rows (float64, computed once) gives squared
    distances ``|a|² + |b|² − 2 a·b``, used only to *select* candidates: pairs whose Gram
    distance is within a rounding bound of 0 are tested for exact equality (so ``r1 = 0`` is
    detected exactly, not up to rounding, and copies are grouped), and for each point every
    group whose Gram distance is within twice the bound of the second smallest is a candidate
    neighbour. Distances to candidates are recomputed directly as ``‖x_i − x_j‖`` in float64
    and cached, so the result does not suffer from cancellation in the Gram form.
    """

    def __init__(self, x: np.ndarray) -> None:
        n, d = x.shape
        gram = _centred_gram(x)
        sq = np.diag(gram).copy()
        d2 = sq[:, None] + sq[None, :] - 2.0 * gram
        del gram
        np.maximum(d2, 0.0, out=d2)
        # Bound on |Gram d² − exact d²| for rows a, b: (2d + 8)·eps·(|a|² + |b|²) covers the
        # three dot products and the centring; doubled for safety.
        self.tol_scale = (4.0 * d + 16.0) * _EPS
        near = d2 <= self.tol_scale * (sq[:, None] + sq[None, :])
        group = np.full(n, -1)
        for i in range(n):  # group exact copies (float equality, so -0.0 == 0.0)
            if group[i] >= 0:
                continue
            group[i] = i
            cand = np.flatnonzero(near[i, i + 1 :]) + (i + 1)
            cand = cand[group[cand] < 0]
            if len(cand):
                group[cand[(x[cand] == x[i]).all(axis=1)]] = i
        del near
        self.x = x
        self.rep = np.flatnonzero(group == np.arange(n))  # row index representing each group
        self.group = np.searchsorted(self.rep, group)  # group of each row
        if len(self.rep) < n:
            d2 = d2[np.ix_(self.rep, self.rep)]
            sq = sq[self.rep]
        self.sq = sq
        self.d2 = d2
        self.exact = np.full(d2.shape, np.nan)
        self.chunk = max(1, _CHUNK_BYTES // (8 * d))

    def _fill_exact(self, gi: np.ndarray, gj: np.ndarray) -> None:
        need = np.isnan(self.exact[gi, gj])
        gi, gj = gi[need], gj[need]
        for s in range(0, len(gi), self.chunk):
            a, b = gi[s : s + self.chunk], gj[s : s + self.chunk]
            diff = self.x[self.rep[a]] - self.x[self.rep[b]]
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            self.exact[a, b] = dist
            self.exact[b, a] = dist

    def r1_r2(self, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Return ``(r1, r2, n_duplicates)`` for the rows ``idx`` (all rows if ``None``).

        ``r1``/``r2`` cover only the non-duplicated rows of the subset; ``n_duplicates`` counts
        the rows whose first-neighbour distance is 0.
        """
        groups = self.group if idx is None else self.group[idx]
        counts = np.bincount(groups, minlength=len(self.rep))
        present = np.flatnonzero(counts)
        singles = present[counts[present] == 1]
        n_dup = int(counts[present].sum() - len(singles))
        if len(singles) == 0:
            return np.empty(0), np.empty(0), n_dup
        # Gram distances from each singleton to every other present group.
        d2 = self.d2[np.ix_(singles, present)]
        own = np.searchsorted(present, singles)
        d2[np.arange(len(singles)), own] = np.inf
        kth = min(1, len(present) - 2)
        second = np.partition(d2, kth, axis=1)[:, kth]
        tol = self.tol_scale * (self.sq[singles] + self.sq[present].max())
        cand = d2 <= (second + 2.0 * tol)[:, None]
        cand[np.arange(len(singles)), own] = False
        ri, ci = np.nonzero(cand)
        gi, gj = singles[ri], present[ci]
        self._fill_exact(gi, gj)
        dist = np.full(d2.shape, np.inf)
        dist[ri, ci] = self.exact[gi, gj]
        rows = np.arange(len(singles))
        nearest = np.argmin(dist, axis=1)
        r1 = dist[rows, nearest].copy()
        dist[rows, nearest] = np.inf
        r2 = np.where(counts[present[nearest]] >= 2, r1, dist.min(axis=1))
        return r1, r2, n_dup


def _two_nn_fit(
    r1: np.ndarray, r2: np.ndarray, n_dup: int, discard: float
) -> tuple[TwoNNResult, list[str]]:
    """TwoNN line fit as in scikit-dimension 0.5 ``TwoNN(discard_fraction=discard)``."""
    reasons: list[str] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = r2 / r1
    bad = ~np.isfinite(mu)
    if bad.any():  # r1 underflowed to 0 for distinct rows: treat like a duplicate
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


def two_nn_id_details(features: Any, discard: float = 0.1) -> TwoNNResult:
    """TwoNN intrinsic dimension with bookkeeping; see :func:`two_nn_id`.

    Returns
    -------
    TwoNNResult
        ``(id, n_used, n_fit, n_duplicates)``. Warns (:class:`MetricWarning`) when duplicates
        were dropped or the ID is undefined.
    """
    discard = _check_discard(discard)
    x, _, _ = _check_inputs(features, min_samples=3)
    r1, r2, n_dup = _NeighbourDistances(x).r1_r2()
    result, reasons = _two_nn_fit(r1, r2, n_dup, discard)
    for reason in reasons:
        _warn(reason)
    return result


@register_metric("id", higher_is_better=False, inputs=("features",))
def two_nn_id(features: Any, discard: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017, as used by Ansuini et al. 2019).

    For each sample, ``r1``/``r2`` are the Euclidean distances to its first and second nearest
    neighbours (float64, exact; itself excluded) and ``mu = r2 / r1``. Under local uniformity
    ``mu`` is Pareto with shape ``d``: ``−log(1 − F(mu)) = d · log(mu)``. With the ``N``
    ratios sorted ascending and ``F(mu_i) = i / N`` (i = 1..N), ``d`` is the least-squares slope
    through the origin of ``−log(1 − F)`` against ``log mu`` over the ``int(N·(1 − discard))``
    smallest ratios. This is exactly scikit-dimension 0.5 ``TwoNN(discard_fraction=discard)``:
    the CDF keeps denominator ``N`` (all ratios, including the discarded ones).

    Direction: lower is better (``higher_is_better = False``).

    Parameters
    ----------
    features
        Activations, shape (n, d) with n >= 3 (ndim > 2 is flattened).
    discard
        Fraction of the largest ratios left out of the fit, in [0, 1). With ``discard = 0``
        the largest ratio (``F = 1``, infinite ``−log(1 − F)``) is still left out.

    Returns
    -------
    float
        The estimated intrinsic dimension.

    Notes
    -----
    Samples with ``r1 = 0`` (exact duplicate rows; every copy) have no ratio and are dropped
    with a :class:`MetricWarning`; :func:`two_nn_id_details` reports how many. Samples with
    ``r1 = r2 > 0`` give ``mu = 1`` and are kept (unlike Ansuini et al.'s code, which also
    drops them). Fewer than 2 points in the fit, or all fitted ratios equal to 1, give ``nan``
    with a warning. Memory is O(n² + n·d): one n × n Gram matrix selects the neighbours.
    """
    return two_nn_id_details(features, discard).id


def two_nn_id_subsampled(
    features: Any,
    fraction: float = 0.9,
    repeats: int = 50,
    seed: int = 0,
    discard: float = 0.1,
) -> float:
    """Mean TwoNN ID over random subsamples (Ansuini et al. 2019: 50 subsamples of 90 %).

    Each repeat draws ``max(3, int(fraction · n))`` samples without replacement
    (``numpy.random.default_rng(seed)``) and applies :func:`two_nn_id` to them; distances come
    from one shared Gram matrix. Returns the mean over repeats whose ID is finite; ``nan`` with a
    :class:`MetricWarning` if none is. Duplicates dropped in any repeat are reported in one
    warning. Lower is better.
    """
    discard = _check_discard(discard)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    x, _, _ = _check_inputs(features, min_samples=3)
    n = x.shape[0]
    size = max(3, int(fraction * n))
    rng = np.random.default_rng(seed)
    nn = _NeighbourDistances(x)
    ids, dup_repeats, nan_reasons = [], 0, set()
    for _ in range(int(repeats)):
        idx = rng.choice(n, size=size, replace=False)
        r1, r2, n_dup = nn.r1_r2(idx)
        result, reasons = _two_nn_fit(r1, r2, n_dup, discard)
        dup_repeats += result.n_duplicates > 0
        if math.isnan(result.id):
            nan_reasons.update(r for r in reasons if "NaN" in r)
        ids.append(result.id)
    values = np.asarray(ids)
    finite = np.isfinite(values)
    if dup_repeats:
        _warn(f"TwoNN: duplicate samples dropped in {dup_repeats} of {repeats} subsamples")
    if not finite.any():
        _warn("TwoNN: ID undefined in every subsample (" + "; ".join(sorted(nan_reasons)) + ")")
        return math.nan
    if not finite.all():
        _warn(f"TwoNN: ID undefined in {int((~finite).sum())} of {repeats} subsamples; ignored")
    return float(values[finite].mean())


two_nn_id_details.higher_is_better = False  # type: ignore[attr-defined]
two_nn_id_subsampled.higher_is_better = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Sum of squares
# --------------------------------------------------------------------------------------------


@register_metric("ss", higher_is_better=False)
def ss_ratio(features: Any, labels: Any) -> float:
    """Sum-of-squares ratio SSW / TSS (thesis §2.2.2; ANOVA decomposition, Fisher 1921).

    ``SSW = Σ_k Σ_{i∈k} ‖x_i − x̄_k‖²`` and ``TSS = Σ_i ‖x_i − x̄‖²`` with *squared* Euclidean
    norms. The thesis's eq. 2.1 writes ``‖x_j − c_i‖`` without the square, but the identity
    ``TSS = SSW + SSB`` (its eq. 2.3) only holds with it, so the square is used. Equivalently
    ``SSW/TSS = 1 / (1 + CH·(K−1)/(n−K))`` with CH the Calinski–Harabasz score.

    Direction: lower is better (0 = every class collapsed to a point, ~1 = labels unrelated to
    the geometry). Invariant to translation, rotation and uniform scaling.

    Parameters
    ----------
    features
        Activations, shape (n, d) (ndim > 2 is flattened).
    labels
        Class of each sample, shape (n,), at least two distinct values.

    Returns
    -------
    float
        SSW / TSS in [0, 1]; ``nan`` with a :class:`MetricWarning` if TSS = 0 (all samples
        identical).
    """
    x, codes, counts = _check_inputs(features, labels, min_samples=2, min_classes=2)
    assert codes is not None and counts is not None
    xc = x - x.mean(axis=0)  # centring first keeps both sums free of cancellation
    tss = float(np.einsum("ij,ij->", xc, xc))
    if tss == 0.0:
        _warn("SS: total sum of squares is 0 (all samples identical); SS is NaN")
        return math.nan
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(counts)))
    ssw = 0.0
    for k in range(len(counts)):
        block = xc[order[bounds[k] : bounds[k + 1]]]
        block -= block.mean(axis=0)
        ssw += float(np.einsum("ij,ij->", block, block))
    return ssw / tss


# --------------------------------------------------------------------------------------------
# Representational similarity analysis
# --------------------------------------------------------------------------------------------


def _constant_rows(x: np.ndarray) -> np.ndarray:
    return x.max(axis=1) == x.min(axis=1)


def _correlation_rdm(x: np.ndarray) -> np.ndarray:
    """1 − Pearson correlation between the rows of ``x`` (no constant rows), clipped to [0, 2]."""
    gram = _centred_gram(x, rows=True)
    norm = np.sqrt(np.diag(gram))
    rdm = 1.0 - gram / norm[:, None] / norm[None, :]
    np.clip(rdm, 0.0, 2.0, out=rdm)
    rdm = 0.5 * (rdm + rdm.T)
    np.fill_diagonal(rdm, 0.0)
    return rdm


def correlation_rdm(features: Any) -> np.ndarray:
    """Representational dissimilarity matrix ``1 − corr(x_i, x_j)`` between samples (rows).

    Equals ``scipy.spatial.distance.squareform(pdist(features, "correlation"))``: Pearson
    correlation of each pair of rows, diagonal exactly 0, values clipped to [0, 2], computed
    from one n × n Gram matrix of the row-centred samples, divided by their norms.

    Parameters
    ----------
    features
        Activations, shape (n, d) (ndim > 2 is flattened).

    Returns
    -------
    numpy.ndarray
        Symmetric (n, n) float64 matrix. Rows and columns of constant samples (zero variance,
        correlation undefined) are ``nan`` off the diagonal, as in SciPy, with a
        :class:`MetricWarning`.
    """
    x, _, _ = _check_inputs(features)
    const = _constant_rows(x)
    if not const.any():
        return _correlation_rdm(x)
    _warn(f"RDM: {int(const.sum())} constant samples have undefined correlations (NaN)")
    rdm = np.full((x.shape[0], x.shape[0]), np.nan)
    keep = np.flatnonzero(~const)
    if len(keep):
        rdm[np.ix_(keep, keep)] = _correlation_rdm(x[keep])
    np.fill_diagonal(rdm, 0.0)
    return rdm


@register_metric("rsa", higher_is_better=True)
def rsa_delta(features: Any, labels: Any) -> float:
    """RSA delta: between-class minus within-class mean dissimilarity (thesis §2.2.3).

    The RDM is ``1 − Pearson correlation`` between samples (Kriegeskorte et al. 2008; see
    :func:`correlation_rdm`). With samples sorted by label, the within-class entries are the
    diagonal blocks without the strict diagonal (pairs i ≠ j of one class) and the
    between-class entries are all off-diagonal blocks; the metric is
    ``mean(between) − mean(within)``, each mean pooled over entries (not over blocks). The
    value does not depend on the order of the samples.

    Direction: higher is better; range [−2, 2] (2: classes perfectly anti-correlated and
    identical-in-correlation within, e.g. rows ``x`` and ``−x``; ~0 for random labels).

    Parameters
    ----------
    features
        Activations, shape (n, d) (ndim > 2 is flattened).
    labels
        Class of each sample, shape (n,), at least two distinct values.

    Returns
    -------
    float
        The delta. Constant samples (zero variance: correlation undefined) are dropped with a
        :class:`MetricWarning` giving their number. If fewer than two classes then remain, or
        no class has two samples (no within-class pair), the result is ``nan`` with a warning.
    """
    x, codes, _ = _check_inputs(features, labels, min_samples=2, min_classes=2)
    assert codes is not None
    const = _constant_rows(x)
    if const.any():
        _warn(f"RSA: dropped {int(const.sum())} constant samples (zero variance)")
        x, codes = x[~const], codes[~const]
    _, codes, counts = np.unique(codes, return_inverse=True, return_counts=True)
    if len(counts) < 2:
        _warn(f"RSA: {len(counts)} class(es) left after dropping constant samples; RSA is NaN")
        return math.nan
    n = len(codes)
    n_within = int((counts.astype(np.int64) ** 2).sum()) - n
    n_between = n * n - n - n_within
    if n_within == 0:
        _warn("RSA: no class has two samples, so there is no within-class pair; RSA is NaN")
        return math.nan
    rdm = _correlation_rdm(x)
    onehot = np.zeros((n, len(counts)))
    onehot[np.arange(n), codes.reshape(-1)] = 1.0
    block_sums = onehot.T @ rdm @ onehot  # (K, K): sum of each label block
    within = float(np.trace(block_sums))  # the strict diagonal is exactly 0
    between = float(rdm.sum()) - within
    return between / n_between - within / n_within


# --------------------------------------------------------------------------------------------
# Registry front end
# --------------------------------------------------------------------------------------------


def compute_metrics(
    features: Any,
    labels: Any,
    names: Iterable[str] | str,
    **arrays: Any,
) -> dict[str, float]:
    """Compute the metrics ``names`` (config names, keys of :data:`METRICS`) on one layer.

    Parameters
    ----------
    features
        Activations, shape (n, d); validated and converted to float64 once.
    labels
        Class of each sample, shape (n,); may be ``None`` if no requested metric needs it.
    names
        Metric names, e.g. ``["id", "ss", "rsa"]`` (a single string is one name).
    **arrays
        Further inputs for metrics whose ``inputs`` name other kinds (e.g. ``probs=...``).

    Returns
    -------
    dict
        ``{name: value}`` in the order of ``names``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones), a missing input, or invalid
        data (see the metrics).
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        known = ", ".join(sorted(METRICS))
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}")
    available: dict[str, Any] = dict(arrays)
    needs_features = any("features" in METRICS[name].inputs for name in names)  # type: ignore[attr-defined]
    available["features"] = _check_features(features) if needs_features else features
    available["labels"] = labels
    out: dict[str, float] = {}
    for name in names:
        fn = METRICS[name]
        args = []
        for kind in fn.inputs:  # type: ignore[attr-defined]
            if available.get(kind) is None:
                raise ValueError(f"metric {name!r} needs {kind!r}, which was not given")
            args.append(available[kind])
        out[name] = float(fn(*args))
    return out
