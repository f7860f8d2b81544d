"""Tests for NLEEP and SFDA (n × n forms) against d × d implementations written here, numbers
produced by the peers' own code, limiting cases and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transferability.artifacts import write_activations
from transferability.metrics import METRICS, MetricWarning, compute_metrics
from transferability.metrics.peers_classifier import (
    _leep_of_posteriors,
    _pca_scores,
    nleep,
    sfda,
)
from transferability.metrics.stats import layer_stats, layer_stats_from_h5

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
sklearn_mixture = pytest.importorskip("sklearn.mixture")


def _data(seed, n, d, k=3, sep=1.0, offset=0.0, scale=1.0):
    """Gaussian features with class-dependent means; labels 0..k−1 (all present)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    x = rng.standard_normal((n, d)) + sep * np.eye(k)[y] @ rng.standard_normal((k, d)) + offset
    return scale * x, y


def _lowrank(seed, n, d, k=3, rank=3, sep=1.0, noise=0.1, offset=0.0):
    """Classes in a ``rank``-dimensional latent space embedded in d dimensions, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    latent = rng.standard_normal((n, rank)) + sep * np.eye(k)[y] @ rng.standard_normal((k, rank))
    x = latent @ rng.standard_normal((rank, d)) + noise * rng.standard_normal((n, d)) + offset
    return x, y


def _tight_clusters(seed, n_per_class, d, k, spread):
    """k classes around well-separated centres, within-class scale ``spread``."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    centres = 10.0 * rng.standard_normal((k, d))
    return centres[y] + spread * rng.standard_normal((len(y), d)), y


# ----------------------------------------------------------------------------------- NLEEP


def _nleep_direct(f, y, n_components=0.8, ratio=5, seed=123):
    """d × d: sklearn PCA (full SVD of the n × d features, float64) + GaussianMixture, then
    LEEP of the float32 posteriors written out over classes and components."""
    _, codes = np.unique(y, return_inverse=True)
    k = codes.max() + 1
    z = sklearn_decomposition.PCA(n_components=n_components, svd_solver="full").fit_transform(f)
    gmm = sklearn_mixture.GaussianMixture(n_components=ratio * k, random_state=seed).fit(z)
    resp = gmm.predict_proba(z).astype(np.float32).astype(np.float64)
    mass = resp.sum(axis=0)
    p_y_given_z = np.array([resp[codes == c].sum(axis=0) for c in range(k)]) / mass
    eep = np.array([resp[i] @ p_y_given_z[codes[i]] for i in range(len(codes))])
    return float(np.mean(np.log(eep)))


NLEEP_CASES = [
    ("data", (0, 150, 10, 3, 1.0, 0.0)),
    ("data", (1, 200, 20, 4, 0.8, 3.0)),
    ("data", (12, 90, 5, 3, 0.5, 0.0)),
    ("lowrank", (20, 60, 200, 3, 3, 1.0, 0.1, 0.0)),  # d > n
    ("lowrank", (21, 80, 500, 2, 4, 0.8, 0.2, 2.0)),  # d > n, offset
]


def _make(kind, args):
    return (_data if kind == "data" else _lowrank)(*args)


@pytest.mark.parametrize(("kind", "args"), NLEEP_CASES)
def test_nleep_matches_d_by_d(kind, args):
    x, y = _make(kind, args)
    assert nleep(x, y) == pytest.approx(_nleep_direct(x, y), rel=1e-3, abs=1e-6)


# google-research stable_transfer/transferability: nleep.py
# (commit 8d8a4f1b27753c7580d16261a1468b3d6ad2c3d3), leep.py
# (commit 1d4d2f1aa6f2883a790d2ae46a6ee8ab150d8f31) and features_targets_utils.pca_reduction
# (commit 4c4299485319ed72ef782020c81784be5468924e), its TensorFlow LEEP transcribed to float32
# NumPy (TensorFlow is not installed), run with scikit-learn 1.7.2 on the inputs of _data/_lowrank.
# Columns: the peer as written (PCA scores cast to float32), the peer with float64 PCA scores (the
# convention of PEER_METRICS.md). None: the float32 peer raised "Fitting the mixture model failed"
# (lowrank 21) or its EM took another path (lowrank 20: -0.3647337853908539, 0.015 away).
NLEEP_GOLDEN = [
    ("data", (0, 150, 10, 3, 1.0, 0.0), -0.22227437794208527, -0.22227439284324646),
    ("data", (1, 200, 20, 4, 0.8, 3.0), -0.2641531229019165, -0.2641530930995941),
    ("data", (5, 200, 6, 4, 1.5, 0.0), -0.23179204761981964, -0.23179206252098083),
    ("data", (12, 90, 5, 3, 0.5, 0.0), -0.7759017944335938, -0.7759017944335938),
    ("lowrank", (20, 60, 200, 3, 3, 1.0, 0.1, 0.0), None, -0.3797500729560852),
    ("lowrank", (21, 80, 500, 2, 4, 0.8, 0.2, 2.0), None, -0.28090113401412964),
    ("lowrank", (22, 100, 150, 4, 3, 1.5, 0.1, -1.0), -0.24358944594860077, -0.24358917772769928),
]


