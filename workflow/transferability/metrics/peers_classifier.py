"""Peer scores that fit a classifier to the features: NLEEP and SFDA (PEER_METRICS.md).

Both are computed from the n × n statistics in :class:`~transferability.metrics.stats.LayerStats`
(never the n × d activations), so they run on VGG ``pool1`` (n = 1 200, d = 802 816) in
O(n²) memory. The public ``f(features, labels)`` builds the statistics of in-memory activations
and calls the registered statistics form ``_f(stats)``.

Shared algebra — *principal coordinates*: with ``Xc`` the column-centred activations and
``K = Xc Xcᵀ = U Λ Uᵀ``, the rows of ``Z = U Λ^½`` (n × r, r = rank K ≤ n − 1) are the samples
written in an orthonormal basis ``Q`` (d × r) of their own centred span: ``Xc = Z Qᵀ``. Every
quantity the two scores need is either invariant under that change of basis or, like the
isotropic ridge of SFDA, acts on the span by itself; so the scores follow exactly from ``Z``,
``d`` and (for SFDA's power iteration) the per-sample row sums. Eigenvalues of ``K`` at the
rounding level of ``eigh`` (≤ n·ε·λ_max) are treated as zero.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from transferability.metrics._base import register_metric, require_classes, warn
from transferability.metrics.stats import LayerStats, layer_stats

__all__ = ["nleep", "sfda"]


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    onehot = np.zeros((len(codes), k))
    onehot[np.arange(len(codes)), codes] = 1.0
    return onehot


def _all_identical(stats: LayerStats) -> bool:
    """Every sample byte-identical to the first (exact, from the streamed row hashes)."""
    return bool(np.all(stats.duplicate_of == stats.duplicate_of[0]))


def _classes_are_points(stats: LayerStats) -> bool:
    """Every sample byte-identical to the first sample of its class: no within-class scatter
    (exact; the principal coordinates would leave rounding noise)."""
    _, first = np.unique(stats.codes, return_index=True)  # first sample of every class
    dup = stats.duplicate_of
    return bool(np.all(dup == dup[first[stats.codes]]))


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# NLEEP
# --------------------------------------------------------------------------------------------


def _check_nleep_options(pca_dim, variance, component_ratio, random_state) -> None:
    if pca_dim is not None and (
        isinstance(pca_dim, bool) or not isinstance(pca_dim, numbers.Integral) or pca_dim < 1
    ):
        raise ValueError(f"pca_dim must be a positive integer or None, got {pca_dim!r}")
    if pca_dim is None and not (
        isinstance(variance, numbers.Real) and not isinstance(variance, bool) and 0 < variance < 1
    ):
        raise ValueError(f"variance must be a fraction in (0, 1), got {variance!r}")
    if (
        isinstance(component_ratio, bool)
        or not isinstance(component_ratio, numbers.Integral)
        or component_ratio < 1
    ):
        raise ValueError(f"component_ratio must be a positive integer, got {component_ratio!r}")
    if random_state is not None and (
        isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)
    ):
        raise ValueError(f"random_state must be an integer or None, got {random_state!r}")


#: Memory allowed for one copy of NLEEP's mixture covariances (n_components × p × p float64;
#: scikit-learn holds about three such arrays while fitting). Above it the PCA dimension p is
#: capped, with a warning, so that the streaming pass stays within SPEC §9's 2 GB.
NLEEP_COVARIANCE_BYTES = 256 * 2**20


def nleep_max_dim(n_components: int, budget: int | None = None) -> int:
    """The largest PCA dimension whose full covariances of ``n_components`` fit in ``budget``
    bytes (default :data:`NLEEP_COVARIANCE_BYTES`)."""
    budget = NLEEP_COVARIANCE_BYTES if budget is None else budget
    return max(1, math.isqrt(budget // (8 * n_components)))


def _pca_scores(stats: LayerStats, pca_dim: int | None, variance: float) -> np.ndarray | None:
    """PCA scores of the activations as ``sklearn.decomposition.PCA(n_components=variance or
    pca_dim, svd_solver='full').fit_transform`` gives them, up to the sign of each component;
    ``None`` if the activations have no variance."""
    lam, vec = stats.centred_eigh_desc
    m = min(stats.n, stats.n_features)  # components of the full SVD of the n × d matrix
    lam, vec = lam[:m], vec[:, :m]
    total = float(lam.sum())
    if not total > 0.0:
        return None
    if pca_dim is None:
        # sklearn: the fewest components whose cumulated ratio is strictly above ``variance``
        ratio_cumsum = np.cumsum(lam / total)
        k = min(int(np.searchsorted(ratio_cumsum, variance, side="right")) + 1, m)
    else:
        if pca_dim > m:
            raise ValueError(
                f"pca_dim={pca_dim} exceeds min(n_samples, n_features)={m} "
                "(the number of principal components)"
            )
        k = int(pca_dim)
    u = vec[:, :k]
    # sign convention: the largest-magnitude entry of every score column is positive
    pivot = u[np.argmax(np.abs(u), axis=0), np.arange(k)]
    u = u * np.where(pivot < 0.0, -1.0, 1.0)
    return u * np.sqrt(lam[:k])


def _leep_of_posteriors(resp: np.ndarray, codes: np.ndarray, k: int) -> float:
    """google-research ``leep.get_leep_score`` on posteriors ``resp`` (n × Z): mean over samples
    of ``log Σ_z p(z|x_i) p(y_i|z)`` (``p(y|z)`` from the empirical joint, 0 for a component
    without mass), ``−log K`` where that sum is 0."""
    joint = _one_hot(codes, k).T @ resp  # (K, Z): Σ_{i in class y} p(z|x_i)
    mass = joint.sum(axis=0)
    cond = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0.0)  # p(y|z)
    eep = np.einsum("iz,iz->i", resp, cond[codes])
    with np.errstate(divide="ignore"):
        logs = np.where(eep > 0.0, np.log(np.where(eep > 0.0, eep, 1.0)), -math.log(k))
    return float(np.mean(logs))


@register_metric("nleep", higher_is_better=True)
def _nleep(
    stats: LayerStats,
    *,
    pca_dim: int | None = None,
    variance: float = 0.8,
    component_ratio: int = 5,
    random_state: int | None = 123,
) -> float:
    require_classes(stats.counts)
    _check_nleep_options(pca_dim, variance, component_ratio, random_state)
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as err:  # pragma: no cover - scikit-learn is in the environment
        raise ImportError("NLEEP needs scikit-learn (sklearn.mixture.GaussianMixture)") from err
    k = len(stats.counts)
    n_components = component_ratio * k
    if stats.n < n_components:
        warn(
            f"NLEEP: {stats.n} samples are fewer than the {n_components} mixture components "
            f"({component_ratio} × {k} classes); NLEEP is NaN"
        )
        return math.nan
    scores = None if _all_identical(stats) else _pca_scores(stats, pca_dim, variance)
    if scores is None:
        warn("NLEEP: all samples are identical (zero variance); NLEEP is NaN")
        return math.nan
    cap = nleep_max_dim(n_components)
    if scores.shape[1] > cap:
        warn(
            f"NLEEP: {scores.shape[1]} principal components (variance {variance}) capped at "
            f"{cap}, the most whose {n_components} mixture covariances fit in "
            f"{NLEEP_COVARIANCE_BYTES // 2**20} MB; the peer would use all of them"
        )
        scores = scores[:, :cap]
    try:
        gmm = GaussianMixture(n_components=n_components, random_state=random_state)
        resp = gmm.fit(scores).predict_proba(scores)
    except (ValueError, np.linalg.LinAlgError) as err:
        warn(f"NLEEP: the Gaussian mixture could not be fitted ({err}); NLEEP is NaN")
        return math.nan
    # the peer hands the posteriors to LEEP as float32
    resp = resp.astype(np.float32).astype(np.float64)
    value = _leep_of_posteriors(resp, stats.codes, k)
    if not math.isfinite(value):
        warn("NLEEP: the score is not finite; NLEEP is NaN")
        return math.nan
    return value


def nleep(
    features: Any,
    labels: Any,
    *,
    pca_dim: int | None = None,
    variance: float = 0.8,
    component_ratio: int = 5,
    random_state: int | None = 123,
) -> float:
    """NLEEP (Li et al. 2021, "Ranking Neural Checkpoints"), as google-research
    ``stable_transfer/transferability/nleep.py`` + ``leep.py`` compute it.

    1. PCA of the features keeping the fewest components whose cumulated explained-variance
       ratio exceeds ``variance`` (0.8; sklearn ``PCA(n_components=0.8, svd_solver='full')``,
       the peer's ``pca_reduction`` default), or the first ``pca_dim`` components if given.
    2. ``sklearn.mixture.GaussianMixture(n_components=component_ratio·K,
       random_state=random_state)`` with its other defaults (full covariances,
       ``reg_covar=1e-6``, k-means initialisation, one initialisation) fitted to the scores;
       posteriors ``p(z|x_i)`` cast to float32 as the peer does.
    3. LEEP with the components as "source classes": ``p(y|z) = Σ_{i: y_i=y} p(z|x_i) /
       Σ_i p(z|x_i)`` (0 for a component without mass) and
       ``NLEEP = (1/n) Σ_i log Σ_z p(z|x_i) p(y_i|z)``, a term being ``−log K`` where its sum
       is 0.

    n × n form: the PCA scores are ``u_j·√λ_j`` from the eigenpairs of the centred Gram matrix
    ``Xc Xcᵀ`` (the variance ratios are the same as those of the full SVD of ``Xc``, whose
    ``min(n, d)`` components count towards the total). Conventions: the scores are float64
    (the peer casts them to float32, with which its mixture fit fails on some inputs); the sign
    of each component is fixed by making its largest-magnitude score positive (sklearn fixes it
    from the loadings, which the n × n statistics do not hold) — the mixture fit does not
    depend on the signs (k-means++ draws sample indices and uses distances; EM is equivariant
    under reflections), so values agree with sklearn's PCA up to EM rounding (≈ 1e-8 on the
    test problems; PEER_METRICS tolerance 1e-3). The result depends on the sample order through
    the k-means initialisation (EM may reach another local optimum when the order changes).
    Needs scikit-learn at run time.

    Memory bound (a convention of this package): the mixture's full covariances take
    ``5K·p²`` floats for p principal components; where 0.8 of the variance needs more than
    :func:`nleep_max_dim` components (e.g. white-noise-like activations with K = 40: p ≈ 900
    would need ~1.3 GB per copy), p is capped at that number (409 for K = 40 with the 256 MiB of
    ``NLEEP_COVARIANCE_BYTES``) with a :class:`MetricWarning`, whose text the workflow records
    in the table's ``note``. Below the cap the value is the peer's.

    Direction: higher is better; ``NLEEP ≤ 0`` up to rounding (a mean log-probability), ``0``
    when every component holds one class only and the posteriors are certain; ``−log K`` is the
    uninformative level of balanced classes.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).
    pca_dim
        Number of principal components (overrides ``variance``); at most ``min(n, d)``.
    variance
        Fraction of the variance the kept components must exceed, in (0, 1).
    component_ratio
        Mixture components per class (the paper's and peer's 5).
    random_state
        Seed of the mixture's k-means initialisation (the peer's 123).

    Returns
    -------
    float
        ``nan`` with a :class:`MetricWarning` if all samples are identical, there are fewer
        samples than mixture components, or the mixture cannot be fitted.
    """
    _check_nleep_options(pca_dim, variance, component_ratio, random_state)
    return _nleep(
        layer_stats(features, labels),
        pca_dim=pca_dim,
        variance=variance,
        component_ratio=component_ratio,
        random_state=random_state,
    )


nleep.higher_is_better = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# SFDA
# --------------------------------------------------------------------------------------------

#: TencentARC/SFDA: ``iterative_A(Sw, max_iterations=3)``, ``s = max(exp(−5·λ), 1e-10)``.
_SFDA_POWER_ITERATIONS = 3
_SFDA_SHRINK_RATE = 5.0
_SFDA_MIN_SHRINKAGE = 1e-10


def _class_means(z: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    means = np.zeros((len(counts), z.shape[1]))
    np.add.at(means, codes, z)
    return means / counts[:, None]


def _sfda_shrinkage(within: np.ndarray, start: np.ndarray, n: int) -> float | None:
    """``max(exp(−5·λ̂), 1e-10)`` with λ̂ the peer's ``iterative_A(Sw, 3)`` estimate of the
    largest eigenvalue of ``Sw = WᵀW/n``, started from ``Sw·1``; in principal coordinates
    ``Sw·1_d = Q·Wᵀ(W 1_d)/n`` and ``Q`` (orthonormal) changes neither norms nor inner
    products. ``None`` where the iteration divides by zero (the peer's NaN)."""
    sw = within.T @ within / n
    x = within.T @ start / n  # Sw · 1_d
    y = x
    for _ in range(_SFDA_POWER_ITERATIONS):
        t = sw @ x
        norm = float(np.linalg.norm(t))
        if not norm > 0.0:
            return None
        y = t / norm
        t = sw @ y
        norm = float(np.linalg.norm(t))
        if not norm > 0.0:
            return None
        x = t / norm
    largest = float(x @ sw @ y)
    return max(math.exp(-_SFDA_SHRINK_RATE * largest), _SFDA_MIN_SHRINKAGE)


def _sfda_lda_proba(
    z: np.ndarray, codes: np.ndarray, counts: np.ndarray, shrinkage: float, n_features: int
) -> np.ndarray:
    """Posteriors of the peer's shrunk LDA fitted to and evaluated on the rows of ``z``.

    ``Sw = Σ_c prior_c·cov_c`` (biased), ``Sw_s = (1−s)·Sw + s·tr(Sw)/d·I``,
    ``coef_c = Sw_s⁻¹ μ_c``, ``bias_c = −½ μ_cᵀ coef_c + log prior_c``, softmax. The ridge
    ``s·tr(Sw)/d`` uses the full feature dimension ``d``; on the span of the samples ``Sw_s``
    is ``(1−s)·Sw_r + ridge·I_r`` and no vector involved leaves that span.
    """
    n = len(z)
    means = _class_means(z, codes, counts)
    within = z - means[codes]
    sw = within.T @ within / n
    ridge = shrinkage * float(np.trace(sw)) / n_features
    shrunk = (1.0 - shrinkage) * sw
    shrunk[np.diag_indices_from(shrunk)] += ridge
    coef = np.linalg.solve(shrunk, means.T).T  # (K, r): μ_c Sw_s⁻¹
    bias = -0.5 * np.einsum("kr,kr->k", means, coef) + np.log(counts / n)
    return _softmax(z @ coef.T + bias)


@register_metric("sfda", higher_is_better=True)
def _sfda(stats: LayerStats) -> float:
    require_classes(stats.counts)
    codes, counts, n = stats.codes, stats.counts, stats.n
    lam, vec = stats.centred_eigh_desc
    keep = lam > 0.0
    if _all_identical(stats) or not keep.any():
        warn("SFDA: all samples are identical (zero scatter); SFDA is NaN")
        return math.nan
    if _classes_are_points(stats):
        warn("SFDA: every class is a single point (zero within-class scatter); SFDA is NaN")
        return math.nan
    z = vec[:, keep] * np.sqrt(lam[keep])  # principal coordinates: z zᵀ = Xc Xcᵀ
    within = z - _class_means(z, codes, counts)[codes]
    # W·1_d: the per-sample feature sums minus their class means
    row_sum = stats.row_sum - stats.row_sum.mean()
    start = row_sum - (np.bincount(codes, weights=row_sum) / counts)[codes]
    shrinkage = _sfda_shrinkage(within, start, n)
    if shrinkage is None:
        warn("SFDA: the power iteration for the shrinkage met a zero vector; SFDA is NaN")
        return math.nan
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        proba = _sfda_lda_proba(z, codes, counts, shrinkage, stats.n_features)
        proba = _softmax(proba)  # the peer's second softmax, "for a meaningful ConfMix"
        # ConfMix: x_i ← p_i·x_i + (1 − p_i)·(unweighted mean of the other classes' means)
        means = _class_means(z, codes, counts)
        others = (means.sum(axis=0) - means) / (len(counts) - 1)
        p = proba[np.arange(n), codes][:, None]
        mixed = p * z + (1.0 - p) * others[codes]
        proba = _sfda_lda_proba(mixed, codes, counts, shrinkage, stats.n_features)
        value = float(np.mean(proba[np.arange(n), codes]))
    if not math.isfinite(value):
        warn("SFDA: the discriminant analysis gave no finite value; SFDA is NaN")
        return math.nan
    return value


def sfda(features: Any, labels: Any) -> float:
    """SFDA (Shao et al. 2022, "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space"), as TencentARC/SFDA ``metrics.py`` ``SFDA_Score`` computes
    it (no PCA).

    1. Within-class scatter ``Sw = Σ_c prior_c·cov_c`` (biased class covariances, priors
       ``n_c/n``); shrinkage ``s = max(exp(−5·λ̂), 1e-10)``, ``λ̂`` the peer's
       ``iterative_A(Sw, 3)``: three double steps of the power iteration started from
       ``Sw·1``, returning ``xᵀ Sw y`` for its last two iterates.
    2. Regularised LDA: ``Sw_s = (1−s)·Sw + s·tr(Sw)/d·I``, ``coef_c = Sw_s⁻¹ μ_c``,
       ``bias_c = −½ μ_cᵀ coef_c + log prior_c``; ``p = softmax(x·coef + bias)``, then
       ``p ← softmax(p)`` (the peer softens the posteriors by a second softmax).
    3. ConfMix: ``x_i ← p_i·x_i + (1 − p_i)·m_{y_i}`` with ``p_i = p(y_i|x_i)`` and ``m_c`` the
       unweighted mean of the other classes' means (of the unmixed features).
    4. Refit the LDA on the mixed features with the same ``s`` (``Sw``, its trace and the means
       recomputed); ``SFDA = (1/n) Σ_i p(y_i|x_i)`` (no log).

    The peer also shrinks the total scatter ``St`` and solves the generalised eigenproblem of
    ``(St − Sw_s, Sw_s)``; its eigenvectors ``V`` satisfy ``V Vᵀ = Sw_s⁻¹`` whatever ``St`` is,
    so its coefficients are ``μ_c Sw_s⁻¹`` as above and ``St`` does not enter the score.

    n × n form (exact): in the principal coordinates of the centred Gram matrix (module
    docstring) the class means, the within-class deviations and the ConfMix-mixed samples are
    combinations of the samples, ``Sw_s`` acts on their span as ``(1−s)·Sw + s·tr(Sw)/d·I``
    there, and the power iteration's start ``Sw·1_d`` comes from the per-sample feature sums.
    The LDA posteriors, ConfMix and hence the score are invariant to a common shift of the
    features, so the centred Gram matrix suffices; ``d`` enters only through ``tr(Sw)/d``.
    Computation is float64 (the peer writes ConfMix back into the input array, in float32
    if the features are float32).

    Direction: higher is better; range (0, 1]. Edge behaviour: ``s`` hits its 1e-10 floor for
    features on the usual scales (``λ̂ > 4.6``), and when ``d ≥ n`` the class means differ in
    directions without within-class scatter, so the near-unregularised LDA separates the
    training samples and SFDA approaches 1 (it saturates, like the H-score); tight
    well-separated classes also give SFDA → 1.

    Parameters
    ----------
    features
        Activations (n, d) (ndim > 2 is flattened), NumPy or torch.
    labels
        Integer class labels (n,); at least two classes (``ValueError`` otherwise).

    Returns
    -------
    float
        ``nan`` with a :class:`MetricWarning` if all samples are identical, every class is a
        single point, or the power iteration meets a zero vector (where the peer gives NaN).
    """
    return _sfda(layer_stats(features, labels))


sfda.higher_is_better = True  # type: ignore[attr-defined]
