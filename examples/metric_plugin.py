"""A metric plugin: k-nearest-neighbour leave-one-out accuracy of a layer.

How well do the target's classes separate in this layer, without training anything? Every
sample is classified by a majority vote of its ``K`` nearest other samples (Euclidean distance
on the layer's activations); the score is the fraction classified correctly. A layer where
same-class images lie close together should transfer well to the target (higher is better).

Use it in a run with one config line (docs/plugins.md):

    metric_plugins: [examples/metric_plugin.py]
    tracks: {cnn: {metrics: [id, ss, rsa, knn_loo], ...}}

or when ranking checkpoints: ``transferability rank --metric-plugin examples/metric_plugin.py
--metrics knn_loo ...``. A ``features`` metric receives the layer in memory as float32
(n, d) — here distances need every pair of samples — and the target labels (n,).
"""

import numpy as np

from transferability.metrics import register_metric

K = 5  # neighbours that vote
BLOCK = 512  # rows of the distance matrix held at once: memory ~ BLOCK × n


@register_metric("knn_loo", higher_is_better=True, kind="features")
def knn_loo(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of the K-nearest-neighbour vote (ties: the nearer class wins)."""
    x = np.asarray(features, dtype=np.float64)
    _, y = np.unique(labels, return_inverse=True)
    n = len(x)
    if n <= K:
        raise ValueError(f"knn_loo needs more than K = {K} samples, got {n}")
    sq = np.einsum("ij,ij->i", x, x)
    correct = 0
    for start in range(0, n, BLOCK):
        rows = slice(start, min(start + BLOCK, n))
        d2 = sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)
        d2[np.arange(d2.shape[0]), np.arange(start, rows.stop)] = np.inf  # leave itself out
        nearest = np.argsort(d2, axis=1, kind="stable")[:, :K]
        votes = np.zeros((d2.shape[0], y.max() + 1))
        # weights K, K-1, ... 1 scaled below 1 break ties toward the nearer neighbours' class
        np.add.at(
            votes,
            (np.arange(d2.shape[0])[:, None], y[nearest]),
            1.0 + np.arange(K, 0, -1) / (K * K + 1),
        )
        correct += int(np.sum(votes.argmax(axis=1) == y[rows]))
    return correct / n