@pytest.mark.parametrize(("kind", "args", "peer32", "peer64"), NLEEP_GOLDEN)
def test_nleep_peer_golden(kind, args, peer32, peer64):
    x, y = _make(kind, args)
    value = nleep(x, y)
    assert value == pytest.approx(peer64, abs=1e-3)
    if peer32 is not None:
        assert value == pytest.approx(peer32, abs=1e-3)


def test_nleep_pca_scores_match_sklearn_up_to_sign():
    x, y = _data(3, 80, 40, offset=2.0)
    ours = _pca_scores(layer_stats(x, y), None, 0.8)
    pca = sklearn_decomposition.PCA(n_components=0.8, svd_solver="full")
    ref = pca.fit_transform(x)
    assert ours.shape == ref.shape
    signs = np.sign(np.sum(ours * ref, axis=0))
    np.testing.assert_allclose(ours * signs, ref, rtol=1e-8, atol=1e-8)
    ours5 = _pca_scores(layer_stats(x, y), 5, 0.8)
    np.testing.assert_allclose(np.abs(ours5), np.abs(ref[:, :5]), rtol=1e-8, atol=1e-8)


def test_nleep_pca_dim_and_options():
    x, y = _data(4, 120, 12, sep=0.8)
    assert nleep(x, y, pca_dim=3) == pytest.approx(_nleep_direct(x, y, 3), rel=1e-3, abs=1e-6)
    k = sklearn_decomposition.PCA(n_components=0.8, svd_solver="full").fit(x).n_components_
    assert nleep(x, y, pca_dim=int(k)) == pytest.approx(nleep(x, y), rel=1e-12)
    x2, y2 = _data(5, 150, 6, k=2)
    assert nleep(x2, y2, component_ratio=2, random_state=7, variance=0.5) == pytest.approx(
        _nleep_direct(x2, y2, 0.5, ratio=2, seed=7), rel=1e-3, abs=1e-6
    )


def test_nleep_separated_classes_limit():
    """Tight, far-apart classes: every mixture component holds one class and the posteriors
    are certain, so NLEEP → log 1 = 0."""
    x, y = _tight_clusters(0, 40, 6, 3, spread=0.01)
    assert nleep(x, y) == pytest.approx(0.0, abs=1e-6)
    xg, yg = _data(12, 90, 5, sep=0.5)
    assert nleep(xg, yg) < -0.5  # overlapping classes are well below


def test_leep_of_posteriors_closed_forms():
    y = np.array([0, 0, 1, 1, 1, 2])
    # posteriors = the labels: each component one class, certain → 0
    assert _leep_of_posteriors(np.eye(3)[y], y, 3) == pytest.approx(0.0, abs=1e-15)
    # uniform posteriors: p(y|z) = class frequency, NLEEP = Σ_y p_y log p_y
    p = np.bincount(y) / len(y)
    value = _leep_of_posteriors(np.full((6, 4), 0.25), y, 3)
    assert value == pytest.approx(float(np.sum(p * np.log(p))), rel=1e-12)
    # a sample without posterior mass contributes −log K; a component without mass is ignored
    resp = np.hstack([np.eye(3)[y], np.zeros((6, 1))])
    resp[5] = 0.0
    expected = (5 * math.log(1.0) - math.log(3)) / 6
    assert _leep_of_posteriors(resp, y, 3) == pytest.approx(expected, rel=1e-12)


def test_nleep_invariances():
    x, y = _data(0, 150, 10, sep=1.0)
    ref = nleep(x, y)
    perm = np.random.default_rng(1).permutation(10)
    assert nleep(x[:, perm], y) == pytest.approx(ref, abs=1e-6)  # feature order
    assert nleep(x + 50.0, y) == pytest.approx(ref, abs=1e-6)  # common shift
    assert nleep(x, np.array([9, -4, 2])[y]) == pytest.approx(ref, abs=1e-12)  # label values
    # sample order: exact for separated classes (generic data: the k-means start, drawn by
    # sample index, may lead EM to another local optimum)
    xs, ys = _tight_clusters(2, 30, 5, 3, spread=0.5)
    order = np.random.default_rng(3).permutation(len(ys))
    assert nleep(xs[order], ys[order]) == pytest.approx(nleep(xs, ys), abs=1e-6)


