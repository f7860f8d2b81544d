"""Tests for H-score, regularised H-score and LogME (n × n forms) against d × d implementations
written here, closed forms and invariances."""

from __future__ import annotations

import numpy as np
import pytest

from transferability.metrics import METRICS, MetricWarning, compute_metrics
from transferability.metrics.linear import _ledoit_wolf, hscore, hscore_reg, logme
from transferability.metrics.stats import layer_stats


def _data(seed: int, n: int, d: int, k: int = 4, sep: float = 0.8, offset: float = 0.0):
    """Gaussian features with class-dependent means; labels 0..k−1 (all present)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    x = rng.standard_normal((n, d)) + sep * np.eye(k)[y] @ rng.standard_normal((k, d)) + offset
    return x, y


def _class_means(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return g


# ------------------------------------------------------------------------------------- H-score


def _hscore_tllib(f: np.ndarray, y: np.ndarray) -> float:
    """TLlib's d × d convention: trace(pinv(np.cov(f), rcond=1e-15) @ np.cov(g))."""
    cov_f = np.atleast_2d(np.cov(f, rowvar=False))
    cov_g = np.atleast_2d(np.cov(_class_means(f, y), rowvar=False))
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


@pytest.mark.parametrize(("n", "d", "offset"), [(300, 20, 0.0), (200, 60, 5.0), (120, 1, 0.0)])
def test_hscore_matches_tllib_d_by_d(n, d, offset):
    x, y = _data(n + d, n, d, offset=offset)
    assert hscore(x, y) == pytest.approx(_hscore_tllib(x, y), rel=1e-6)


def test_hscore_closed_forms():
    rng = np.random.default_rng(0)
    # features = the class indicators: cov(g) = cov(f) of rank K−1, so H = K−1
    y = np.concatenate([np.arange(5), rng.integers(0, 5, 95)])
    assert hscore(np.eye(5)[y], y) == pytest.approx(4.0, abs=1e-10)
    # one feature: H = between-class / total sum of squares (the correlation ratio η²)
    x = rng.standard_normal(100) + 0.5 * y
    means = np.array([x[y == c].mean() for c in range(5)])
    ssb = np.sum(np.bincount(y) * (means - x.mean()) ** 2)
    eta2 = ssb / np.sum((x - x.mean()) ** 2)
    assert hscore(x[:, None], y) == pytest.approx(eta2, rel=1e-10)


@pytest.mark.parametrize("d", [39, 40, 500])
def test_hscore_saturates_when_d_ge_n_minus_1(d):
    x, y = _data(d, 40, d, k=3, sep=0.0)  # labels unrelated to the features
    assert hscore(x, y) == pytest.approx(2.0, abs=1e-8)


def test_hscore_invariances_and_range():
    x, y = _data(1, 150, 10, sep=0.5)
    ref = hscore(x, y)
    assert 0.0 < ref < 3.0
    a = np.random.default_rng(2).standard_normal((10, 10))  # invertible affine map
    assert hscore(x @ a + 100.0, y) == pytest.approx(ref, rel=1e-8)
    assert hscore(x, np.array([7, -2, 30, 4])[y]) == pytest.approx(ref, rel=1e-12)
    perm = np.random.default_rng(3).permutation(150)
    assert hscore(x[perm], y[perm]) == pytest.approx(ref, rel=1e-10)


# ------------------------------------------------------------------------ regularised H-score


