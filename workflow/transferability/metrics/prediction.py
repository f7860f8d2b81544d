"""Prediction metrics: LEEP and NCE from the source head's softmax outputs on the target samples.

``probs`` (n, z) holds the source model's predicted distribution over its own z classes for each
target sample (rows of non-negative numbers summing to 1); ``labels`` (n,) the target classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transferability.metrics._base import (
    check_labels,
    register_metric,
    require_classes,
    to_numpy,
    warn,
)

__all__ = ["leep", "nce"]

#: Rows of ``probs`` must sum to 1 within this (float32 softmax over 1000 classes: ~1e-6).
ROW_SUM_ATOL = 1e-4


def _check_probs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, codes, counts)``: probs as float64 (n, z) with rows renormalised to sum to 1
    exactly, target labels mapped to 0..K−1 and the class sizes. ``ValueError`` on bad input."""
    p = to_numpy(probs)
    if p.ndim != 2:
        raise ValueError(
            f"probs must be 2-D (n_samples, n_source_classes), got an array of shape {p.shape}"
        )
    if p.dtype.kind not in "biuf":
        raise ValueError(f"probs must be real numbers, got dtype {p.dtype}")
    p = np.asarray(p, dtype=np.float64)
    n, z = p.shape
    if z == 0:
        raise ValueError("probs have no columns (n_source_classes = 0)")
    y = to_numpy(labels)
    if y.ndim == 1 and len(y) != n:
        raise ValueError(f"probs have {n} rows but labels have {len(y)} entries")
    codes, counts = check_labels(y, n)
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN/Inf")
    if (p < 0).any():
        raise ValueError(
            f"probs contain negative entries (min {p.min():.3g}); pass softmax probabilities, "
            "not logits"
        )
    sums = p.sum(axis=1)
    worst = float(np.max(np.abs(sums - 1.0))) if n else 0.0
    if worst > ROW_SUM_ATOL:
        raise ValueError(
            f"probs rows must sum to 1 (softmax probabilities): largest deviation {worst:.3g} "
            f"> {ROW_SUM_ATOL:g}"
        )
    require_classes(counts)
    return p / sums[:, None], codes, counts


@register_metric("leep", higher_is_better=True, kind="prediction")
def leep(probs: Any, labels: Any) -> float:
    """LEEP, Log Expected Empirical Prediction (Nguyen et al. 2020, eqs. 1–2).

    With ``θ(x_i)`` the source head's softmax over its z classes: the empirical joint
    ``P̂(y, z) = (1/n) Σ_{i: y_i = y} θ(x_i)_z``, ``P̂(z) = Σ_y P̂(y, z)``,
    ``P̂(y | z) = P̂(y, z) / P̂(z)``, and

    ``LEEP = (1/n) Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z``,

    the average log-likelihood (natural log, as in the paper — some public codes forget the
    log) of the expected empirical predictor.

    Direction: higher is better; LEEP ≤ 0, with 0 when every row is one-hot on a source class
    that determines the target class.

    Parameters
    ----------
    probs
        (n, z) softmax probabilities, NumPy or torch: finite, non-negative, rows summing to 1
        within 1e-4 (``ValueError`` naming the problem otherwise; rows are then renormalised to
        sum to 1 exactly).
    labels
        (n,) integer target labels, at least two classes.

    Notes
    -----
    Source classes with ``P̂(z) = 0`` (probability exactly 0 on every sample) have no defined
    ``P̂(y | z)``; they carry no mass and are dropped. ``log 0`` cannot occur for valid input:
    the inner sum is at least ``max_z θ(x_i)_z² / n >= 1/(n z²)``. As a guard only, an inner sum
    below the smallest positive float64 would be clipped there with a :class:`MetricWarning`.
    """
    p, codes, counts = _check_probs(probs, labels)
    onehot = np.zeros((len(codes), len(counts)))
    onehot[np.arange(len(codes)), codes] = 1.0
    joint = onehot.T @ p  # n·P̂(y, z), shape (K, z)
    mass = joint.sum(axis=0)  # n·P̂(z)
    keep = mass > 0.0
    conditional = joint[:, keep] / mass[keep]  # P̂(y | z)
    eep = np.einsum("iz,iz->i", p[:, keep], conditional[codes])  # Σ_z P̂(y_i | z) θ(x_i)_z
    tiny = np.finfo(np.float64).tiny
    if (eep < tiny).any():
        warn(
            f"LEEP: the expected empirical prediction underflowed to 0 for {(eep < tiny).sum()} "
            "samples; clipped at the smallest positive float"
        )
    eep = np.clip(eep, tiny, 1.0)
    return float(np.mean(np.log(eep)))


def _negative_conditional_entropy(dummy: np.ndarray, codes: np.ndarray) -> float:
    """``Σ_{y,z} P̂(y, z) log P̂(y | z)`` of the empirical joint of hard labels (natural log)."""
    _, zc = np.unique(dummy, return_inverse=True)
    zc = zc.reshape(-1)
    n_y = int(codes.max()) + 1
    counts = np.bincount(zc * n_y + codes, minlength=(int(zc.max()) + 1) * n_y)
    joint = counts.reshape(-1, n_y).astype(np.float64)  # (z, y) counts
    z_tot = joint.sum(axis=1, keepdims=True)
    nz = joint > 0
    ratio = np.divide(joint, z_tot, out=np.ones_like(joint), where=nz)
    return float(np.sum(joint[nz] * np.log(ratio[nz])) / len(codes))


@register_metric("nce", higher_is_better=True, kind="prediction")
def nce(probs: Any, labels: Any) -> float:
    """NCE, negative conditional entropy (Tran et al. 2019, "Transferability and hardness of
    supervised classification tasks"), from argmax dummy labels.

    ``z_i = argmax_z θ(x_i)_z`` (ties go to the lowest source class index, NumPy's argmax);
    with the empirical joint ``P̂(y, z) = #{i: y_i = y, z_i = z} / n``,

    ``NCE = −H(Y | Z) = Σ_{y,z} P̂(y, z) log P̂(y | z) = (1/n) Σ_i log P̂(y_i | z_i)``

    (natural log). Direction: higher is better; ``−H(Y) <= NCE <= 0``, 0 when the dummy label
    determines the target label, ``−H(Y)`` when the dummy label is constant.

    Parameters
    ----------
    probs
        (n, z) softmax probabilities, validated as in :func:`leep`.
    labels
        (n,) integer target labels, at least two classes.

    Notes
    -----
    For one-hot ``probs`` NCE equals :func:`leep`. The paper's Property 2 (Nguyen et al. 2020),
    ``LEEP >= NCE + (1/n) Σ_i log θ(x_i)_{z_i}``, holds for hard predictions but not in general
    for soft ones: its proof uses LEEP's soft ``P̂(y | z)`` where NCE has the hard one.
    """
    p, codes, _ = _check_probs(probs, labels)
    return _negative_conditional_entropy(np.argmax(p, axis=1), codes)