def test_nleep_bad_options():
    x, y = _data(0, 40, 5)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="pca_dim"):
            nleep(x, y, pca_dim=bad)
    with pytest.raises(ValueError, match="pca_dim=6 exceeds"):
        nleep(x, y, pca_dim=6)
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="variance"):
            nleep(x, y, variance=bad)
    with pytest.raises(ValueError, match="component_ratio"):
        nleep(x, y, component_ratio=0)
    with pytest.raises(ValueError, match="random_state"):
        nleep(x, y, random_state=1.5)


def test_nleep_degenerate_nan():
    x, y = _data(0, 12, 4)  # 12 samples, 15 mixture components
    with pytest.warns(MetricWarning, match="fewer than the 15 mixture components"):
        assert math.isnan(nleep(x, y))
    with pytest.warns(MetricWarning, match="identical"):
        assert math.isnan(nleep(np.ones((30, 4)), np.arange(30) % 2))


# ------------------------------------------------------------------------------------ SFDA


def _sfda_direct(f, y):
    """d × d: SFDA_Score's steps with d × d scatter matrices and a dense solve."""
    n, d = f.shape
    _, codes = np.unique(y, return_inverse=True)
    k = codes.max() + 1
    prior = np.bincount(codes) / n

    def fit_predict(g, shrinkage=None):
        means = np.array([g[codes == c].mean(axis=0) for c in range(k)])
        sw = np.zeros((d, d))
        for c in range(k):
            sw += prior[c] * np.cov(g[codes == c].T, bias=True).reshape(d, d)
        if shrinkage is None:  # iterative_A(Sw, 3): power iteration started from Sw·1
            a = sw.sum(axis=1)
            for _ in range(3):
                b = sw @ a / np.linalg.norm(sw @ a)
                a = sw @ b / np.linalg.norm(sw @ b)
            shrinkage = max(np.exp(-5.0 * (a @ sw @ b)), 1e-10)
        shrunk = (1 - shrinkage) * sw + shrinkage * np.trace(sw) / d * np.eye(d)
        coef = np.linalg.solve(shrunk, means.T).T
        logits = g @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(prior)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True), shrinkage, means

    p, shrinkage, means = fit_predict(f)
    p = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
    others = (means.sum(axis=0) - means) / (k - 1)
    pc = p[np.arange(n), codes][:, None]
    p2, _, _ = fit_predict(pc * f + (1 - pc) * others[codes], shrinkage)
    return float(p2[np.arange(n), codes].mean())


@pytest.mark.parametrize(
    ("seed", "n", "d", "k", "sep", "offset", "scale"),
    [
        (30, 100, 12, 3, 0.8, 0.0, 1.0),
        (31, 150, 25, 4, 0.4, 3.0, 1.0),  # offset
        (32, 120, 10, 5, 0.5, 1.0, 0.25),  # shrinkage well above its floor
        (33, 50, 60, 2, 0.0, 0.0, 0.05),  # d > n, s ≈ 0.96
        (34, 40, 200, 3, 0.3, 2.0, 0.02),  # d > n, offset
        (35, 40, 150, 3, 0.5, 0.0, 1.0),  # d > n, s at 1e-10: saturates at 1
    ],
)
def test_sfda_matches_d_by_d(seed, n, d, k, sep, offset, scale):
    x, y = _data(seed, n, d, k, sep, offset, scale)
    assert sfda(x, y) == pytest.approx(_sfda_direct(x, y), rel=1e-6)


# TencentARC/SFDA metrics.py SFDA_Score (commit 3b7edf76bd682acb1eba4f4c5eb7ea7f3f7f6c59) run in
# this project's environment (NumPy 2.3.5, SciPy 1.17.1) on float64
# _data(seed, n, d, k, sep, offset, scale); the comment gives the peer's shrinkage.
SFDA_GOLDEN = [
    (0, 60, 10, 3, 0.8, 0.0, 1.0, 0.6694308363021193),  # s = 4.342e-05
    (1, 120, 20, 4, 0.5, 3.0, 1.0, 0.7288590272385178),  # s = 9.769e-05
    (5, 100, 8, 2, 0.5, 0.0, 0.3, 0.5950391122253071),  # s = 0.5622
    (4, 80, 30, 5, 0.3, 2.0, 0.2, 0.46828593928343737),  # s = 0.6841
    (7, 60, 64, 2, 0.0, 0.0, 0.05, 0.672115757298435),  # s = 0.9577
    (8, 60, 90, 3, 0.0, 1.0, 0.03, 0.5481377244585313),  # s = 0.983
    (9, 40, 50, 2, 0.2, 0.0, 0.1, 0.8135129016443058),  # s = 0.8397
    (10, 40, 400, 2, 0.0, 0.0, 0.01, 0.9755075502601717),  # s = 0.9927
    (2, 50, 120, 3, 0.5, 0.0, 1.0, 1.0),  # s = 1e-10
]


