"""Tests for transferability.metrics: closed forms, reference implementations, bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from transferability import metrics as M
from transferability.metrics import (
    METRICS,
    MetricWarning,
    compute_metrics,
    correlation_rdm,
    rsa_delta,
    ss_ratio,
    two_nn_id,
    two_nn_id_details,
    two_nn_id_subsampled,
)


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _gaussian_5_in_50() -> np.ndarray:
    """The data behind SPEC §13's 4.790825: default_rng(0), Z (1000, 5) @ A (5, 50)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1000, 5))
    a = rng.standard_normal((5, 50))
    return z @ a


def _skdim_twonn(x: np.ndarray) -> float:
    skdim = pytest.importorskip("skdim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skdim.id.TwoNN(discard_fraction=0.1).fit(x).dimension_)


# ------------------------------------------------------------------------------------------ ID


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_id_flat_manifold(dim):
    rng = np.random.default_rng(dim)
    cube = rng.random((2000, dim))
    x = np.hstack([cube, np.zeros((2000, 20 - dim))]) @ _rotation(rng, 20) + 3.0
    assert two_nn_id(x) == pytest.approx(dim, rel=0.1)


def test_id_matches_skdim_gaussian_and_spec_number():
    x = _gaussian_5_in_50()
    ours = two_nn_id(x)
    assert ours == pytest.approx(_skdim_twonn(x), rel=1e-6)
    assert ours == pytest.approx(4.790825, abs=5e-7)


def test_id_matches_skdim_swiss_roll():
    datasets = pytest.importorskip("sklearn.datasets")
    x, _ = datasets.make_swiss_roll(1500, random_state=0)  # SPEC's 2.003286 data is unknown
    ours = two_nn_id(x)
    assert ours == pytest.approx(_skdim_twonn(x), rel=1e-6)
    assert ours == pytest.approx(2.0, rel=0.05)


def test_id_discard_convention():
    """Kept points: the int(N·(1−discard)) smallest ratios; CDF denominator N."""
    x = _gaussian_5_in_50()[:200]
    res = two_nn_id_details(x, discard=0.25)
    assert (res.n_used, res.n_fit, res.n_duplicates) == (200, 150, 0)
    d = squareform(pdist(x))
    np.fill_diagonal(d, np.inf)
    d.sort(axis=1)
    mu = np.sort(d[:, 1] / d[:, 0])[:150]
    xs, ys = np.log(mu), -np.log(1 - np.arange(1, 151) / 200)
    assert res.id == pytest.approx(xs @ ys / (xs @ xs), rel=1e-12)


def test_id_duplicates_dropped_and_counted():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 10))
    dup = np.vstack([x, x[:7], x[:2]])  # rows 0,1 three times, rows 2..6 twice
    with pytest.warns(MetricWarning, match="dropped 16 points"):
        res = two_nn_id_details(dup)
    assert (res.n_duplicates, res.n_used, res.n_fit) == (16, 293, 263)
    with pytest.warns(MetricWarning):
        assert two_nn_id(dup) == res.id
    # skdim with exact distances (d = 10 < 16: sklearn picks a k-d tree) drops the same 16
    # points. With more features sklearn uses Gram-form distances, where copies can end up
    # ~1e-7 apart instead of 0, so skdim keeps some duplicates; we detect them bitwise.
    assert _skdim_twonn(dup) == pytest.approx(res.id, rel=1e-6)
    # the same holds in 20-d against exact pairwise distances
    # (copies are made after the product: BLAS may round a row differently at another
    # position of the matrix, which would make `dup @ w` copies differ in the last bit)
    x20 = np.hstack([x, x @ rng.standard_normal((10, 10))])
    x20 = np.vstack([x20, x20[:7], x20[:2]])
    with pytest.warns(MetricWarning, match="dropped 16 points"):
        res20 = two_nn_id_details(x20)
    d = squareform(pdist(x20))
    np.fill_diagonal(d, np.inf)
    d.sort(axis=1)
    keep = d[:, 0] > 0
    mu = np.sort(d[keep, 1] / d[keep, 0])[:263]
    xs, ys = np.log(mu), -np.log(1 - np.arange(1, 264) / 293)
    assert res20.id == pytest.approx(xs @ ys / (xs @ xs), rel=1e-12)


def test_id_equidistant_neighbours_kept():
    # a regular grid: every point has r1 = r2, mu = 1 is kept (no duplicates reported)
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    with pytest.warns(MetricWarning, match="equal 1"):
        res = two_nn_id_details(g)
    assert res.n_duplicates == 0 and res.n_used == 36 and np.isnan(res.id)


def test_id_all_identical_is_nan():
    with pytest.warns(MetricWarning):
        assert np.isnan(two_nn_id(np.ones((10, 4))))


def test_id_float32_same_as_float64():
    x32 = (_gaussian_5_in_50()[:500] * 1e-3 + 100.0).astype(np.float32)
    assert two_nn_id(x32) == two_nn_id(x32.astype(np.float64))


