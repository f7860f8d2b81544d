"""Tests for the featuremap metrics S1–S6 and C5,6 (Ueno & Kondo, ICLR 2020 submission)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score

from transferability.metrics import featuremap as fm
from transferability.metrics import per_image
from transferability.metrics._base import METRICS, MetricWarning
from transferability.metrics.featuremap import c56, s1, s2, s3, s4, s5, s6, sample_stats
from transferability.metrics.stats import layer_stats, layer_stats_from_h5


def _clustered(seed: int, n: int = 40, k: int = 4, shape=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)
    centres = rng.standard_normal((k, *shape))
    x = centres[labels] + 0.7 * rng.standard_normal((n, *shape))
    return np.maximum(x, 0.0), labels


def _abs_corr_sum_reference(image: np.ndarray) -> float:
    """Σ_{i≠j} |corr| with np.corrcoef over the non-constant channels only."""
    flat = image.reshape(image.shape[0], -1)
    keep = flat.min(axis=1) != flat.max(axis=1)
    if keep.sum() < 2:
        return 0.0
    corr = np.abs(np.corrcoef(flat[keep]))
    return float(corr.sum() - np.trace(corr))


# ------------------------------------------------------------------------------- S1, S2, S3


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 4)])
def test_s3_is_calinski_harabasz(seed, k):
    x, y = _clustered(seed, k=k)
    expected = calinski_harabasz_score(x.reshape(len(x), -1), y)
    assert s3(x, y) == pytest.approx(expected, rel=1e-9)


def test_s1_s2_sums_of_squares_direct():
    x, y = _clustered(2, n=30, k=3)
    flat = x.reshape(len(x), -1)
    grand = flat.mean(axis=0)
    ssw = ssb = 0.0
    for k in np.unique(y):
        members = flat[y == k]
        mean_k = members.mean(axis=0)
        ssw += float(((members - mean_k) ** 2).sum())
        ssb += len(members) * float(((grand - mean_k) ** 2).sum())
    tss = float(((flat - grand) ** 2).sum())
    assert s2(x, y) == pytest.approx(ssw, rel=1e-10)
    assert s1(x, y) == pytest.approx(ssb, rel=1e-10)
    assert s1(x, y) + s2(x, y) == pytest.approx(tss, rel=1e-10)


def test_s1_s3_degenerate_cases():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    assert s2(x, y) == pytest.approx(0.0, abs=1e-12)
    assert s1(x, y) == pytest.approx(4 * 1.25)  # 4 samples at distance² 1.25 from the mean
    with pytest.warns(MetricWarning, match="collapsed"):
        assert s3(x, y) == math.inf
    with pytest.warns(MetricWarning, match="identical"):
        assert math.isnan(s3(np.ones((4, 3)), y))
    assert s1(np.ones((4, 3)), y) == 0.0
    with pytest.raises(ValueError, match="more samples than classes"):
        s3(np.eye(3), [0, 1, 2])
    assert s2(np.eye(3), [0, 0, 0]) == pytest.approx(2.0)  # S2 = TSS for one class


# ------------------------------------------------------------------------------- S4


def _two_channel(ch0, ch1) -> np.ndarray:
    return np.stack([np.asarray(ch0, float), np.asarray(ch1, float)]).reshape(2, 2, 2)


def test_s4_hand_made_two_channels():
    base = np.array([1.0, 2.0, 3.0, 4.0])
    correlated = _two_channel(base, 2 * base + 1)
    anti = _two_channel(base, -base)
    constant = _two_channel(base, [5.0, 5.0, 5.0, 5.0])
    dead = _two_channel(base, [0.0, 0.0, 0.0, 0.0])
    orthogonal = _two_channel([1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0])
    fmaps = np.stack([correlated, anti, constant, dead, orthogonal])
    per_image = sample_stats(fmaps)["s4"]
    np.testing.assert_allclose(per_image, [2.0, 2.0, 0.0, 0.0, 0.0], atol=1e-12)
    assert s4(fmaps) == pytest.approx(4.0)  # the sum over images, not the mean


def test_s4_matches_corrcoef_on_random_data():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((6, 7, 3, 4)), 0.0)
    x[1, 2] = 0.0  # a dead channel
    x[4, 5] = 0.3  # a constant non-zero channel
    x[:, 6] = 0.5 * x[:, 0] + 0.1 * rng.standard_normal((6, 3, 4))  # correlated with channel 0
    expected = [_abs_corr_sum_reference(image) for image in x]
    np.testing.assert_allclose(sample_stats(x)["s4"], expected, rtol=1e-12, atol=1e-12)
    assert s4(x, np.arange(6) % 2) == pytest.approx(sum(expected), rel=1e-12)
    assert np.all(sample_stats(x)["s4"] <= 7 * 6)


# ------------------------------------------------------------------------------- S5, S6


def _sparse_images() -> np.ndarray:
    a = [[0.0, 0.0, 3.0], [2.5, 0.0, 1.0]]  # 3 non-zero of 6; high: 3, 2.5; 3 zeros → 2/3
    b = [[2.0, 1.0, 1.0], [1.0, 1.0, 1.0]]  # dense; high: 2 only (1 is exactly max − 1) → 1/1
    c = [[-1.0, 0.0, 4.0], [-0.0, 0.0, 3.5]]  # negatives count as non-zero, −0.0 as zero → 2/3
    return np.array([a, b, c])[:, None]  # (3, 1, 2, 3)


def test_s5_s6_hand_computed():
    x = _sparse_images()
    stats = sample_stats(x)
    np.testing.assert_allclose(stats["nonzero_fraction"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(stats["s6"], [2 / 3, 1.0, 2 / 3])
    assert s5(x) == pytest.approx(2 / 3)
    with pytest.warns(MetricWarning, match="1 of 3 images have no zero element"):
        assert s6(x) == pytest.approx(7 / 9)


def test_s6_no_warning_when_every_image_has_a_zero():
    x = _sparse_images()[[0, 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert s6(x, [0, 1]) == pytest.approx(2 / 3)


def test_s5_from_streaming_counts_equals_sample_stats():
    x, y = _clustered(4)
    stats = layer_stats(x, y, with_sample_stats=True)
    assert fm._s5(stats) == pytest.approx(float(stats.sample_stats["nonzero_fraction"].mean()))


# ------------------------------------------------------------------------------- sample_stats


def test_sample_stats_block_invariance(monkeypatch):
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((9, 6, 4, 3)), 0.0).astype(np.float32)
    whole = sample_stats(x)
    parts = [sample_stats(x[:4]), sample_stats(x[4:])]
    monkeypatch.setattr(per_image, "SAMPLE_BLOCK_BYTES", 1)  # one image per sub-block
    tiny = sample_stats(x)
    assert set(whole) == {"s4", "nonzero_fraction", "s6"}
    for key, value in whole.items():
        assert value.shape == (9,)
        np.testing.assert_allclose(np.concatenate([p[key] for p in parts]), value, rtol=1e-13)
        np.testing.assert_allclose(tiny[key], value, rtol=1e-13)


def test_flat_input_is_channels_of_one_by_one():
    rng = np.random.default_rng(6)
    x = np.maximum(rng.standard_normal((5, 8)), 0.0)
    flat, as_maps = sample_stats(x), sample_stats(x[:, :, None, None])
    for key in flat:
        np.testing.assert_array_equal(flat[key], as_maps[key])
    np.testing.assert_array_equal(flat["s4"], 0.0)
    np.testing.assert_allclose(flat["nonzero_fraction"], np.count_nonzero(x, axis=1) / 8)
    assert s4(x) == 0.0
    assert s5(x) == pytest.approx(float(np.mean(np.count_nonzero(x, axis=1) / 8)))


def test_streamed_from_h5_equals_in_memory(tmp_path):
    from transferability.artifacts import write_activations

    x, y = _clustered(7, n=12, k=3, shape=(5, 3, 3))
    x = x.astype(np.float32)
    path = tmp_path / "act.h5"
    write_activations(path, x, y, np.arange(len(x)), {"layer": "conv"})
    stats = layer_stats_from_h5(path, with_sample_stats=True, stream_bytes=8 * 45 * 3)
    for name, fn in [("s1", s1), ("s2", s2), ("s3", s3), ("s4", s4), ("s5", s5), ("s6", s6)]:
        assert METRICS[name](stats) == pytest.approx(fn(x, y), rel=1e-9), name


# ------------------------------------------------------------------------------- C5,6


def test_c56_hand_example_and_direction():
    s5v, s6v = [0.1, 0.5, 0.2], [2.0, 4.0, 4.0]  # scaled: [-1, 1, -0.5] and [-1, 1, 1]
    out = c56(s5v, s6v)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    np.testing.assert_allclose(out, [1.0, -1.0, -(0.426 * -0.5 + 0.574 * 1.0)])
    np.testing.assert_allclose(
        c56([0.2, 0.4, 0.3], [3.0, 1.0, 2.0]), [-0.148, 0.148, 0.0], atol=1e-12
    )
    np.testing.assert_allclose(c56(s5v, s6v, alpha=0.0), [1.0, -1.0, 0.5])


def test_c56_constant_inputs_and_nan():
    np.testing.assert_allclose(c56([0.3, 0.3, 0.3], [1.0, 2.0, 3.0]), [0.574, 0.0, -0.574])
    np.testing.assert_array_equal(c56([0.3, 0.3], [2.0, 2.0]), [0.0, 0.0])
    np.testing.assert_array_equal(c56([0.3], [2.0]), [0.0])
    out = c56([0.1, np.nan, 0.5], [1.0, 10.0, 3.0])  # the NaN model is left out of the scaling
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [1.0, -1.0])
    assert np.isnan(c56([np.nan], [np.nan])).all()
    with pytest.raises(ValueError, match="3 S5 values but 2 S6"):
        c56([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="alpha"):
        c56([1, 2], [1, 2], alpha=1.5)


# ------------------------------------------------------------------------------- registry, input


def test_registry_and_directions():
    expected = {"s1": True, "s2": False, "s3": True, "s4": False, "s5": False, "s6": False}
    public = {"s1": s1, "s2": s2, "s3": s3, "s4": s4, "s5": s5, "s6": s6}
    for name, better in expected.items():
        assert METRICS[name].kind == "layer"
        assert METRICS[name].higher_is_better is better
        assert public[name].higher_is_better is better
    assert METRICS["c56"] is c56 and c56.kind == "aggregate" and c56.higher_is_better is True


@pytest.mark.parametrize("fn", [s1, s2, s3, s4, s5, s6])
def test_bad_inputs(fn):
    x, y = _clustered(8, n=10, k=2)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/Inf"):
        fn(bad, y)
    with pytest.raises(ValueError, match=r"10 samples.*9 entries"):
        fn(x, y[:9])


@pytest.mark.parametrize("fn", [s1, s3])
def test_single_class_rejected(fn):
    x, _ = _clustered(9, n=10, k=2)
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        fn(x, np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="needs labels"):
        fn(x, None)


def test_sample_statistics_required_and_checked():
    x, y = _clustered(10, n=8, k=2)
    stats = layer_stats(x, y)
    for name in ("s4", "s6"):
        with pytest.raises(ValueError, match="with_sample_stats"):
            METRICS[name](stats)
    assert METRICS["s5"](stats) == pytest.approx(s5(x, y))  # S5 needs no second pass
    with pytest.raises(ValueError, match=r"\(b, c, h, w\)"):
        sample_stats(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN/Inf"):
        sample_stats(np.full((2, 3), np.inf))