@pytest.mark.parametrize(("seed", "n", "d", "k", "sep", "offset", "scale", "peer"), SFDA_GOLDEN)
def test_sfda_peer_golden(seed, n, d, k, sep, offset, scale, peer):
    x, y = _data(seed, n, d, k, sep, offset, scale)
    assert sfda(x, y) == pytest.approx(peer, rel=1e-6)


def test_sfda_limits():
    # tight, far-apart classes: the LDA posteriors are certain before and after ConfMix → 1
    x, y = _tight_clusters(1, 20, 5, 4, spread=0.01)
    assert sfda(x, y) == pytest.approx(1.0, abs=1e-9)
    # d ≥ n on the usual scale: s = 1e-10 and the class means differ in directions without
    # within-class scatter, so the training samples are separated whatever the labels → 1
    xr, yr = _data(6, 30, 90, k=3, sep=0.0)
    assert sfda(xr, yr) == pytest.approx(1.0, abs=1e-9)
    # overlapping classes stay well below 1, and separation raises the score
    lo, ylo = _data(7, 120, 8, k=3, sep=0.2)
    hi, yhi = _data(7, 120, 8, k=3, sep=2.0)
    assert 0.0 < sfda(lo, ylo) < sfda(hi, yhi) < 1.0


def test_sfda_invariances():
    x, y = _data(8, 90, 15, k=4, sep=0.6, scale=0.3)
    ref = sfda(x, y)
    perm = np.random.default_rng(0).permutation(90)
    assert sfda(x[perm], y[perm]) == pytest.approx(ref, rel=1e-9)  # sample order
    cols = np.random.default_rng(1).permutation(15)
    assert sfda(x[:, cols], y) == pytest.approx(ref, rel=1e-9)  # feature order
    assert sfda(x + 7.0, y) == pytest.approx(ref, rel=1e-9)  # common shift
    assert sfda(x, np.array([5, -1, 40, 3])[y]) == pytest.approx(ref, rel=1e-12)  # label values


def test_sfda_degenerate_nan():
    with pytest.warns(MetricWarning, match="identical"):
        assert math.isnan(sfda(np.ones((20, 4)), np.arange(20) % 2))
    centres = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])
    y = np.arange(10) % 2
    with pytest.warns(MetricWarning, match="single point"):
        assert math.isnan(sfda(centres[y], y))


# ----------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("fn", [nleep, sfda])
def test_bad_inputs(fn):
    x, y = _data(0, 30, 5)
    with pytest.raises(ValueError, match="2 distinct classes"):
        fn(x, np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match="30 samples but labels have 29"):
        fn(x, y[:29])
    bad = x.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN/Inf"):
        fn(bad, y)
    with pytest.raises(ValueError, match="2-D"):
        fn(x[:, 0], y)


def test_registered_statistics_forms_and_streaming(tmp_path):
    x, y = _data(9, 80, 24, k=3, sep=0.8, scale=0.3)
    x32 = x.astype(np.float32)
    values = compute_metrics(x32, y, ["nleep", "sfda"])
    assert values == {"nleep": nleep(x32, y), "sfda": sfda(x32, y)}
    assert all(isinstance(v, float) for v in values.values())
    stats = layer_stats(x32, y)
    assert METRICS["nleep"](stats) == values["nleep"]
    assert METRICS["sfda"](stats) == values["sfda"]
    for name in ("nleep", "sfda"):
        assert METRICS[name].kind == "layer" and METRICS[name].higher_is_better
    assert nleep.higher_is_better and sfda.higher_is_better
    # float32 input is the same as its float64 copy
    assert sfda(x32, y) == sfda(x32.astype(np.float64), y)
    assert nleep(x32, y) == nleep(x32.astype(np.float64), y)
    # streamed from an activation file in small strips
    path = tmp_path / "act.h5"
    write_activations(path, x32.reshape(80, 6, 2, 2), y, np.arange(80), {"layer": "conv3"})
    streamed = layer_stats_from_h5(path, stream_bytes=2048)
    assert METRICS["sfda"](streamed) == pytest.approx(values["sfda"], rel=1e-9)
    assert METRICS["nleep"](streamed) == pytest.approx(values["nleep"], abs=1e-6)


def test_nleep_caps_the_pca_dimension_to_bound_memory(monkeypatch):
    import transferability.metrics.peers_classifier as pc

    assert pc.nleep_max_dim(200) == 409  # K = 40 classes: 200 components in 256 MiB
    x, y = _data(3, 200, 60)
    reference = nleep(x, y, pca_dim=3)
    monkeypatch.setattr(pc, "NLEEP_COVARIANCE_BYTES", 8 * 5 * 4 * 3**2)  # room for p = 3
    with pytest.warns(MetricWarning, match="capped at 3"):
        capped = nleep(x, y)
    assert capped == pytest.approx(reference, abs=1e-12)
