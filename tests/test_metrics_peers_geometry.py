"""Tests for TransRate, GBC, PARC and ETran (n × n forms) against d × d implementations written
here, numbers produced by the peers' own code, closed forms and invariances."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from transferability.artifacts import write_activations
from transferability.metrics import METRICS, MetricWarning
from transferability.metrics.peers_geometry import (
    etran,
    etran_parts,
    gbc,
    parc,
    transrate,
)
from transferability.metrics.stats import layer_stats, layer_stats_from_h5

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
sklearn_preprocessing = pytest.importorskip("sklearn.preprocessing")
scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")


def _data(seed: int, n: int, d: int, k: int = 4, sep: float = 0.8, offset: float = 0.0):
    """Gaussian features with class-dependent means; labels 0..k−1 (all present)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    x = rng.standard_normal((n, d)) + sep * np.eye(k)[y] @ rng.standard_normal((k, d)) + offset
    return x, y


# ---------------------------------------------------------------- d × d implementations (tests)


def _transrate_direct(f: np.ndarray, y: np.ndarray, eps: float = 1e-4) -> float:
    """½·logdet(I_d + ZᵀZ/(n_Z·eps)) on the centred features and their class rows."""

    def rate(z):
        _, logdet = np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))
        return 0.5 * logdet

    fc = f - f.mean(axis=0)
    return rate(fc) - np.mean([rate(fc[y == c]) for c in np.unique(y)])


def _gbc_direct(f: np.ndarray, y: np.ndarray, pca_dim: int = 64, paper: bool = False) -> float:
    k = min(pca_dim, *f.shape)
    z = sklearn_decomposition.PCA(n_components=k, svd_solver="full").fit_transform(f)
    classes = np.unique(y)
    mu = {c: z[y == c].mean(axis=0) for c in classes}
    sig = {c: np.maximum(z[y == c].var(axis=0), 1e-4).mean() for c in classes}
    out = 0.0
    for a in classes:
        for b in classes:
            if a != b:
                s = (sig[a] + sig[b]) / 2
                log_term = np.log(s) - 0.5 * np.log(sig[a]) - 0.5 * np.log(sig[b])
                d_b = np.sum((mu[a] - mu[b]) ** 2) / (8 * s) + 0.5 * (k if paper else 1) * log_term
                out -= np.exp(-d_b)
    return float(out)


def _parc_direct(f: np.ndarray, y: np.ndarray, n_dims: int = 32, seed: int = 1919) -> float:
    """sklearn randomized PCA + StandardScaler + spearmanr. The label RDM is built exactly (0
    within a class, 1 + 1/(K−1) between): ``1 − np.corrcoef(one_hot)`` leaves 0 or 2.2e-16 on
    the within-class pairs when 1/K is not a binary fraction, which breaks the ties."""
    k = min(n_dims, *f.shape)
    pca = sklearn_decomposition.PCA(
        n_components=k, svd_solver="randomized", random_state=seed, iterated_power=1
    )
    z = sklearn_preprocessing.StandardScaler().fit_transform(pca.fit_transform(f))
    upper = np.triu_indices(len(f), 1)
    n_classes = len(np.unique(y))
    label_rdm = (y[:, None] != y[None, :]) * (1 + 1 / (n_classes - 1))
    rho = scipy_stats.spearmanr((1 - np.corrcoef(z))[upper], label_rdm[upper])[0]
    return float(100 * rho)