def test_id_near_duplicates_are_not_duplicates():
    # near-copies are kept and their small distances resolved, even under a large common offset
    # (each streamed strip is centred exactly before it enters the Gram matrix)
    rng = np.random.default_rng(3)
    base = rng.random((200, 30)) + 1e4
    x = np.vstack([base, base + 1e-4 * rng.standard_normal(base.shape)])
    res = two_nn_id_details(x)
    assert res.n_duplicates == 0
    d = squareform(pdist(x - x.mean(0)))
    np.fill_diagonal(d, np.inf)
    d.sort(axis=1)
    mu = np.sort(d[:, 1] / d[:, 0])[: int(400 * 0.9)]
    xs, ys = np.log(mu), -np.log(1 - np.arange(1, len(mu) + 1) / 400)
    assert res.id == pytest.approx(xs @ ys / (xs @ xs), rel=1e-6)


def test_id_flattens_and_accepts_torch():
    x = _gaussian_5_in_50()[:300]
    ref = two_nn_id(x)
    assert two_nn_id(x.reshape(300, 2, 5, 5)) == ref
    torch = pytest.importorskip("torch")
    assert two_nn_id(torch.from_numpy(x)) == ref


def test_id_subsampled():
    x = _gaussian_5_in_50()[:500]
    a = two_nn_id_subsampled(x, fraction=0.9, repeats=10, seed=1)
    assert a == two_nn_id_subsampled(x, fraction=0.9, repeats=10, seed=1)
    assert a == pytest.approx(two_nn_id(x), rel=0.1)
    # fraction 1: every repeat is the full set
    assert two_nn_id_subsampled(x, fraction=1.0, repeats=3) == pytest.approx(two_nn_id(x))


# ------------------------------------------------------------------------------------------ SS


def _blobs(rng, k=3, per=40, d=10, spread=1.0, sep=0.0):
    centres = rng.standard_normal((k, d)) * sep
    labels = np.repeat(np.arange(k), per)
    return centres[labels] + spread * rng.standard_normal((k * per, d)), labels


def test_ss_tight_clusters_zero():
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, spread=0.0, sep=10.0)
    assert ss_ratio(x, y) == pytest.approx(0.0, abs=1e-12)
    x, y = _blobs(rng, spread=1e-4, sep=10.0)
    assert ss_ratio(x, y) < 1e-6


def test_ss_calinski_harabasz():
    calinski_harabasz_score = pytest.importorskip("sklearn.metrics").calinski_harabasz_score
    rng = np.random.default_rng(1)
    x = rng.standard_normal((150, 8))
    y = rng.integers(0, 3, 150)
    k, n = 3, 150
    ch = calinski_harabasz_score(x, y)
    assert ss_ratio(x, y) == pytest.approx(1 / (1 + ch * (k - 1) / (n - k)), rel=1e-10)
    x2, y2 = _blobs(rng, sep=3.0)
    ch2 = calinski_harabasz_score(x2, y2)
    assert ss_ratio(x2, y2) == pytest.approx(1 / (1 + ch2 * 2 / (120 - 3)), rel=1e-10)


def test_ss_invariances_and_random_labels():
    rng = np.random.default_rng(2)
    x, y = _blobs(rng, sep=2.0)
    ref = ss_ratio(x, y)
    assert ss_ratio(x + 1e3, y) == pytest.approx(ref, rel=1e-9)
    assert ss_ratio(7.5 * x, y) == pytest.approx(ref, rel=1e-12)
    assert ss_ratio(x @ _rotation(rng, 10), y) == pytest.approx(ref, rel=1e-10)
    # labels remapped/permuted values do not matter
    assert ss_ratio(x, np.array([5, -1, 9])[y]) == pytest.approx(ref, rel=1e-12)
    z = rng.standard_normal((1000, 20))
    assert ss_ratio(z, rng.integers(0, 4, 1000)) == pytest.approx(1.0, abs=0.02)


def test_ss_identical_points_nan():
    with pytest.warns(MetricWarning, match="total sum of squares is 0"):
        assert np.isnan(ss_ratio(np.ones((6, 3)), [0, 0, 1, 1, 2, 2]))


# ----------------------------------------------------------------------------------------- RSA


