"""Tests for LEEP and NCE: closed forms, direct loop implementations of the formulas, the
paper's Property 2, invariances and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transferability.metrics import METRICS
from transferability.metrics.prediction import leep, nce


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_case(seed: int, n: int = 80, z: int = 7, k: int = 4, temp: float = 1.0):
    """Soft source predictions that carry some information about the target labels."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    mapping = rng.integers(0, z, k)
    logits = 2.0 * np.eye(z)[mapping[y]] + rng.standard_normal((n, z))
    return _softmax(logits / temp), y


def _leep_loops(p: np.ndarray, y: np.ndarray) -> float:
    """Eqs. 1–2 of Nguyen et al. (2020), written out with loops."""
    n, z = p.shape
    classes = np.unique(y)
    joint = {
        (c, j): sum(p[i, j] for i in range(n) if y[i] == c) / n for c in classes for j in range(z)
    }
    marg = {j: sum(joint[c, j] for c in classes) for j in range(z)}
    total = 0.0
    for i in range(n):
        total += math.log(sum(joint[y[i], j] / marg[j] * p[i, j] for j in range(z) if marg[j] > 0))
    return total / n


def _soft_conditional(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LEEP's P̂(y | z) as a (z, K) array (labels 0..K−1)."""
    joint = np.stack([p[y == c].sum(axis=0) for c in range(y.max() + 1)], axis=1)
    return joint / joint.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------- LEEP


def test_leep_one_hot_equal_to_labels_is_zero():
    y = np.array([0, 1, 2, 2, 1, 0, 0, 2])
    assert leep(np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-12)
    # several source classes per target class (a refinement of y) is also perfect
    z = y * 2 + (np.arange(8) % 2)
    assert leep(np.eye(6)[z], y) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leep_matches_loop_formula(seed):
    p, y = _random_case(seed, n=40, z=5, k=3)
    assert leep(p, y) == pytest.approx(_leep_loops(p, y), rel=1e-12)


def test_leep_invariances_and_sign():
    p, y = _random_case(3)
    ref = leep(p, y)
    assert ref <= 0.0
    cols = np.random.default_rng(0).permutation(p.shape[1])
    assert leep(p[:, cols], y) == pytest.approx(ref, rel=1e-12)
    rows = np.random.default_rng(1).permutation(len(y))
    assert leep(p[rows], y[rows]) == pytest.approx(ref, rel=1e-12)
    assert leep(p, np.array([10, -3, 7, 2])[y]) == pytest.approx(ref, rel=1e-12)
    # a source class with zero mass everywhere is dropped
    assert leep(np.hstack([p, np.zeros((len(y), 2))]), y) == pytest.approx(ref, rel=1e-12)


def test_leep_uninformative_predictions():
    """Identical rows: P̂(y|z) = P̂(y) for every z, so LEEP = Σ_y P̂(y) log P̂(y) = −H(Y)."""
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.tile([0.2, 0.5, 0.3], (6, 1))
    h = -(0.5 * math.log(0.5) + (1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6))
    assert leep(p, y) == pytest.approx(-h, rel=1e-12)


def test_leep_accepts_float32_softmax_and_torch():
    p, y = _random_case(4, z=1000)
    p32 = p.astype(np.float32)  # rows sum to 1 ± ~1e-7
    assert leep(p32, y) == pytest.approx(leep(p32.astype(np.float64), y), rel=1e-12)
    torch = pytest.importorskip("torch")
    assert leep(torch.from_numpy(p), torch.from_numpy(y)) == leep(p, y)
    assert nce(torch.from_numpy(p), torch.from_numpy(y)) == nce(p, y)


# -------------------------------------------------------------------------------------- NCE


def test_nce_closed_forms():
    y = np.array([0, 0, 0, 1])
    # dummy label a bijection of the target label: 0
    assert nce(np.eye(2)[1 - y] * 0.9 + 0.05, y) == pytest.approx(0.0, abs=1e-15)
    # constant dummy label: −H(Y) = 3/4 log 3/4 + 1/4 log 1/4
    p = np.tile([0.1, 0.7, 0.2], (4, 1))
    assert nce(p, y) == pytest.approx(0.75 * math.log(0.75) + 0.25 * math.log(0.25), rel=1e-12)


@pytest.mark.parametrize("seed", [5, 6])
def test_nce_matches_formula_and_bounds(seed):
    p, y = _random_case(seed, temp=3.0)
    z = p.argmax(axis=1)
    n = len(y)
    ref = 0.0
    for a in np.unique(z):
        for c in np.unique(y):
            joint = np.sum((z == a) & (y == c)) / n
            if joint > 0:
                ref += joint * math.log(joint / (np.sum(z == a) / n))
    value = nce(p, y)
    assert value == pytest.approx(ref, rel=1e-12)
    freq = np.bincount(y) / n
    assert np.sum(freq * np.log(freq)) - 1e-12 <= value <= 0.0
    cols = np.random.default_rng(seed).permutation(p.shape[1])
    assert nce(p[:, cols], y) == pytest.approx(value, rel=1e-12)


# ------------------------------------------------------------------------------ Property 2


def test_leep_equals_nce_for_hard_predictions():
    """One-hot predictions: LEEP's soft P̂(y|z) is NCE's, θ(x_i)_{z_i} = 1, and Property 2
    (LEEP ≥ NCE + mean log max-probability) holds with equality."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        y = np.concatenate([[0, 1, 2], rng.integers(0, 3, 57)])
        p = np.eye(6)[rng.integers(0, 6, 60)]
        assert leep(p, y) == pytest.approx(nce(p, y), rel=1e-12, abs=1e-15)


def test_property_2_proof_inequality_on_random_inputs():
    """What the paper's proof of Property 2 shows: LEEP ≥ (1/n) Σ log P̂(y_i|z_i)
    + (1/n) Σ log θ(x_i)_{z_i} with LEEP's (soft) P̂ and the argmax dummy labels z_i."""
    rng = np.random.default_rng(8)
    for trial in range(200):
        p, y = _random_case(trial, n=50, z=6, k=3, temp=float(rng.choice([0.2, 1.0, 5.0])))
        z = p.argmax(axis=1)
        n = len(y)
        bound = np.mean(np.log(_soft_conditional(p, y)[z, y])) + np.mean(np.log(p[np.arange(n), z]))
        assert leep(p, y) >= bound - 1e-12


def test_property_2_as_stated_fails_for_soft_predictions():
    """With NCE's own (hard) P̂(y|z) the stated Property 2 does not hold in general: here
    NCE = 0 and mean log max-probability = log 0.6, but LEEP = log 0.52."""
    p = np.array([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 0, 1, 1])
    assert nce(p, y) == pytest.approx(0.0, abs=1e-15)
    assert leep(p, y) == pytest.approx(math.log(0.52), rel=1e-12)
    assert leep(p, y) < nce(p, y) + math.log(0.6)


# ------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("fn", [leep, nce])
def test_bad_inputs(fn):
    p, y = _random_case(9, n=20, z=4, k=2)
    with pytest.raises(ValueError, match="sum to 1"):
        fn(p * 1.01, y)
    neg = p.copy()
    neg[0, :2] = [-0.1, neg[0, 0] + neg[0, 1] + 0.1]
    with pytest.raises(ValueError, match="negative"):
        fn(neg, y)
    nan = p.copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(nan, y)
    with pytest.raises(ValueError, match="20 rows but labels have 19"):
        fn(p, y[:19])
    with pytest.raises(ValueError, match="2-D"):
        fn(p[0], y[:1])
    with pytest.raises(ValueError, match="2 distinct classes"):
        fn(p, np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        fn(p, y + 0.5)


def test_registered_as_prediction_metrics():
    for name, fn in [("leep", leep), ("nce", nce)]:
        assert METRICS[name] is fn
        assert fn.kind == "prediction" and fn.higher_is_better
    p, y = _random_case(10)
    assert isinstance(leep(p, y), float) and isinstance(nce(p, y), float)