def _hscore_reg_direct(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """d × d: tr(((1−α)Σ + αμI)⁻¹ (1−α) Σ_g), biased covariances, sklearn's α."""
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    n, d = f.shape
    fc = f - f.mean(axis=0)
    alpha = sklearn_cov.ledoit_wolf_shrinkage(fc)
    sigma = fc.T @ fc / n
    gc = _class_means(fc, y)
    sigma_g = gc.T @ gc / n
    shrunk = (1 - alpha) * sigma + alpha * np.trace(sigma) / d * np.eye(d)
    return float(np.trace(np.linalg.solve(shrunk, (1 - alpha) * sigma_g))), float(alpha)


@pytest.mark.parametrize(
    ("n", "d", "offset"), [(300, 20, 0.0), (200, 60, 3.0), (60, 150, 0.0), (40, 400, 1.0)]
)
def test_hscore_reg_matches_direct_sklearn_shrinkage(n, d, offset):
    x, y = _data(7 * n + d, n, d, offset=offset)
    ref, alpha = _hscore_reg_direct(x, y)
    assert hscore_reg(x, y) == pytest.approx(ref, rel=1e-6)
    ours_alpha, _ = _ledoit_wolf(layer_stats(x, y))
    assert 0.0 <= ours_alpha <= 1.0
    assert ours_alpha == pytest.approx(alpha, rel=1e-8, abs=1e-12)


def test_hscore_reg_tllib_convention_factor():
    """TLlib's regularized_h_score uses np.cov (1/(n−1)) for cov(g): n/(n−1) times ours."""
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    x, y = _data(5, 120, 30, offset=2.0)
    fc = x - x.mean(axis=0)
    lw = sklearn_cov.LedoitWolf(assume_centered=False).fit(fc)
    cov_g = np.cov(_class_means(fc, y), rowvar=False)
    pinv = np.linalg.pinv(lw.covariance_, rcond=1e-15)
    tllib = np.trace(pinv @ ((1 - lw.shrinkage_) * cov_g))
    assert hscore_reg(x, y) * 120 / 119 == pytest.approx(tllib, rel=1e-8)


@pytest.mark.parametrize("d", [40, 200])
def test_hscore_reg_does_not_saturate(d):
    x, y = _data(d, 40, d, k=3, sep=0.0)
    value = hscore_reg(x, y)
    assert np.isfinite(value) and 0.0 < value < 2.0 - 1e-3
    assert hscore(x, y) == pytest.approx(2.0, abs=1e-8)
    # signal still raises it
    xs, ys = _data(d, 40, d, k=3, sep=3.0)
    assert hscore_reg(xs, ys) > value


def test_hscore_reg_bounds_and_no_shrinkage_limit():
    x, y = _data(11, 200, 15)
    assert 0.0 < hscore_reg(x, y) <= hscore(x, y)
    # one feature: sklearn's α is 0, so the regularised H-score is the H-score
    assert hscore_reg(x[:, :1], y) == pytest.approx(hscore(x[:, :1], y), rel=1e-12)


# ----------------------------------------------------------------------------------- LogME


def _logme_d_by_d(f: np.ndarray, y: np.ndarray) -> float:
    """Textbook d × d evidence maximisation (eigh of FᵀF), thuml/LogME's fixed-point schedule."""
    n, d = f.shape
    sig, v = np.linalg.eigh(f.T @ f)
    sig = np.clip(sig, 0.0, None)
    out = []
    for c in np.unique(y):
        t_ = (y == c).astype(np.float64)
        vfy = v.T @ (f.T @ t_)
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            m = v @ (beta * vfy / (alpha + beta * sig))  # β A⁻¹ Fᵀ y, A = αI + βFᵀF
            gamma = np.sum(beta * sig / (alpha + beta * sig))
            m2 = m @ m
            res2 = np.sum((t_ - f @ m) ** 2)
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2
            - alpha / 2 * m2
            - 0.5 * np.sum(np.log(alpha + beta * sig))
        )
        out.append(evidence / n)
    return float(np.mean(out))


@pytest.mark.parametrize(
    ("n", "d", "offset", "sep"),
    [(300, 20, 0.0, 0.8), (200, 50, 2.0, 0.5), (150, 10, 0.0, 3.0), (80, 160, 0.0, 0.8),
     (100, 300, 0.0, 0.8), (60, 1000, 1.0, 0.5)],
)  # fmt: skip
def test_logme_default_is_the_exact_evidence(n, d, offset, sep):
    """``logme`` (the function's default and the registered metric) is the exact evidence, for
    n > d and n < d, equal to an independent d × d evidence maximisation."""
    x, y = _data(n * 3 + d, n, d, offset=offset, sep=sep)
    assert logme(x, y) == logme(x, y, evidence="exact")
    assert logme(x, y) == pytest.approx(_logme_d_by_d(x, y), rel=1e-6)
    assert METRICS["logme"](layer_stats(x, y)) == logme(x, y)


def _logme_thuml(f: np.ndarray, y: np.ndarray) -> float:
    """thuml/LogME's convention (LogME.py ``_fit_fixed_point``, commit 3a08950): singular values
    of F from ``svd(F)`` when n <= d (all n of them), from ``eigh(FᵀF)`` keeping s > 1e-10 when
    n > d; ``d/2·log α`` with the log-determinant over those values only."""
    n, d = f.shape
    if n <= d:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    else:
        lam, v = np.linalg.eigh(f.T @ f)
        s = np.sqrt(np.clip(lam, 0.0, None))
        keep = s > 1e-10
        s, u = s[keep], (f @ v[:, keep]) / s[keep]
    sigma = s**2
    out = []
    for c in np.unique(y):
        t_ = (y == c).astype(np.float64)
        x2 = (u.T @ t_) ** 2
        rest = t_ @ t_ - x2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = np.sum(sigma / (sigma + t))
            m2 = np.sum(sigma * x2 / (t + sigma) ** 2)
            res2 = np.sum(x2 / (1 + sigma / t) ** 2) + rest
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        logdet = np.sum(np.log(alpha + beta * sigma))
        evidence = (
            d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * logdet
            - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)
        )  # fmt: skip
        out.append(evidence / n)
    return float(np.mean(out))