def test_correlation_rdm_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 300)) + 5.0
    np.testing.assert_allclose(
        correlation_rdm(x), squareform(pdist(x, "correlation")), atol=1e-12, rtol=0
    )
    x[3] = 2.0  # constant row: NaN like SciPy
    with pytest.warns(MetricWarning):
        rdm = correlation_rdm(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = squareform(pdist(x, "correlation"))
    np.testing.assert_allclose(rdm, ref, atol=1e-12, rtol=0)
    assert np.isnan(rdm[3, 0]) and rdm[3, 3] == 0


def test_rsa_hand_computed_maximum():
    x = np.array([1.0, 2.0, 4.0, -3.0])
    feats = np.array([x, 2 * x, 3 * x + 1, -x, -0.5 * x])
    labels = [0, 0, 0, 1, 1]
    # within: correlation 1 -> 0; between: correlation -1 -> 2
    assert rsa_delta(feats, labels) == pytest.approx(2.0, abs=1e-12)


def test_rsa_hand_computed_small():
    # three samples, classes {0, 0, 1}: one within pair (0,1), two between pairs (0,2), (1,2)
    feats = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    rdm = squareform(pdist(feats, "correlation"))
    expected = (rdm[0, 2] + rdm[1, 2]) / 2 - rdm[0, 1]
    assert rsa_delta(feats, [0, 0, 1]) == pytest.approx(expected, abs=1e-12)


def test_rsa_separated_clusters_and_random_labels():
    rng = np.random.default_rng(5)
    protos = rng.standard_normal((4, 200))
    y = np.repeat(np.arange(4), 25)
    x = protos[y] + 0.01 * rng.standard_normal((100, 200))
    assert rsa_delta(x, y) > 0.9  # between ~1 (independent prototypes), within ~0
    z = rng.standard_normal((400, 50))
    assert rsa_delta(z, rng.integers(0, 3, 400)) == pytest.approx(0.0, abs=0.01)


def test_rsa_order_independent():
    rng = np.random.default_rng(6)
    x, y = _blobs(rng, sep=1.0)
    perm = rng.permutation(len(y))
    assert rsa_delta(x[perm], y[perm]) == pytest.approx(rsa_delta(x, y), abs=1e-12)


def test_rsa_constant_rows_and_degenerate_classes():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 10))
    y = np.array([0, 0, 1, 1, 2, 2])
    x[0] = 0.0
    with pytest.warns(MetricWarning, match="dropped 1 constant"):
        v = rsa_delta(x, y)
    assert v == pytest.approx(rsa_delta(x[1:], y[1:]), abs=1e-12)
    # only one class survives -> NaN
    x2 = rng.standard_normal((4, 5))
    x2[2:] = 1.0
    with pytest.warns(MetricWarning) as record:
        assert np.isnan(rsa_delta(x2, [0, 0, 1, 1]))
    assert any("1 class(es) left" in str(w.message) for w in record)
    # singletons only: no within-class pair -> NaN
    with pytest.warns(MetricWarning, match="within-class pair"):
        assert np.isnan(rsa_delta(rng.standard_normal((3, 5)), [0, 1, 2]))


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [ss_ratio, rsa_delta])
def test_bad_inputs_labelled(fn):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((10, 4))
    y = np.repeat([0, 1], 5)
    for bad in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[2, 1] = bad
        with pytest.raises(ValueError, match="NaN/Inf"):
            fn(xb, y)
    with pytest.raises(ValueError, match=r"10 samples.*9 entries"):
        fn(x, y[:9])
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        fn(x, np.zeros(10, int))
    with pytest.raises(ValueError, match="2-D"):
        fn(x[:, 0], y)
    with pytest.raises(ValueError, match="integers"):
        fn(x, y + 0.5)


def test_bad_inputs_id():
    with pytest.raises(ValueError, match="NaN/Inf"):
        two_nn_id(np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="at least 3 samples"):
        two_nn_id(np.eye(2))
    with pytest.raises(ValueError, match="2-D"):
        two_nn_id(np.arange(5.0))
    with pytest.raises(ValueError, match="discard"):
        two_nn_id(np.eye(5), discard=1.0)


def test_registry_and_compute_metrics():
    assert set(METRICS) >= {"id", "ss", "rsa"}
    for name, fn in (("id", two_nn_id), ("ss", ss_ratio), ("rsa", rsa_delta)):
        assert METRICS[name].kind == "layer"
        assert METRICS[name].higher_is_better is fn.higher_is_better
    for fn in (two_nn_id, two_nn_id_details, two_nn_id_subsampled, ss_ratio, rsa_delta):
        assert isinstance(fn.higher_is_better, bool)
    assert not two_nn_id.higher_is_better and not ss_ratio.higher_is_better
    assert rsa_delta.higher_is_better
    rng = np.random.default_rng(9)
    x, y = _blobs(rng, sep=2.0)
    out = compute_metrics(x.astype(np.float32), y, ["rsa", "id", "ss"])
    assert list(out) == ["rsa", "id", "ss"]
    assert all(isinstance(v, float) for v in out.values())
    assert out["ss"] == pytest.approx(ss_ratio(x.astype(np.float32), y))
    assert compute_metrics(x, None, "id") == {"id": two_nn_id(x)}
    with pytest.raises(ValueError, match="unknown metric.*'hscor'.*known: .*id.*rsa.*ss"):
        compute_metrics(x, y, ["id", "hscor"])
    with pytest.raises(ValueError, match="needs labels"):
        compute_metrics(x, None, ["ss"])


def test_register_metric_rejects_a_second_function_under_one_name():
    with pytest.raises(ValueError, match="already registered"):
        M.register_metric("ss", higher_is_better=False)(lambda stats: 0.0)
    with pytest.raises(ValueError, match="kind"):
        M.register_metric("_x", higher_is_better=True, kind="weird")
