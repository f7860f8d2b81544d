"""Linear-model transferability metrics: H-score, regularised H-score and LogME.

Each is computed from the n × n Gram matrices in
:class:`~transferability.metrics.stats.LayerStats` (never the n × d activations), so it is exact
and cheap when d ≫ n (VGG ``pool1``: d = 802 816). The public ``f(features, labels)`` builds the
statistics of in-memory activations and calls the registered statistics form ``_f(stats)``.

Shared algebra: with ``Xc`` the column-centred activations, ``K = Xc Xcᵀ = U Λ Uᵀ`` and ``M`` the
n × n class-averaging matrix (``M_ij = 1/n_k`` if samples i and j are both in class k), the
covariance of the class-conditional means is ``Xcᵀ M Xc / n`` and every d × d trace
``tr(h(Σ) Σ_g)`` reduces to ``Σ_i h(λ_i/n)·(λ_i/n)·u_iᵀ M u_i``. Since ``K 1 = 0``, ``M`` is
replaced by the between-class projector ``M − 11ᵀ/n`` (same value, and a near-null eigenvector
that rounding leaves close to ``1`` contributes nothing).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from transferability.metrics._base import register_metric, require_classes, warn
from transferability.metrics.stats import LayerStats, layer_stats

__all__ = ["hscore", "hscore_reg", "logme"]

#: LogME fixed point (thuml/LogME ``LogME._fit_fixed_point``): at most 11 updates of (α, β),
#: stop when ``|t_new − t| / t <= 1e-3`` for ``t = α/β``; 1e-5 added to ``|m|²`` and
#: ``|y − Fm|²`` in the updates.
_LOGME_MAX_ITER = 11
_LOGME_TOL = 1e-3
_LOGME_EPS = 1e-5


def _between_class_weights(stats: LayerStats, vec: np.ndarray) -> np.ndarray:
    """``u_iᵀ (M − 11ᵀ/n) u_i`` for every column ``u_i`` of ``vec`` (each in [0, 1])."""
    per_class = stats.class_indicator().T @ vec  # (K, n): 1_kᵀ u_i
    within = (per_class**2 / stats.counts[:, None]).sum(axis=0)
    total = vec.sum(axis=0) ** 2 / stats.n
    return np.clip(within - total, 0.0, None)


# --------------------------------------------------------------------------------------------
# H-score
# --------------------------------------------------------------------------------------------


@register_metric("hscore", higher_is_better=True)
def _hscore(stats: LayerStats) -> float:
    require_classes(stats.counts)
    lam, vec = stats.centred_eigh
    keep = lam > 0.0
    if not keep.any():
        warn("H-score: all samples are identical (zero covariance); H-score is NaN")
        return math.nan
    return float(_between_class_weights(stats, vec[:, keep]).sum())


def hscore(features: Any, labels: Any) -> float:
    """H-score (Bao et al. 2019, "An information-theoretic approach to transferability in task
    transfer learning"): ``H = tr(cov(f)⁺ cov(g))``, ``g = E[f | y]`` the class mean of f.

    Computed in the n × n form ``H = tr(K K⁺ M)`` with ``K = Xc Xcᵀ`` the Gram matrix of the
    column-centred features and ``M`` the class-averaging matrix (``M_ij = 1/n_k`` for i, j in
    class k); the 1/n or 1/(n−1) of the covariances cancels, so this equals TLlib's
    ``trace(pinv(np.cov(f), rcond=1e-15) @ np.cov(g))``. Pseudo-inverse convention: eigenvalues
    of K at or below ``n·ε·λ_max(K)`` (ε = float64 machine epsilon, ≈ 1.1e-13 at n = 500) are
    zero; TLlib cuts at 1e-15·λ_max of the d × d covariance, which keeps rounding noise.

    Direction: higher is better. Range [0, K−1] (K classes): H is the sum of the squared
    canonical correlations between f and the class indicators. **Saturation**: when the
    centred features span all of ``1⊥`` (d ≥ n−1 for generic data) H = K−1 whatever the
    features; use :func:`hscore_reg` there.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).

    Returns
    -------
    float
        ``nan`` with a :class:`MetricWarning` if every sample is identical.
    """
    return _hscore(layer_stats(features, labels))


hscore.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Regularised (shrinkage) H-score
# --------------------------------------------------------------------------------------------


def _ledoit_wolf(stats: LayerStats) -> tuple[float, float]:
    """``(α, μ)``: Ledoit–Wolf shrinkage and ``μ = tr Σ / d`` of the biased covariance ``Σ``,
    from the centred Gram matrix exactly as ``sklearn.covariance.ledoit_wolf_shrinkage``
    (``assume_centered=False``) computes them from the features:
    ``tr Σ = tr K / n``, ``‖Σ‖_F² = ‖K‖_F² / n²``, ``Σ_i ‖x_i‖⁴ = Σ_i K_ii²``."""
    k = stats.centred_gram
    n, d = stats.n, stats.n_features
    trace = float(np.trace(k)) / n  # tr Σ
    mu = trace / d
    if d == 1:  # sklearn: one feature, no shrinkage
        return 0.0, mu
    frob2 = float(np.sum(k * k)) / n**2  # ‖Σ‖_F²
    fourth = float(np.sum(np.diag(k) ** 2))  # Σ_i ‖x_i‖⁴
    beta = (fourth / n - frob2) / (d * n)
    delta = (frob2 - trace**2 / d) / d  # ‖Σ − μI‖_F² / d
    beta = min(beta, delta)
    alpha = 0.0 if beta == 0.0 else beta / delta
    return float(min(max(alpha, 0.0), 1.0)), mu


@register_metric("hscore_reg", higher_is_better=True)
def _hscore_reg(stats: LayerStats) -> float:
    require_classes(stats.counts)
    alpha, mu = _ledoit_wolf(stats)
    if mu <= 0.0:
        warn("regularised H-score: all samples are identical (zero covariance); it is NaN")
        return math.nan
    lam, vec = stats.centred_eigh
    shrink = stats.n * alpha * mu  # n·α·μ: the ridge in the units of K's eigenvalues
    if shrink > 0.0:
        weight = (1.0 - alpha) * lam / ((1.0 - alpha) * lam + shrink)
    else:  # α = 0: plain H-score (pseudo-inverse)
        weight = (lam > 0.0).astype(np.float64)
    return float(weight @ _between_class_weights(stats, vec))


def hscore_reg(features: Any, labels: Any) -> float:
    """Regularised H-score (Ibrahim et al. 2022, "Newer is not always better: rethinking
    transferability metrics, their peculiarities, stability and performance"):
    ``H_α = tr(((1−α)Σ + αμI)⁻¹ (1−α) Σ_g)``.

    ``Σ`` is the biased (1/n) covariance of the features, ``(1−α)Σ + αμI`` (``μ = tr Σ / d``)
    its Ledoit–Wolf shrinkage with ``α`` exactly as ``sklearn.covariance.ledoit_wolf_shrinkage``
    on the centred features (clipped to [0, 1]; 0 for d = 1), and ``Σ_g`` the biased covariance
    of the class means ``E[f | y]``. n × n form: ``H_α = Σ_i w_i·u_iᵀ M u_i`` with
    ``K = Xc Xcᵀ = Σ λ_i u_i u_iᵀ`` and ``w_i = (1−α)λ_i / ((1−α)λ_i + nαμ)``; α and μ follow
    from ``tr K``, ``‖K‖_F`` and ``diag K``.

    Convention: both covariances use 1/n, so ``H_α → H`` (:func:`hscore`) as ``α → 0`` and
    ``H_α < K−1`` whenever α > 0. TLlib's ``regularized_h_score`` (sklearn ``LedoitWolf`` on the
    centred features, ``np.cov`` — i.e. 1/(n−1) — for ``Σ_g``, ``pinv(rcond=1e-15)``) returns
    ``n/(n−1)`` times this value.

    Direction: higher is better. Range [0, K−1], below K−1 whenever α > 0 (always ≤
    :func:`hscore`); unlike :func:`hscore` it does not saturate at K−1 when d ≥ n. Needs two
    classes (``ValueError``); identical samples give ``nan`` with a :class:`MetricWarning`.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,).
    """
    return _hscore_reg(layer_stats(features, labels))


hscore_reg.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------------


#: ``evidence=`` of :func:`logme`: the exact marginal likelihood of the paper's model (default),
#: or thuml/LogME's ``_fit_fixed_point`` value, which omits d − n zero eigenvalues when n < d.
LOGME_EVIDENCE = ("exact", "thuml_fixed_point")


def _logme_evidence(sigma: np.ndarray, z2: np.ndarray, n: int, zero_terms: float = 0.0) -> float:
    """Maximised log evidence / n of ``y ~ N(F m, β⁻¹ I)``, ``m ~ N(0, α⁻¹ I)`` given the
    eigenvalues ``sigma`` of ``F Fᵀ`` (n of them, zeros included) and ``z2 = (Uᵀ y)²``.

    Exact evidence, plus ``zero_terms/2 · log α`` at the final α: thuml/LogME's code leaves
    ``zero_terms`` zero eigenvalues of ``Fᵀ F`` out of its log-determinant (see :func:`logme`).
    """
    alpha = beta = 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(_LOGME_MAX_ITER):
            t = alpha / beta
            shrink = t / (sigma + t)
            gamma = float(np.sum(sigma / (sigma + t)))
            m2 = float(np.sum(sigma * z2 / (sigma + t) ** 2))  # |m|²
            res2 = float(np.sum(shrink**2 * z2))  # |y − F m|² (null space of Fᵀ included)
            alpha = gamma / (m2 + _LOGME_EPS)
            beta = (n - gamma) / (res2 + _LOGME_EPS)
            if abs(alpha / beta - t) / t <= _LOGME_TOL:
                break
        # d/2·log α − ½·Σ_{i≤d} log(α + βσ_i) with σ_i = 0 beyond the rank of F
        logdet = float(np.sum(np.log1p(beta * sigma / alpha)))
        evidence = (
            0.5 * n * math.log(beta)
            + 0.5 * zero_terms * math.log(alpha)
            - 0.5 * logdet
            - 0.5 * beta * res2
            - 0.5 * alpha * m2
            - 0.5 * n * math.log(2.0 * math.pi)
        )
    return evidence / n


def _logme_stats(stats: LayerStats, evidence: str = "exact") -> float:
    if evidence not in LOGME_EVIDENCE:
        raise ValueError(f"evidence must be one of {LOGME_EVIDENCE}, got {evidence!r}")
    require_classes(stats.counts)
    sigma, vec = stats.gram_eigh
    if not (sigma > 0.0).any():
        warn("LogME: all features are zero; LogME is NaN")
        return math.nan
    # the exact evidence sums log(α + βσ) over all d eigenvalues of FᵀF (the d − n beyond the
    # n of F Fᵀ are zeros); thuml's _fit_fixed_point over the n singular values of F only
    d, n = stats.n_features, stats.n
    zero_terms = float(d - n) if evidence == "thuml_fixed_point" and d > n else 0.0
    z2 = (vec.T @ stats.class_indicator()) ** 2  # (n, K): (Uᵀ y_k)²
    try:
        values = [_logme_evidence(sigma, z2[:, k], n, zero_terms) for k in range(z2.shape[1])]
    except (ValueError, ZeroDivisionError):  # math.log of 0 or a negative number
        values = [math.nan]
    value = float(np.mean(values))
    if not math.isfinite(value):
        warn("LogME: the evidence maximisation did not give a finite value; LogME is NaN")
        return math.nan
    return value


@register_metric("logme", higher_is_better=True)
def _logme(stats: LayerStats) -> float:
    return _logme_stats(stats, "exact")


@register_metric("logme_thuml_fixed_point", higher_is_better=True)
def _logme_thuml_fixed_point(stats: LayerStats) -> float:
    return _logme_stats(stats, "thuml_fixed_point")


def logme(features: Any, labels: Any, *, evidence: str = "exact") -> float:
    """LogME (You et al. 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning"): mean over classes of the maximised log evidence per sample of a Bayesian linear
    regression from the features to the one-vs-rest indicator of the class.

    Model: ``y = F m + noise``, ``m ~ N(0, α⁻¹ I_d)``, ``noise ~ N(0, β⁻¹ I_n)``. With the
    eigen-decomposition ``F Fᵀ = U diag(σ) Uᵀ`` of the *raw* (uncentred, unnormalised — as in
    the paper and thuml/LogME) Gram matrix, ``z = Uᵀ y`` and ``t = α/β``, the fixed point
    ``γ = Σ σ/(σ+t)``, ``|m|² = Σ σz²/(σ+t)²``, ``|y−Fm|² = Σ (t/(σ+t))² z²``,
    ``α = γ/(|m|² + 1e-5)``, ``β = (n−γ)/(|y−Fm|² + 1e-5)`` starts at α = β = 1 and stops after
    11 updates or when ``|Δt|/t <= 1e-3``; then ``L = n/2·log β + d/2·log α − n/2·log 2π
    − β/2·|y−Fm|² − α/2·|m|² − ½·Σ_{i=1..d} log(α + βσ_i)`` with the final α, β and the last
    ``|m|²``, ``|y−Fm|²``. These are the iteration conventions of thuml/LogME
    ``_fit_fixed_point``.

    ``evidence="exact"`` (default; registered as ``logme``) is the exact marginal likelihood of
    the paper's model (its Algorithm 1): the log-determinant runs over all d eigenvalues of
    ``Fᵀ F``, zeros contributing ``log α`` each, so the value depends on F only through ``F Fᵀ``
    (zero columns change nothing). It is what thuml/LogME's ``_fit_icml`` (the paper's code),
    TLlib's ``log_maximum_evidence`` and google-research's ``logme`` compute.
    ``evidence="thuml_fixed_point"`` (registered as ``logme_thuml_fixed_point``, for comparing
    with numbers from that code) is thuml/LogME's later default ``_fit_fixed_point``: when
    n < d its log-determinant runs over the n singular values of ``svd(F)`` while it keeps
    ``d/2·log α`` — a known bug (thuml/LogME PR #24) that makes the value grow with d and so
    favours wide layers. The two differ by ``(d − n)/(2n)·log α`` per class when n < d and agree
    when n ≥ d (thuml/LogME then takes the d eigenvalues of ``FᵀF`` and drops those with a
    singular value ≤ 1e-10: for a rank-deficient F the zero ones come out of ``eigh`` as
    ±1e-12 rounding, and it keeps the positive ones — a rounding-dependent count; the exact
    evidence is used here).
    The mean runs over the classes present in ``labels`` (thuml/LogME also counts absent
    integer codes below the largest label).

    Direction: higher is better (a log-likelihood per sample; not scale invariant).

    Parameters
    ----------
    features
        Activations (n, d), any d (the n × n form is exact for d > n), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    evidence
        ``"exact"`` (default) or ``"thuml_fixed_point"``; see above.

    Returns
    -------
    float
        ``nan`` with a :class:`MetricWarning` if all features are zero or the iteration breaks
        down.
    """
    if evidence not in LOGME_EVIDENCE:  # before the statistics: a typo costs nothing
        raise ValueError(f"evidence must be one of {LOGME_EVIDENCE}, got {evidence!r}")
    return _logme_stats(layer_stats(features, labels), evidence)


logme.higher_is_better = True  # type: ignore[attr-defined]