@pytest.mark.parametrize(
    ("n", "d", "offset", "sep"),
    [(300, 20, 0.0, 0.8), (200, 50, 2.0, 0.5), (80, 160, 0.0, 0.8), (50, 3000, 0.0, 0.8),
     (60, 60, 1.0, 0.8)],
)  # fmt: skip
def test_logme_thuml_fixed_point_matches_its_transcription(n, d, offset, sep):
    x, y = _data(n + 7 * d, n, d, offset=offset, sep=sep)
    fixed_point = logme(x, y, evidence="thuml_fixed_point")
    assert fixed_point == pytest.approx(_logme_thuml(x, y), rel=1e-6)
    assert METRICS["logme_thuml_fixed_point"](layer_stats(x, y)) == fixed_point
    if d <= n:  # full column rank: the two conventions coincide
        assert fixed_point == pytest.approx(logme(x, y), rel=1e-12)
    else:  # they differ by (d − n)/(2n)·log α per class; the fixed point's grows with d
        assert fixed_point > logme(x, y) + 0.1


def test_logme_rank_deficient_both_conventions():
    # n > d but rank 10 < d = 30: thuml/LogME's eigh(FᵀF) gives the 20 zero eigenvalues as
    # ±1e-12 rounding and keeps the positive ones (s ≈ 1e-6 > 1e-10), so its value depends on
    # rounding signs; here (as for any n >= d) the fixed point gives the exact evidence
    small, y = _data(12, 200, 10)
    x = np.hstack([small, small @ np.random.default_rng(2).standard_normal((10, 20))])
    assert logme(x, y) == pytest.approx(_logme_d_by_d(x, y), rel=1e-6)
    assert logme(x, y, evidence="thuml_fixed_point") == pytest.approx(logme(x, y), rel=1e-12)


def test_logme_d_much_larger_than_n():
    x, y = _data(9, 50, 3000, k=3)
    value = logme(x, y)
    assert np.isfinite(value) and value < 1.0
    # the exact evidence depends on F only through F Fᵀ: zero columns change nothing, while
    # thuml/LogME's d/2·log α without the matching zero eigenvalues moves with d
    padded = np.hstack([x, np.zeros((50, 5000))])
    assert logme(padded, y) == pytest.approx(value, rel=1e-10)
    fixed_point = logme(padded, y, evidence="thuml_fixed_point")
    assert fixed_point != pytest.approx(logme(x, y, evidence="thuml_fixed_point"), rel=1e-3)
    assert fixed_point == pytest.approx(_logme_thuml(padded, y), rel=1e-6)
    small, ys = _data(9, 50, 20, k=3)
    padded = np.hstack([small, np.zeros((50, 100))])
    assert logme(padded, ys) == pytest.approx(_logme_d_by_d(padded, ys), rel=1e-6)
    with pytest.raises(ValueError, match="evidence must be one of"):
        logme(x, y, evidence="paper")


def test_logme_predictive_beats_noise():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(4), 50)
    noise = rng.standard_normal((200, 16))
    predictive = np.hstack([np.eye(4)[y], 0.1 * noise[:, :12]])
    assert logme(predictive, y) > logme(noise, y) + 0.5


def test_logme_invariances():
    x, y = _data(6, 120, 30, offset=1.0)
    ref = logme(x, y)
    perm = np.random.default_rng(0).permutation(120)
    assert logme(x[perm], y[perm]) == pytest.approx(ref, rel=1e-9)
    assert logme(x, np.array([3, 9, -1, 40])[y]) == pytest.approx(ref, rel=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((30, 30)))
    assert logme(x @ q, y) == pytest.approx(ref, rel=1e-8)  # rotations of feature space


# ----------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("fn", [hscore, hscore_reg, logme])
def test_bad_inputs(fn):
    x, y = _data(0, 30, 5)
    with pytest.raises(ValueError, match="2 distinct classes"):
        fn(x, np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match="30 samples but labels have 29"):
        fn(x, y[:29])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, y)


@pytest.mark.parametrize("fn", [hscore, hscore_reg])
def test_identical_samples_nan(fn):
    with pytest.warns(MetricWarning, match="identical"):
        assert np.isnan(fn(np.ones((20, 4)), np.arange(20) % 2))


def test_logme_zero_features_nan():
    with pytest.warns(MetricWarning, match="zero"):
        assert np.isnan(logme(np.zeros((20, 4)), np.arange(20) % 2))


def test_registered_statistics_forms():
    x, y = _data(8, 100, 12)
    values = compute_metrics(x, y, ["hscore", "hscore_reg", "logme"])
    assert values == {
        "hscore": hscore(x, y),
        "hscore_reg": hscore_reg(x, y),
        "logme": logme(x, y),
    }
    for name in values:
        assert METRICS[name].kind == "layer" and METRICS[name].higher_is_better
    assert hscore.higher_is_better and hscore_reg.higher_is_better and logme.higher_is_better
    assert all(isinstance(v, float) for v in values.values())


def test_float32_and_featuremaps():
    x, y = _data(10, 64, 48)
    x32 = x.astype(np.float32)
    ref = hscore(x32.astype(np.float64), y)
    assert hscore(x32, y) == pytest.approx(ref, rel=1e-10)
    assert logme(x32.reshape(64, 3, 4, 4), y) == pytest.approx(logme(x32, y), rel=1e-12)
