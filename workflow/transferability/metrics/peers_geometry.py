"""Peer scores of the feature geometry: TransRate, GBC, PARC and ETran (PEER_METRICS.md).

Each is computed from the n × n statistics in :class:`~transferability.metrics.stats.LayerStats`
(never the n × d activations in memory), so it runs on VGG ``pool1`` (n = 1 200, d = 802 816) in
O(n² + n·strip) memory. The public ``f(features, labels, ...)`` builds the statistics of in-memory
activations and calls ``_f_stats(stats, ...)``; the registered statistics form ``_f(stats)`` uses
the peer's defaults.

Shared algebra — *principal coordinates*: with ``Xc`` the column-centred activations and
``K = Xc Xcᵀ = U Λ Uᵀ``, the rows of ``Z = U Λ^½`` are the samples written in an orthonormal basis
``P = Xcᵀ U Λ^-½`` (d × r) of their own centred span, ``Xc = Z Pᵀ``. The PCA scores of the
full SVD are the leading columns of ``Z`` (up to signs), and sklearn's randomized SVD of ``Xcᵀ``
(d > n) runs entirely inside that span. Eigenvalues of ``K`` at the rounding level of ``eigh``
(≤ n·ε·λ_max) are treated as zero, as in :mod:`transferability.metrics.linear`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any

import numpy as np

from transferability.metrics._base import register_metric, require_classes, warn
from transferability.metrics.stats import (
    EIG_RTOL_PER_SAMPLE,
    LayerStats,
    layer_stats,
    row_logsumexp_of_strips,
)

__all__ = ["etran", "etran_parts", "gbc", "parc", "transrate"]

#: Defaults of the peers (PEER_METRICS.md).
TRANSRATE_EPS = 1e-4  # TLlib ``transrate(eps=1e-4)``
GBC_PCA_DIM = 64  # google-research ``gbc.pca_reduction = 64``
GBC_VARIANCE_FLOOR = 1e-4  # ``tf.maximum(variance, 1e-4)``
PARC_N_DIMS = 32  # dbolya/parc ``PARC(n_dims=32)``
PARC_RANDOM_STATE = 1919  # ``feature_reduce``: PCA(random_state=1919, iterated_power=1)
PARC_OVERSAMPLES = 10  # sklearn PCA ``n_oversamples`` default
PARC_SIGN_RULES = ("components", "scores")
ETRAN_ENERGY_PER_MILLE = 5  # ``Energy_Score(X, 0.5, 'bot')``: the ⌊5n/1000⌋ lowest energies


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _class_indices(stats: LayerStats) -> list[np.ndarray]:
    return [np.flatnonzero(stats.codes == c) for c in range(len(stats.counts))]


# --------------------------------------------------------------------------------------------
# TransRate
# --------------------------------------------------------------------------------------------


def _coding_rate(gram: np.ndarray, n_rows: int, eps: float) -> float:
    """``½·logdet(I + ZᵀZ/(n_rows·eps))`` from ``G = Z Zᵀ`` (Sylvester: = ``½·logdet(I + G/…)``),
    through the eigenvalues of G clipped at 0 (rounding can leave them slightly negative)."""
    lam = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    return 0.5 * float(np.sum(np.log1p(lam / (n_rows * eps))))


def _transrate_stats(stats: LayerStats, *, eps: float = TRANSRATE_EPS) -> float:
    require_classes(stats.counts)
    if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    k = stats.centred_gram
    total = _coding_rate(k, stats.n, eps)
    per_class = [_coding_rate(k[np.ix_(idx, idx)], len(idx), eps) for idx in _class_indices(stats)]
    return float(total - np.mean(per_class))


@register_metric("transrate", higher_is_better=True)
def _transrate(stats: LayerStats) -> float:
    return _transrate_stats(stats)


def transrate(features: Any, labels: Any, *, eps: float = TRANSRATE_EPS) -> float:
    """TransRate (Huang et al. 2022, "Frustratingly easy transferability estimation"), as TLlib's
    ``tllib/ranking/transrate.py``: ``TrR = R(f) − (1/K)·Σ_c R(f_c)`` with the coding rate
    ``R(Z) = ½·logdet(I + ZᵀZ/(n_Z·eps))``.

    ``f`` is the column-centred feature matrix (no PCA); ``f_c`` are its rows of class c, *not*
    centred again, with ``n_Z = n_c`` their number; the class average is unweighted. Computed in
    the n × n form ``R = ½·Σ log(1 + λ_i/(n_Z·eps))`` over the eigenvalues λ of the centred Gram
    matrix (and of its class blocks), equal to the d × d log-determinant by Sylvester's identity.

    Convention: the average runs over the classes present in ``labels`` (TLlib loops over
    ``0..max(y)`` and breaks, with a NaN, on an absent integer code).

    Direction: higher is better. Not bounded; invariant to sample order, to translations and
    rotations of the features and to the label values, but not to their scale (it grows like
    ``(rank/2)·log(scale²/eps)``). Identical samples give 0.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    eps
        Distortion ``ε`` of the coding rate (TLlib's default 1e-4).
    """
    return _transrate_stats(layer_stats(features, labels), eps=eps)


transrate.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# GBC
# --------------------------------------------------------------------------------------------


def _gbc_stats(
    stats: LayerStats, *, pca_dim: int = GBC_PCA_DIM, paper_logdet: bool = False
) -> float:
    require_classes(stats.counts)
    pca_dim = _check_positive_int("pca_dim", pca_dim)
    k = min(pca_dim, stats.n, stats.n_features)
    lam, vec = stats.centred_eigh_desc
    scores = vec[:, :k] * np.sqrt(lam[:k])  # sklearn PCA(k, svd_solver='full'), up to signs
    means, sigmas = [], []
    for idx in _class_indices(stats):
        part = scores[idx]
        mean = part.mean(axis=0)
        var = ((part - mean) ** 2).mean(axis=0)  # biased, per dimension
        means.append(mean)
        sigmas.append(float(np.maximum(var, GBC_VARIANCE_FLOOR).mean()))  # spherical
    factor = 0.5 * k if paper_logdet else 0.5
    total = 0.0
    for a in range(len(means)):
        for b in range(a + 1, len(means)):
            s1, s2 = sigmas[a], sigmas[b]
            s = 0.5 * (s1 + s2)
            d_b = float(np.sum((means[a] - means[b]) ** 2)) / (8.0 * s) + factor * (
                math.log(s) - 0.5 * math.log(s1) - 0.5 * math.log(s2)
            )
            total += 2.0 * math.exp(-d_b)  # the ordered pairs (a, b) and (b, a)
    return -total


@register_metric("gbc", higher_is_better=True)
def _gbc(stats: LayerStats) -> float:
    return _gbc_stats(stats)


def gbc(
    features: Any, labels: Any, *, pca_dim: int = GBC_PCA_DIM, paper_logdet: bool = False
) -> float:
    """GBC, the Gaussian Bhattacharyya coefficient (Pándy et al. 2022, "Transferability estimation
    using Bhattacharyya class separability"), as google-research
    ``stable_transfer/transferability/gbc.py`` with its default ``gaussian_type='spherical'``.

    The features are reduced by PCA to ``k = min(pca_dim, n, d)`` dimensions (sklearn
    ``PCA(svd_solver='full')``; computed here from the eigenvectors of the centred Gram matrix,
    GBC does not depend on the components' signs). Per class c: the mean ``μ_c`` and the biased
    per-dimension variance floored at 1e-4, and the spherical ``σ_c`` = the mean of those
    variances. ``GBC = −Σ_{c₁≠c₂} exp(−D_B(c₁, c₂))`` over ordered pairs, with
    ``D_B = ‖μ₁−μ₂‖²/(8σ) + ½·(log σ − ½ log σ₁ − ½ log σ₂)`` and ``σ = (σ₁+σ₂)/2``.

    Convention: the log term is the official code's, which sums ``log`` over the *scalar*
    spherical variances and so lacks the factor k of the Bhattacharyya distance of two spherical
    Gaussians in k dimensions (the paper's formula, and PEER_METRICS.md's ``½k(…)``);
    ``paper_logdet=True`` multiplies it by k. The peer casts the PCA scores to float32; this runs
    in float64.

    Direction: higher (closer to 0) is better. Range ``[−K(K−1), 0)``: −K(K−1) when every class
    has the same mean and variance, → 0 as the classes separate. Invariant to sample order,
    translations and rotations of the features and the label values; not to their scale (the
    1e-4 floor).

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    pca_dim
        PCA dimensions before the class statistics (the peer's 64), capped at ``min(n, d)``.
    paper_logdet
        Use the paper's ``½k(…)`` log term instead of the official code's ``½(…)``.
    """
    return _gbc_stats(layer_stats(features, labels), pca_dim=pca_dim, paper_logdet=paper_logdet)


gbc.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# PARC
# --------------------------------------------------------------------------------------------


_BLAS = None  # threadpoolctl.ThreadpoolController, made on first use


def _one_blas_thread():
    """BLAS/LAPACK on one thread. PARC's algebra after the statistics pass is small (≤ n³/3
    flops, k-wide QR and SVD), where waking threads costs more than it saves — several times
    over when other jobs share the cores, as in the workflow."""
    global _BLAS
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # scikit-learn's dependency; without it, BLAS keeps its threads
        return contextlib.nullcontext()
    if _BLAS is None:
        import scipy.linalg  # noqa: F401  (its BLAS must be loaded to be controlled)

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _strips(stats: LayerStats):
    if stats.strips is None:
        raise ValueError(
            "PARC needs to read the activations again (LayerStats.strips is None); build the "
            "statistics with layer_stats or layer_stats_from_h5"
        )
    return stats.strips()


def _centred_strips(stats: LayerStats):
    for strip in _strips(stats):
        yield strip - strip.mean(axis=0)


def _flip_by_components(components: np.ndarray, best: np.ndarray, sign: np.ndarray) -> None:
    """Running sklearn ``svd_flip(u_based_decision=False)``: for every component (a column of
    ``components``, one block of feature rows) keep the entry of largest magnitude seen so far
    (the first one on ties, as ``argmax``) and its sign; start with ``best = −1``."""
    mag = np.abs(components)
    rows = np.argmax(mag, axis=0)
    cols = np.arange(components.shape[1])
    top = mag[rows, cols]
    better = top > best
    best[better] = top[better]
    sign[better] = np.sign(components[rows, cols])[better]


def _score_signs(scores: np.ndarray) -> np.ndarray:
    """The sign of the largest-magnitude entry of every column (sklearn < 1.5's rule)."""
    return np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(scores.shape[1])])


def _gram_factor(stats: LayerStats, sketch: int) -> tuple[np.ndarray, Any]:
    """``(z, solve)``: ``z`` (n × r) with ``z zᵀ = K`` (the centred Gram matrix) up to rounding,
    so that ``Xc = z Pᵀ`` for an orthonormal basis P of the centred span; ``solve(t)`` gives a
    ``g`` with ``zᵀ g = t``, i.e. ``Xcᵀ g = P t``.

    ``z = U Λ^½`` from :attr:`LayerStats.centred_eigh` when another metric has computed it.
    Otherwise pivoted Cholesky (LAPACK ``dpstrf``), a tenth of the cost of ``eigh``:
    Gram–Schmidt on the samples, P the orthonormalised pivot samples, ``Xc[pivots] = L Pᵀ`` with
    ``L = z[pivots]`` lower triangular. It runs down to pivots of ε·max diag (weak directions
    matter to the weakest components). If no more than 4 × ``sketch`` pivots exceed the rounding
    level n·ε·max diag, the sketch would span every direction, rounding noise included: then
    ``z`` is replaced by ``eigh`` of K within the span of its first 4 × ``sketch`` columns
    (Rayleigh–Ritz), with ``eigh_psd``'s cut.
    """
    eig = stats.cached("centred_eigh")
    gram = stats.centred_gram
    if eig is None:
        from scipy.linalg import lapack, solve_triangular

        top = float(np.max(np.diag(gram)))
        c, piv, rank, info = lapack.dpstrf(gram, lower=1, tol=EIG_RTOL_PER_SAMPLE * top)
        if info < 0:
            raise RuntimeError(f"dpstrf: argument {-info} is invalid")
        piv = piv - 1  # 1-based
        z = np.empty((stats.n, rank))
        z[piv] = np.tril(c[:, :rank])  # the other triangle and the trailing block are not L
        pivots = piv[:rank]
        above = np.diag(z[pivots]) ** 2 > stats.n * EIG_RTOL_PER_SAMPLE * top  # decreasing
        if np.sum(above) > 4 * sketch:

            def solve(t: np.ndarray) -> np.ndarray:
                g = np.zeros((stats.n, t.shape[1]))
                g[pivots] = solve_triangular(z[pivots], t, trans="T", lower=True)
                return g

            return z, solve
        basis, _ = np.linalg.qr(z[:, : 4 * sketch])
        lam, vec = np.linalg.eigh(basis.T @ gram @ basis)
        top = float(lam[-1]) if len(lam) else 0.0
        lam = np.where(lam > stats.n * EIG_RTOL_PER_SAMPLE * top, lam, 0.0)
        eig = lam, basis @ vec
    lam, vec = eig
    keep = lam > 0.0
    root = np.sqrt(lam[keep])
    vec = vec[:, keep]
    return vec * root, lambda t: (vec / root) @ t


def _randomized_pca_scores(
    stats: LayerStats, n_dims: int, random_state: int, sign_rule: str = "components"
) -> np.ndarray:
    """The scores of sklearn ``PCA(n_components=min(n_dims, n, d), svd_solver='randomized',
    random_state=random_state, iterated_power=1).fit_transform``, components at the rounding
    level of the largest set to exactly 0. ``sign_rule``: ``"components"`` (scikit-learn ≥ 1.5,
    the largest-magnitude entry of every component is positive) or ``"scores"`` (scikit-learn
    < 1.5: that of every score column)."""
    n, d = stats.n, stats.n_features
    k = min(n_dims, n, d)
    size = k + PARC_OVERSAMPLES
    rng = np.random.RandomState(random_state)
    if n < d:
        # sklearn runs the randomized SVD on Xcᵀ (d × n) with a sketch Ω (n × size):
        # Q = qr(Xcᵀ·Xc·Xcᵀ·Ω), B = QᵀXcᵀ = Û s Vᵀ, scores = V s, components = Q Û. With
        # Xc = Z Pᵀ (Z Zᵀ = K, P orthonormal) everything stays in the span P:
        # Q = P·qr(Zᵀ K Ω), B = qᵀ Zᵀ.
        omega = rng.normal(size=(n, size))
        with _one_blas_thread():
            z, solve = _gram_factor(stats, size)
            if z.shape[1] == 0:
                return np.zeros((n, k))
            q, _ = np.linalg.qr(z.T @ (stats.centred_gram @ omega))
            uhat, s, vt = np.linalg.svd(q.T @ z.T, full_matrices=False)
            k_eff = min(k, len(s))
            scores = np.zeros((n, k))
            scores[:, :k_eff] = vt[:k_eff].T * s[:k_eff]
            if sign_rule == "components":
                # component j = P q û_j = Xcᵀ g_j = Xᵀ (g_j − mean g_j): uncentred strips
                g = solve(q @ uhat[:, :k_eff])
                g -= g.mean(axis=0)
        if sign_rule == "components":  # one more pass over the strips, BLAS threads back
            best, sign = np.full(k_eff, -1.0), np.ones(k_eff)
            for strip in _strips(stats):
                _flip_by_components(strip.T @ g, best, sign)
        else:
            sign = _score_signs(scores[:, :k_eff])
        sign[sign == 0.0] = 1.0
        scores[:, :k_eff] *= sign
        s = np.pad(s[:k_eff], (0, k - k_eff))
    else:
        # d ≤ n: the centred activations (n × d ≤ n × n) are read into memory once, and the
        # randomized SVD of Xc itself runs as sklearn's: Ω (d × size), Q = qr(Xc·Xcᵀ·Xc·Ω).
        xc = np.hstack(list(_centred_strips(stats)))
        omega = rng.normal(size=(d, size))
        with _one_blas_thread():
            q, _ = np.linalg.qr(xc @ (xc.T @ (xc @ omega)))
            uhat, s, vt = np.linalg.svd(q.T @ xc, full_matrices=False)
        s, vt = s[:k], vt[:k]
        scores = (q @ uhat[:, :k]) * s
        if sign_rule == "components":
            sign = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        else:
            sign = _score_signs(scores)
        sign[sign == 0.0] = 1.0
        scores *= sign
    # rounding-level components carry no information; sklearn would standardise their noise
    scores[:, s <= max(n, d) * EIG_RTOL_PER_SAMPLE * (s[0] if len(s) else 0.0)] = 0.0
    return scores


def _tie_sizes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, sizes)`` of the runs of equal values of a sorted array."""
    new = np.ones(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return starts, np.diff(starts, append=len(values))


def _sum_t3_minus_t(sizes: np.ndarray) -> int:
    """``Σ (t³ − t)`` over tie sizes, in exact integers."""
    t, times = np.unique(sizes[sizes > 1], return_counts=True)
    return sum((a**3 - a) * m for a, m in zip(t.tolist(), times.tolist(), strict=True))


def _spearman_of_split(inside: np.ndarray, outside: np.ndarray) -> float | None:
    """Spearman ρ between a variable and the indicator of ``outside`` (two groups of its values),
    ranks averaged over ties as scipy's; None when undefined. The indicator's ranks are affine
    in it, so ρ = Pearson(ranks, indicator), which needs only the rank sum of ``outside`` and the
    ties: both come from the two sorted groups by binary search, without ranking all values."""
    inside, outside = np.sort(inside), np.sort(outside)
    n_in, n_out = len(inside), len(outside)
    total = n_in + n_out
    left = np.searchsorted(outside, inside, "left")
    right = np.searchsorted(outside, inside, "right")
    # 2 × (rank sum of ``outside``): n_out(n_out + 1)/2 among themselves, plus per value the
    # ``inside`` values below it and half of those equal to it
    twice_rank_sum = (
        n_out * (n_out + 1) + 2 * int(np.sum(n_out - right)) + int(np.sum(right - left))
    )
    # 12 × Σ(rank − mean)² = N³ − N − Σ(t³ − t) over the ties of the merged values
    starts_in, sizes_in = _tie_sizes(inside)
    across = (right - left)[starts_in]  # ``outside`` values equal to each ``inside`` tie
    ties = (
        _sum_t3_minus_t(sizes_in + across)
        + _sum_t3_minus_t(_tie_sizes(outside)[1])
        - _sum_t3_minus_t(across)
    )
    spread = (total**3 - total - ties) * n_in * n_out
    if spread == 0:
        return None
    # ρ = Σ(r − r̄)(b − b̄) / √(Σ(r − r̄)² · Σ(b − b̄)²), with Σ(b − b̄)² = n_in·n_out/N
    return (twice_rank_sum - n_out * (total + 1)) / math.sqrt(spread / (3 * total))


def _parc_stats(
    stats: LayerStats,
    *,
    n_dims: int = PARC_N_DIMS,
    random_state: int = PARC_RANDOM_STATE,
    sign_rule: str = "components",
) -> float:
    require_classes(stats.counts)
    n_dims = _check_positive_int("n_dims", n_dims)
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise ValueError(f"random_state must be an integer, got {random_state!r}")
    if sign_rule not in PARC_SIGN_RULES:
        raise ValueError(f"sign_rule must be one of {PARC_SIGN_RULES}, got {sign_rule!r}")
    scores = _randomized_pca_scores(stats, n_dims, int(random_state), sign_rule)
    # StandardScaler (biased std; a constant column stays 0)
    scores = scores - scores.mean(axis=0)
    std = np.sqrt((scores**2).mean(axis=0))
    scores = scores / np.where(std > 0.0, std, 1.0)
    # 1 − Pearson correlation between samples (rows)
    rows = scores - scores.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    if not (norms > 0.0).all():
        warn(
            f"PARC: {int(np.sum(norms == 0.0))} sample(s) have the same value in every "
            f"standardised PCA dimension (k = {scores.shape[1]}); their correlations, and "
            "PARC, are undefined (NaN)"
        )
        return math.nan
    rows /= norms[:, None]
    # byte-identical samples share one row of correlations, exactly 1 between them: the ties
    # of the dissimilarities are exact (rounding would break them and move the ranks)
    first, inverse = np.unique(stats.duplicate_of, return_inverse=True)
    with _one_blas_thread():
        corr = rows[first] @ rows[first].T
    np.fill_diagonal(corr, 1.0)
    if len(first) < stats.n:
        corr = corr[np.ix_(inverse, inverse)]
    # Spearman ρ of the upper triangles with the label RDM, which is two-valued (0 within a
    # class, 1 + 1/(K−1) between): a split of the feature RDM into within and between pairs
    upper = np.triu(np.ones(corr.shape, dtype=bool), 1)
    same = stats.codes[:, None] == stats.codes[None, :]
    rho = _spearman_of_split(1.0 - corr[upper & same], 1.0 - corr[upper & ~same])
    if rho is None:
        warn(
            "PARC: the feature or the label dissimilarities are all equal (e.g. every class "
            "has a single sample); the Spearman correlation is undefined (NaN)"
        )
        return math.nan
    return 100.0 * rho


@register_metric("parc", higher_is_better=True)
def _parc(stats: LayerStats) -> float:
    return _parc_stats(stats)


def parc(
    features: Any,
    labels: Any,
    *,
    n_dims: int = PARC_N_DIMS,
    random_state: int = PARC_RANDOM_STATE,
    sign_rule: str = "components",
) -> float:
    """PARC (Bolya et al. 2021, "Scalable diverse model selection for accessible transfer
    learning"), as dbolya/parc ``methods.py`` ``PARC(n_dims=32)``: 100 × the Spearman correlation
    between the upper triangles of ``1 − corrcoef(rows)`` of the standardised PCA scores and of
    the one-hot labels.

    PCA: scikit-learn ``PCA(n_components=min(n_dims, n, d), svd_solver='randomized',
    random_state=1919, iterated_power=1).fit_transform`` — a *randomized* approximation (one
    power iteration, 10 oversamples), reproduced here exactly: for d > n from the centred Gram
    matrix, the same Gaussian sketch and one more pass over the feature strips for the signs;
    for d ≤ n on the centred activations read into memory (≤ n × n). Then ``StandardScaler``
    (each component to zero mean and unit biased variance).

    Conventions: component signs follow scikit-learn ≥ 1.5 (the entry of largest magnitude of
    every *component* is positive); ``sign_rule="scores"`` gives those of scikit-learn < 1.5,
    the versions of the paper's time (the largest entry of every score column; it moves PARC by
    about 1 % and needs no second pass over the strips). Components whose singular value is at
    the rounding level of the largest (≤ max(n, d)·ε·s₁, e.g. the k-th when k = min(n, d)
    exceeds the rank of the centred data) are exactly zero, where sklearn would standardise
    rounding noise to unit variance. The label RDM is two-valued (0 within a class, larger
    between), so only the class partition matters (the peer's one-hot width — all dataset
    classes — does not). Byte-identical samples get identical dissimilarities (0 between them),
    so that ties are exact rather than broken by rounding (the peer's label RDM, ``1 −
    corrcoef(one-hot)``, is 0 or 2.2e-16 within a class when 1/K is not a binary fraction,
    which moves its PARC by a few percent). The peer computes in the input's precision; this
    runs in float64.

    The randomized PCA, and so PARC, depends on the order of the samples when d > n (the sketch
    Ω is indexed by samples), and on the order of the features when d ≤ n unless
    ``min(n_dims, d) + 10 ≥ d`` (then the sketch spans every feature and the PCA is exact); it
    is invariant to the other order.

    Direction: higher is better. Range [−100, 100]. Invariant to the label values and to a
    common scale or translation of the features. NaN with a :class:`MetricWarning` when a
    sample's standardised scores are all equal (always when k = 1) or no two samples share a
    class.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    n_dims
        PCA dimensions (the peer's 32), capped at ``min(n, d)``.
    random_state
        Seed of the randomized PCA's Gaussian sketch (the peer's 1919).
    sign_rule
        ``"components"`` (scikit-learn ≥ 1.5, the default) or ``"scores"`` (scikit-learn < 1.5).
    """
    return _parc_stats(
        layer_stats(features, labels),
        n_dims=n_dims,
        random_state=random_state,
        sign_rule=sign_rule,
    )


parc.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# ETran
# --------------------------------------------------------------------------------------------


def _row_logsumexp(stats: LayerStats) -> np.ndarray:
    if stats.row_logsumexp is not None:
        return stats.row_logsumexp
    if stats.strips is None:
        raise ValueError(
            "ETran needs the per-sample logsumexp of the features: build the statistics with "
            "with_row_logsumexp=True"
        )
    return row_logsumexp_of_strips(stats.strips(), stats.n)


def _etran_parts_stats(stats: LayerStats) -> tuple[float, float]:
    require_classes(stats.counts)
    n = stats.n
    # S_lda: LDA with identity covariance, softmax(x·μ_c − ½‖μ_c‖² + log π_c). Adding the common
    # −½‖x‖² gives −½‖x − μ_c‖², so the posteriors follow from the centred Gram matrix:
    # x_i·μ_c − ½‖μ_c‖² ≡ mean_{j∈c} K_ij − ½·mean_{j,l∈c} K_jl (exact for any offset).
    kc = stats.centred_gram
    onehot = stats.class_indicator() / stats.counts  # (n, K): 1/n_c on class c
    cross = kc @ onehot  # (n, K): mean over j in c of K_ij
    half_norm = 0.5 * np.einsum("ik,ik->k", onehot, cross)  # ½ mean_{j,l∈c} K_jl
    logits = cross - half_norm + np.log(stats.counts / n)
    logits -= logits.max(axis=1, keepdims=True)
    post = np.exp(logits)
    post /= post.sum(axis=1, keepdims=True)
    s_lda = float(np.mean(post[np.arange(n), stats.codes]))
    # S_en: the mean of the ⌊5n/1000⌋ lowest per-sample energies logsumexp(x_i)
    m = ETRAN_ENERGY_PER_MILLE * n // 1000
    if m == 0:
        warn(
            f"ETran: the energy score averages the ⌊5n/1000⌋ lowest energies, none for n = {n} "
            "< 200 samples; ETran is NaN"
        )
        return math.nan, s_lda
    energy = _row_logsumexp(stats)
    s_en = float(np.mean(np.partition(energy, m - 1)[:m]))
    return s_en, s_lda


@register_metric("etran", higher_is_better=True)
def _etran(stats: LayerStats) -> float:
    s_en, s_lda = _etran_parts_stats(stats)
    return s_en + s_lda


def etran_parts(features: Any, labels: Any) -> tuple[float, float]:
    """``(S_en, S_lda)`` of :func:`etran`, for the peer's ranking over a model pool:
    ``0.15·minmax(S_en) + 0.85·minmax(S_lda)`` (ETran ``tw.py``). ``S_en`` is NaN (with a
    :class:`MetricWarning`) for n < 200."""
    return _etran_parts_stats(layer_stats(features, labels, with_row_logsumexp=True))


def etran(features: Any, labels: Any) -> float:
    """ETran (Gholami et al. 2023, "ETran: energy-based transferability estimation"), as
    mgholamikn/ETran ``metrics.py`` (``Energy_Score(X, 0.5, 'bot')``, ``LDA_Score``):
    ``S_en + S_lda`` on the features (no PCA).

    - ``S_en``: the mean of the ``⌊5n/1000⌋`` smallest per-sample energies
      ``logsumexp_j(x_ij)`` over the raw features (accumulated strip by strip).
    - ``S_lda``: the mean over samples of ``p(y_i | x_i)`` with
      ``p = softmax_c(x·μ_c − ½‖μ_c‖² + log π_c)`` (class means μ_c, class frequencies π_c).
      The peer's LDA multiplies the means by the full orthogonal eigenvector matrix of its
      shrunk scatter problem (``coef = μ·V·Vᵀ = μ``), so that is all it computes.

    The published ranking scales each part over the model pool,
    ``0.15·minmax(S_en) + 0.85·minmax(S_lda)`` (``tw.py``); per model there is only the two
    parts, summed here (:func:`etran_parts` returns them). The peer takes the energies of
    float32 features in float32; this runs in float64.

    Direction: higher is better. ``S_lda`` lies in (0, 1] and is invariant to translations and
    rotations of the features; ``S_en`` is not (it is an energy of the raw values). Invariant
    to sample order and the label values. NaN with a :class:`MetricWarning` for n < 200 samples,
    where ``⌊5n/1000⌋ = 0`` energies are averaged (the peer gets the mean of an empty slice).

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    """
    return _etran(layer_stats(features, labels, with_row_logsumexp=True))


etran.higher_is_better = True  # type: ignore[attr-defined]