def _etran_direct(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    n = len(f)
    energy = np.sort(scipy_special.logsumexp(f, axis=1))
    s_en = energy[: 5 * n // 1000].mean()
    classes, codes = np.unique(y, return_inverse=True)
    means = np.stack([f[codes == c].mean(axis=0) for c in range(len(classes))])
    prior = np.bincount(codes) / n
    logits = f @ means.T - 0.5 * np.sum(means**2, axis=1) + np.log(prior)
    post = scipy_special.softmax(logits, axis=1)
    return float(s_en), float(post[np.arange(n), codes].mean())


CASES = [  # (seed, n, d, k, sep, offset): d > n, d ≤ n, exact and randomized PCA, offsets
    (1, 150, 30, 4, 0.8, 0.0),
    (2, 60, 200, 3, 0.8, 4.0),
    (3, 120, 90, 5, 0.5, -2.0),
    (4, 40, 500, 4, 1.0, 0.0),
]


# ---------------------------------------------------------------------- (1) d × d agreement


@pytest.mark.parametrize(("seed", "n", "d", "k", "sep", "offset"), CASES)
def test_transrate_matches_d_by_d(seed, n, d, k, sep, offset):
    x, y = _data(seed, n, d, k, sep, offset)
    assert transrate(x, y) == pytest.approx(_transrate_direct(x, y), rel=1e-9)
    assert transrate(x, y, eps=0.3) == pytest.approx(_transrate_direct(x, y, 0.3), rel=1e-9)


@pytest.mark.parametrize(("seed", "n", "d", "k", "sep", "offset"), CASES)
def test_gbc_matches_d_by_d(seed, n, d, k, sep, offset):
    x, y = _data(seed, n, d, k, sep, offset)
    assert gbc(x, y) == pytest.approx(_gbc_direct(x, y), rel=1e-9)
    assert gbc(x, y, pca_dim=8) == pytest.approx(_gbc_direct(x, y, 8), rel=1e-9)
    paper = gbc(x, y, pca_dim=8, paper_logdet=True)
    assert paper == pytest.approx(_gbc_direct(x, y, 8, paper=True), rel=1e-9)


@pytest.mark.parametrize(("seed", "n", "d", "k", "sep", "offset"), CASES)
def test_parc_matches_sklearn_pipeline(seed, n, d, k, sep, offset):
    x, y = _data(seed, n, d, k, sep, offset)
    assert parc(x, y) == pytest.approx(_parc_direct(x, y), rel=1e-9)
    assert parc(x, y, n_dims=5, random_state=7) == pytest.approx(_parc_direct(x, y, 5, 7), rel=1e-9)


def test_parc_sign_rule_of_older_sklearn():
    """``sign_rule="scores"``: randomized_svd(flip_sign=True), the rule PCA used before 1.5."""
    extmath = pytest.importorskip("sklearn.utils.extmath")
    for seed, n, d in [(5, 50, 300), (6, 200, 70)]:
        x, y = _data(seed, n, d)
        xc = x - x.mean(axis=0)
        u, s, _ = extmath.randomized_svd(
            xc, 32, n_oversamples=10, n_iter=1, flip_sign=True, random_state=1919
        )
        z = sklearn_preprocessing.StandardScaler().fit_transform(u * s)
        upper = np.triu_indices(n, 1)
        rho = scipy_stats.spearmanr((1 - np.corrcoef(z))[upper], (y[:, None] != y)[upper])[0]
        assert parc(x, y, sign_rule="scores") == pytest.approx(100 * rho, rel=1e-9)


@pytest.mark.parametrize(
    ("seed", "n", "d", "k", "offset"), [(7, 400, 30, 4, 0.5), (8, 250, 600, 3, 0)]
)
def test_etran_matches_d_by_d(seed, n, d, k, offset):
    x, y = _data(seed, n, d, k, 0.4, offset)
    s_en, s_lda = _etran_direct(x, y)
    parts = etran_parts(x, y)
    assert parts == pytest.approx((s_en, s_lda), rel=1e-10)
    assert etran(x, y) == pytest.approx(s_en + s_lda, rel=1e-10)


# ----------------------------------------------------------- (2) numbers from the peers' code
# Inputs: _data(**case). Produced by running the peers' own files on these float64 arrays
# (numpy 2.3.5, scikit-learn 1.7.2, scipy 1.17.1, torch 2.14):
#   transrate — thuml/Transfer-Learning-Library tllib/ranking/transrate.py
#               @ c4aa59eb565650a552b809411601d0589efbbfe4, transrate(x, y)
#   parc      — dbolya/parc methods.py @ ddfca43a84d35328897d107d6f86e860b11801ce,
#               PARC(n_dims=32)(x, None, y, ...) with constants.num_classes = k (a power of 2, so
#               that the peer's 1 − corrcoef(one-hot) is exactly two-valued, see _parc_direct)
#   gbc       — google-research stable_transfer/transferability/gbc.py
#               @ 4c4299485319ed72ef782020c81784be5468924e (TensorFlow) transcribed to NumPy:
#               features_targets_utils.pca_reduction(x, 64) then get_gbc_score(..., 'spherical'),
#               in float64 (the peer's float32 cast gives -0.027889633551 / -0.45393762 /
#               -0.040716331452, i.e. 1.6e-7 / 9.5e-8 / 9.6e-7 relative)
#   etran     — mgholamikn/ETran metrics.py @ d4551ed8f41f4ed6eba08b9cc1a78bae178acd19,
#               Energy_Score(x, 0.5, 'bot') and LDA_Score(x, y)
PEER_CASES = {
    "A": dict(seed=11, n=120, d=40, k=4, sep=0.8, offset=0.0),
    "B": dict(seed=12, n=60, d=150, k=4, sep=0.4, offset=3.0),
    "C": dict(seed=13, n=100, d=90, k=2, sep=0.6, offset=-1.0),
}
PEER_VALUES = {  # name: (transrate, gbc, parc)
    "A": (48.335833693505464, -0.027889628958445746, 22.031695374036573),
    "B": (207.581504808232, -0.45393766310070943, 17.50204568897195),
    "C": (143.47092136258576, -0.04071637062928067, 13.063074743871356),
}
ETRAN_CASES = {  # name: (data, (S_en, S_lda))
    "E1": (
        dict(seed=14, n=400, d=50, k=5, sep=0.3, offset=0.5),
        (4.466533444959724, 0.7292742157906577),
    ),
    "E2": (
        dict(seed=15, n=1000, d=20, k=3, sep=0.5, offset=0.0),
        (2.698388120998416, 0.8666191649485919),
    ),
}


@pytest.mark.parametrize("case", sorted(PEER_CASES))
def test_numbers_of_the_peers_code(case):
    x, y = _data(**PEER_CASES[case])
    tr, g, p = PEER_VALUES[case]
    assert transrate(x, y) == pytest.approx(tr, rel=1e-9)
    assert gbc(x, y) == pytest.approx(g, rel=1e-9)
    assert parc(x, y) == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize("case", sorted(ETRAN_CASES))
def test_etran_numbers_of_the_peers_code(case):
    kwargs, (s_en, s_lda) = ETRAN_CASES[case]
    x, y = _data(**kwargs)
    assert etran_parts(x, y) == pytest.approx((s_en, s_lda), rel=1e-12)
    assert etran(x, y) == pytest.approx(s_en + s_lda, rel=1e-12)


# ------------------------------------------------------------------- (3) closed forms, limits


@pytest.mark.parametrize(("k", "scale"), [(2, 1.0), (4, 0.05), (5, 3.0)])
def test_transrate_of_scaled_one_hot(k, scale):
    """Balanced s·one-hot: the centred f has K−1 eigenvalues n·s²/K, each class's rows are one
    point at distance² s²(K−1)/K from the mean, so
    TrR = ½(K−1)·log(1 + s²/(K·eps)) − ½·log(1 + s²(K−1)/(K·eps))."""
    y = np.repeat(np.arange(k), 12)
    eps = 1e-4
    expected = 0.5 * (k - 1) * math.log1p(scale**2 / (k * eps)) - 0.5 * math.log1p(
        scale**2 * (k - 1) / (k * eps)
    )
    assert transrate(scale * np.eye(k)[y] + 7.0, y) == pytest.approx(expected, rel=1e-10)


def test_transrate_identical_samples_is_zero():
    assert transrate(np.ones((20, 5)), np.arange(20) % 2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("a", [0.0, 1.0, 3.0])
def test_gbc_closed_form_two_isotropic_classes(a):
    """Class 0: (±1, 0), (0, ±1) → per-dimension variance ½ in any rotation; class 1: twice
    that, shifted by (a, 0) → variance 2. σ = 5/4, ‖μ₁ − μ₂‖ = a:
    D_B = a²/10 + ½·log(5/4) (official code) or + log(5/4) (paper, k = 2)."""
    square = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    x = np.vstack([square, 2 * square + [a, 0.0]]) + [5.0, -3.0]
    y = np.repeat([0, 1], 4)
    assert gbc(x, y) == pytest.approx(-2 * math.exp(-(a**2 / 10 + 0.5 * math.log(1.25))))
    paper = gbc(x, y, paper_logdet=True)
    assert paper == pytest.approx(-2 * math.exp(-(a**2 / 10 + math.log(1.25))), rel=1e-12)


def test_gbc_limits():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((30, 8))
    # every class holds the same points: D_B = 0 for every pair, GBC = −K(K−1)
    same = np.vstack([base, base, base])
    assert gbc(same, np.repeat(np.arange(3), 30)) == pytest.approx(-6.0, rel=1e-12)
    # far apart classes: GBC → 0⁻
    x, y = _data(1, 90, 8, k=3, sep=200.0)
    assert -1e-12 < gbc(x, y) <= 0.0
    # identical samples: every variance floored, D_B = 0
    assert gbc(np.ones((20, 4)), np.arange(20) % 4) == pytest.approx(-12.0)


@pytest.mark.parametrize("n", [10, 64, 300])
def test_parc_two_classes_one_hot_is_100(n):
    """Features = a scaled, shifted one-hot of two classes: one informative component (the
    second is at the rounding level and exactly 0 here), standardised rows (±c, 0) correlate
    +1 within and −1 between the classes, the feature RDM is the label RDM: PARC = 100. (sklearn
    would standardise the rounding noise of the second component to unit variance, and the
    rounding of 1 − corrcoef would break the ties within each class.)"""
    y = np.arange(n) % 2
    y[:3] = 0  # unbalanced
    assert parc(3.0 * np.eye(2)[y] - 1.0, y) == pytest.approx(100.0, rel=1e-12)
    assert parc(-np.eye(2)[y], 1 - y) == pytest.approx(100.0, rel=1e-12)


def test_parc_nan_when_undefined():
    x, y = _data(0, 30, 1)  # k = 1: every row has a single entry, its correlation is undefined
    with pytest.warns(MetricWarning, match="same value"):
        assert math.isnan(parc(x, y))
    with pytest.warns(MetricWarning, match="same value"):
        assert math.isnan(parc(np.ones((12, 5)), np.arange(12) % 3))
    with pytest.warns(MetricWarning, match="single sample"):
        assert math.isnan(parc(_data(1, 6, 10, k=6)[0], np.arange(6)))


def test_etran_closed_forms():
    """Rows t_i·1_d have energy t_i + log d; classes holding the same rows have equal means, so
    p(y|x) = π_y and S_lda = Σ π_c² (1/4 for four balanced classes)."""
    d = 10
    t = np.random.default_rng(0).uniform(-3.0, 3.0, 100)
    x = np.tile(t[:, None] * np.ones(d), (4, 1))
    y = np.repeat(np.arange(4), 100)
    s_en, s_lda = etran_parts(x, y)
    assert s_en == pytest.approx(t.min() + math.log(d), rel=1e-12)  # ⌊5·400/1000⌋ = 2 copies
    assert s_lda == pytest.approx(0.25, rel=1e-12)
    # far apart classes: p(y_i|x_i) → 1
    xs, ys = _data(2, 300, 6, k=3, sep=100.0)
    assert etran_parts(xs, ys)[1] == pytest.approx(1.0, abs=1e-12)


def test_etran_too_few_samples_for_the_energy_is_nan():
    x, y = _data(3, 199, 5)
    with pytest.warns(MetricWarning, match="n = 199"):
        assert math.isnan(etran(x, y))
    assert 5 * 200 // 1000 == 1 and np.isfinite(etran(*_data(3, 200, 5)))


# ------------------------------------------------------------------------- (4) invariances


def test_transrate_and_gbc_invariances():
    x, y = _data(5, 90, 12, k=3, sep=0.6)
    perm = np.random.default_rng(1).permutation(90)
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((12, 12)))
    relabel = np.array([40, -3, 7])[y]
    for fn in (transrate, gbc):
        ref = fn(x, y)
        assert fn(x[perm], y[perm]) == pytest.approx(ref, rel=1e-10)
        assert fn(x @ q + 50.0, y) == pytest.approx(ref, rel=1e-9)  # rotation and translation
        assert fn(x, relabel) == pytest.approx(ref, rel=1e-12)
    # GBC ignores the PCA components' signs: flipping features' signs changes nothing
    assert gbc(x * np.where(np.arange(12) % 2, -1.0, 1.0), y) == pytest.approx(gbc(x, y), rel=1e-9)


def test_parc_invariances():
    rng = np.random.default_rng(3)
    # d ≤ n: the sketch is indexed by features, so the sample order does not matter
    x, y = _data(6, 150, 60)
    ref = parc(x, y)
    perm = rng.permutation(150)
    assert parc(x[perm], y[perm]) == pytest.approx(ref, rel=1e-9)
    assert parc(4.0 * x - 9.0, np.array([5, 1, 8, 0])[y]) == pytest.approx(ref, rel=1e-9)
    # d > n: the sketch is indexed by samples, so the feature order does not matter
    x, y = _data(7, 50, 200)
    ref = parc(x, y)
    assert parc(x[:, rng.permutation(200)], y) == pytest.approx(ref, rel=1e-9)
    assert parc(0.5 * x + 3.0, y) == pytest.approx(ref, rel=1e-9)


def test_etran_invariances():
    x, y = _data(8, 300, 15, k=3, sep=0.5)
    s_en, s_lda = etran_parts(x, y)
    perm = np.random.default_rng(4).permutation(300)
    assert etran_parts(x[perm], y[perm]) == pytest.approx((s_en, s_lda), rel=1e-12)
    assert etran_parts(x, np.array([9, 2, 4])[y]) == pytest.approx((s_en, s_lda), rel=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((15, 15)))
    assert etran_parts(x @ q + 20.0, y)[1] == pytest.approx(s_lda, rel=1e-9)  # S_lda only
    assert etran_parts(x + 1.0, y)[0] == pytest.approx(s_en + 1.0, rel=1e-12)  # energy shifts


# -------------------------------------------------------------------------- (5) bad inputs


@pytest.mark.parametrize("fn", [transrate, gbc, parc, etran])
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


def test_bad_parameters():
    x, y = _data(0, 30, 5)
    with pytest.raises(ValueError, match="eps"):
        transrate(x, y, eps=0.0)
    with pytest.raises(ValueError, match="pca_dim"):
        gbc(x, y, pca_dim=0)
    with pytest.raises(ValueError, match="n_dims"):
        parc(x, y, n_dims=2.5)
    with pytest.raises(ValueError, match="random_state"):
        parc(x, y, random_state=None)
    with pytest.raises(ValueError, match="sign_rule"):
        parc(x, y, sign_rule="u")


# ------------------------------------------------ (6) statistics forms, streaming, float32


NAMES = {"transrate": transrate, "gbc": gbc, "parc": parc, "etran": etran}


def test_registered_statistics_forms():
    for seed, n, d in [(9, 220, 40), (10, 210, 300)]:
        x, y = _data(seed, n, d)
        stats = layer_stats(x, y)
        for name, fn in NAMES.items():
            assert METRICS[name].kind == "layer" and METRICS[name].higher_is_better
            assert fn.higher_is_better
            value = METRICS[name](stats)
            assert isinstance(value, float)
            assert value == pytest.approx(fn(x, y), rel=1e-12), name


@pytest.mark.parametrize(("n", "d"), [(220, 45), (205, 400)])
def test_streamed_file_equals_array(tmp_path, n, d):
    x, y = _data(n + d, n, d, offset=2.0)
    x32 = x.astype(np.float32)
    path = tmp_path / "layer.h5"
    write_activations(path, x32, y, np.arange(n), {"layer": "fc"})
    # a small streaming budget: several column strips
    streamed = layer_stats_from_h5(path, stream_bytes=8 * n * 16)
    with_lse = layer_stats_from_h5(path, stream_bytes=8 * n * 16, with_row_logsumexp=True)
    for name, fn in NAMES.items():
        expected = fn(x32, y)  # float32 input works
        assert np.isfinite(expected)
        assert METRICS[name](streamed) == pytest.approx(expected, rel=1e-9), name
        assert METRICS[name](with_lse) == pytest.approx(expected, rel=1e-9), name
    assert transrate(x32, y) == pytest.approx(transrate(x32.astype(np.float64), y), rel=1e-12)


def test_stats_row_logsumexp_and_strips():
    x, y = _data(11, 40, 70, offset=30.0)
    expected = scipy_special.logsumexp(x, axis=1)
    stats = layer_stats(x.astype(np.float32), y, with_row_logsumexp=True)
    np.testing.assert_allclose(
        stats.row_logsumexp, scipy_special.logsumexp(x.astype(np.float32).astype(float), axis=1)
    )
    assert layer_stats(x, y).row_logsumexp is None
    np.testing.assert_allclose(layer_stats(x, y, with_row_logsumexp=True).row_logsumexp, expected)
    np.testing.assert_array_equal(np.hstack(list(layer_stats(x, y).strips())), x)
    # without a way to read the activations again, the metrics that need it say so
    bare = dataclasses.replace(layer_stats(x, y), strips=None)
    with pytest.raises(ValueError, match="strips"):
        METRICS["parc"](bare)
    x2, y2 = _data(12, 200, 6)
    with pytest.raises(ValueError, match="with_row_logsumexp"):
        METRICS["etran"](dataclasses.replace(layer_stats(x2, y2), strips=None))
    gathered = dataclasses.replace(layer_stats(x2, y2, with_row_logsumexp=True), strips=None)
    assert METRICS["etran"](gathered) == pytest.approx(etran(x2, y2), rel=1e-12)


# ------------------------------------------- (7) PARC's fast path vs the previous algorithm


def _parc_previous(f, y, n_dims=32, seed=1919, sign_rule="components"):
    """PARC as computed before issue 23 (the slow reference): for d > n the sklearn randomized
    PCA written in principal coordinates from the *full* ``eigh`` of the centred Gram matrix,
    for d ≤ n sklearn's arithmetic on the centred data; the Spearman ρ by ranking every pair
    with ``scipy.stats.rankdata``; byte-identical samples share their correlations."""
    from transferability.metrics.stats import eigh_psd

    f = np.asarray(f, dtype=np.float64)
    n, d = f.shape
    k = min(n_dims, n, d)
    rng = np.random.RandomState(seed)
    xc = f - f.mean(axis=0)

    def signs(m):  # sign of the largest-magnitude entry of every column
        return np.sign(m[np.argmax(np.abs(m), axis=0), np.arange(m.shape[1])])

    if n < d:
        omega = rng.normal(size=(n, k + 10))
        lam, vec = eigh_psd(xc @ xc.T)
        keep = lam > 0.0
        lam, vec = lam[keep][::-1], vec[:, keep][:, ::-1]
        root = np.sqrt(lam)
        q, _ = np.linalg.qr((lam * root)[:, None] * (vec.T @ omega))
        uhat, s, vt = np.linalg.svd(q.T @ (root[:, None] * vec.T), full_matrices=False)
        k_eff = min(k, len(s))
        scores = np.zeros((n, k))
        scores[:, :k_eff] = vt[:k_eff].T * s[:k_eff]
        comp = xc.T @ ((vec / root) @ (q @ uhat[:, :k_eff]))
        sign = signs(comp if sign_rule == "components" else scores[:, :k_eff])
        scores[:, :k_eff] *= np.where(sign == 0.0, 1.0, sign)
        s = np.pad(s[:k_eff], (0, k - k_eff))
    else:
        omega = rng.normal(size=(d, k + 10))
        q, _ = np.linalg.qr(xc @ (xc.T @ (xc @ omega)))
        uhat, s, vt = np.linalg.svd(q.T @ xc, full_matrices=False)
        s, vt = s[:k], vt[:k]
        scores = (q @ uhat[:, :k]) * s
        sign = signs(vt.T if sign_rule == "components" else scores)
        scores *= np.where(sign == 0.0, 1.0, sign)
    scores[:, s <= max(n, d) * np.finfo(float).eps * s[0]] = 0.0
    scores = scores - scores.mean(axis=0)
    std = np.sqrt((scores**2).mean(axis=0))
    rows = scores / np.where(std > 0.0, std, 1.0)
    rows = rows - rows.mean(axis=1, keepdims=True)
    rows /= np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    _, first, inverse = np.unique(f, axis=0, return_index=True, return_inverse=True)
    corr = rows[first] @ rows[first].T
    np.fill_diagonal(corr, 1.0)
    upper = np.triu_indices(n, 1)
    inverse = inverse.reshape(-1)
    rdm = 1.0 - corr[np.ix_(inverse, inverse)][upper]
    return float(100 * scipy_stats.pearsonr(scipy_stats.rankdata(rdm), (y[:, None] != y)[upper])[0])


def _steep(seed, n, d, k=5, rate=5.0):
    """Per-feature scales exp(−j/rate): eigenvalues spanning ~10⁶ over the first 32."""
    x, y = _data(seed, n, d, k)
    return x * np.exp(-np.arange(d) / rate), y


def _low_rank(seed, n, d, rank, k=4):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) + 5.0, y


def _with_duplicates(seed, n, d, k=4):
    x, y = _data(seed, n, d, k)
    x[5] = x[2]
    x[9] = x[2]
    x[11], y[11] = x[3], y[3]
    x[12] = x[4]  # a duplicate in another class than its twin
    return x, y


FAST_PARC_CASES = {  # d > n: pivoted Cholesky, or Rayleigh–Ritz when the rank is small
    "gaussian": lambda: _data(20, 300, 700, k=6),
    "steep": lambda: _steep(21, 300, 700),
    "low rank": lambda: _low_rank(22, 300, 700, rank=20),
    "rank 170": lambda: _low_rank(23, 300, 700, rank=170),
    "duplicates": lambda: _with_duplicates(24, 120, 400),
    "n = 12 < k + 10": lambda: (np.maximum(_data(25, 12, 300, k=3)[0], 0.0), np.arange(12) % 3),
    "d ≤ n": lambda: _data(26, 300, 120, k=5),
    "d ≤ n, duplicates": lambda: _with_duplicates(27, 200, 60),
}


@pytest.mark.parametrize("case", sorted(FAST_PARC_CASES))
def test_parc_equals_previous_algorithm(case):
    x, y = FAST_PARC_CASES[case]()
    for kwargs in [{}, dict(sign_rule="scores"), dict(n_dims=5, random_state=3)]:
        expected = _parc_previous(x, y, kwargs.get("n_dims", 32), kwargs.get("random_state", 1919),
                                  kwargs.get("sign_rule", "components"))  # fmt: skip
        assert parc(x, y, **kwargs) == pytest.approx(expected, rel=1e-10), kwargs
        # the same with the eigendecomposition of the Gram matrix cached by another metric
        stats = layer_stats(x, y)
        assert stats.centred_eigh is not None  # now cached, as after GBC or the H-scores
        assert METRICS["parc"](stats) == pytest.approx(parc(x, y), rel=1e-10)


def test_parc_alone_equals_parc_in_the_pass_of_all_metrics():
    from transferability.metrics import compute_metrics, metric_names

    for x, y in [_data(28, 250, 600, k=5), _steep(29, 220, 500), _data(30, 240, 90, k=3)]:
        x32 = x.astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # other metrics' warnings
            in_pass = compute_metrics(x32, y, metric_names("layer"))["parc"]
        assert compute_metrics(x32, y, ["parc"])["parc"] == pytest.approx(parc(x32, y), rel=1e-12)
        assert in_pass == pytest.approx(parc(x32, y), rel=1e-10)
        assert in_pass == pytest.approx(_parc_previous(x32, y), rel=1e-10)


def test_parc_matches_sklearn_pipeline_at_n_1000():
    x, y = _data(31, 1000, 1500, k=10)
    assert parc(x, y) == pytest.approx(_parc_direct(x, y), rel=1e-9)


def test_spearman_of_a_split_equals_scipy():
    from transferability.metrics.peers_geometry import _spearman_of_split

    rng = np.random.default_rng(32)
    for n_in, n_out, levels in [(50, 400, None), (300, 300, 7), (10, 500, 3), (1, 1, None)]:
        values = rng.standard_normal(n_in + n_out)
        if levels:  # many ties, within each group and across them
            values = np.round(values * levels / 3.0)
        split = np.r_[np.zeros(n_in), np.ones(n_out)]
        expected = scipy_stats.spearmanr(values, split)[0]
        got = _spearman_of_split(values[:n_in], values[n_in:])
        if n_in + n_out > 2:
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert _spearman_of_split(np.ones(5), np.ones(9)) is None  # every value equal
    assert _spearman_of_split(np.array([]), rng.standard_normal(9)) is None  # one group
