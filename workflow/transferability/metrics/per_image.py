"""Per-image featuremap statistics of Ueno & Kondo's S4 and S6 (and S5's non-zero fraction):
values that need every element of one image at once, gathered on row blocks in a second pass by
:mod:`transferability.metrics.stats` and read by :mod:`transferability.metrics.featuremap`.

Its own module so that the statistics pass does not import the metrics built on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transferability.metrics._base import to_numpy

__all__ = ["NEAR_MAX_MARGIN", "SAMPLE_BLOCK_BYTES", "sample_stats"]

#: Bytes of float64 work arrays held at once by :func:`sample_stats` (per sub-block of images:
#: the centred (b, c, h·w) block and the (b, c, c) correlation matrices).
SAMPLE_BLOCK_BYTES = 64 * 2**20

#: S6 counts the elements whose difference from the image's maximum is *less than* this
#: (the paper: "whose difference from the maximum element value is less than 1").
NEAR_MAX_MARGIN = 1.0


def _as_fmaps(fmaps: Any) -> np.ndarray:
    """(b, c, h, w) or flat (b, d) → float64 (b, c, h·w); ``ValueError`` on bad input."""
    x = to_numpy(fmaps)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"featuremaps must be real numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x.reshape(x.shape[0], x.shape[1], 1)
    elif x.ndim == 4:
        x = x.reshape(x.shape[0], x.shape[1], -1)
    else:
        raise ValueError(
            f"featuremaps must be (b, c, h, w) or flat (b, d), got an array of shape {x.shape}"
        )
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"featuremaps have no elements (shape {x.shape})")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("featuremaps contain NaN/Inf")
    return x


def _abs_corr_sum(x: np.ndarray) -> np.ndarray:
    """Σ_{i≠j} |Pearson(x[:, i], x[:, j])| (ordered pairs) of each image of a (b, c, p) block;
    pairs involving a constant channel contribute 0."""
    b, c, p = x.shape
    if p == 1 or c == 1:  # every channel of a 1 × 1 map is constant / no pair
        return np.zeros(b)
    z = x - x.mean(axis=2, keepdims=True)
    constant = x.min(axis=2) == x.max(axis=2)  # exact: no reliance on rounding of the mean
    norm = np.sqrt(np.einsum("bcp,bcp->bc", z, z))
    norm[constant] = 1.0
    z /= norm[:, :, None]
    z[constant] = 0.0
    corr = np.abs(z @ z.transpose(0, 2, 1))
    np.minimum(corr, 1.0, out=corr)  # |r| ≤ 1 up to rounding
    return corr.sum(axis=(1, 2)) - np.einsum("bii->b", corr)


def sample_stats(fmaps: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image featuremap statistics of a block of images, one value per image.

    Parameters
    ----------
    fmaps
        (b, c, h, w) featuremaps, or flat (b, d) activations read as c = d channels of 1 × 1;
        any real dtype (computed in float64).

    Returns
    -------
    dict
        ``"s4"``: Σ over ordered channel pairs i ≠ j of |Pearson(F(i,:,:), F(j,:,:))| (each
        unordered pair counted twice, as the formula reads; a pair with a constant channel
        contributes 0, so 1 × 1 maps give 0);
        ``"nonzero_fraction"``: #{elements ≠ 0} / (c·h·w);
        ``"s6"``: #{elements with max − x < 1} / max(#{elements = 0}, 1).

    Images are independent: the result for a block equals the concatenation of the results
    for any split of it into sub-blocks. Memory is bounded by :data:`SAMPLE_BLOCK_BYTES`
    (the block is processed in sub-blocks; at least one image at a time, i.e. c²·8 bytes).
    """
    x = _as_fmaps(fmaps)
    b, c, p = x.shape
    flat = x.reshape(b, c * p)
    total = c * p
    nonzero = np.count_nonzero(flat, axis=1)
    zeros = total - nonzero
    near_max = np.count_nonzero(flat.max(axis=1, keepdims=True) - flat < NEAR_MAX_MARGIN, axis=1)
    per_image = 8 * (c * c + 2 * c * p)
    step = max(1, SAMPLE_BLOCK_BYTES // per_image)
    s4_parts = [_abs_corr_sum(x[i : i + step]) for i in range(0, b, step)]
    return {
        "s4": np.concatenate(s4_parts) if s4_parts else np.zeros(0),
        "nonzero_fraction": nonzero / total,
        "s6": near_max / np.maximum(zeros, 1),
    }
