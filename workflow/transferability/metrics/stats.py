"""Sufficient statistics of one layer's activations, gathered in one streaming pass.

Every layer metric is a function of :class:`LayerStats`: the n × n Gram matrix of the
column-centred activations (float64), per-sample sums, extrema and non-zero counts, and
exact-duplicate groups. From these follow squared distances (TwoNN ID), the sums of squares
(SS, S1–S3), the n × n forms of the H-scores and LogME, and the row-centred Gram matrix (RSA
correlations). Memory is
O(n² + n·strip) instead of O(n·d): VGG ``pool1`` (1 200 × 802 816 float32 = 3.9 GB) streams
through in strips (SPEC §7, scaling design).

The per-image featuremap statistics of S4 and S6 need every channel of one image at once; they
come from a second pass over row blocks, made only when those metrics are requested. The per-sample
``log Σ_j exp(x_ij)`` (ETran's energy score) is accumulated over the strips when requested. Metrics
that need a reduction over the features with n-vectors known only after the first pass (the sign
rule of PARC's PCA components) read the strips again through :attr:`LayerStats.strips`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from transferability.metrics._base import check_features, check_labels, to_numpy

#: Bytes of activations held at once while streaming (one strip or one row block).
STREAM_BYTES = 64 * 2**20

#: Eigenvalues of an n × n Gram matrix at or below ``n · ε · λ_max`` (ε: float64 machine
#: epsilon) are treated as exact zeros: that is the rounding level of ``eigh`` on the matrix.
EIG_RTOL_PER_SAMPLE = float(np.finfo(np.float64).eps)


def eigh_psd(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of a PSD Gram matrix, eigenvalues ascending, those at the rounding level set
    to exactly 0. The arrays are read-only: metrics share them through :class:`LayerStats`."""
    lam, vec = np.linalg.eigh(gram)
    top = float(lam[-1]) if len(lam) else 0.0
    lam = np.where(lam > len(lam) * EIG_RTOL_PER_SAMPLE * top, lam, 0.0)
    lam.setflags(write=False)
    vec.setflags(write=False)
    return lam, vec


@dataclass
class LayerStats:
    """Statistics of activations ``X`` (n samples × d features) of one layer.

    ``duplicate_of[i]`` is the first row byte-identical to row ``i`` (``i`` itself if none).
    ``sample_stats`` holds per-image featuremap statistics (see
    :func:`transferability.metrics.per_image.sample_stats`) when they were gathered;
    ``row_logsumexp`` the per-sample ``log Σ_j exp(x_ij)`` over the raw features when gathered.
    ``strips()`` reads the activations again as float64 column strips (all rows, in column order,
    the widths of the first pass; memory O(n·strip)), or is ``None`` where they cannot be re-read.
    """

    centred_gram: np.ndarray
    mean_projection: np.ndarray
    mean_sq_norm: float
    row_sum: np.ndarray
    row_min: np.ndarray
    row_max: np.ndarray
    row_nonzero: np.ndarray
    duplicate_of: np.ndarray
    labels: np.ndarray | None
    n_features: int
    layer_shape: tuple[int, ...]
    sample_stats: dict[str, np.ndarray] | None = None
    source: str = "array"
    row_logsumexp: np.ndarray | None = None
    strips: Callable[[], Iterator[np.ndarray]] | None = field(
        default=None, repr=False, compare=False
    )
    codes: np.ndarray = field(init=False, repr=False)
    counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.labels is None:  # label-free metrics (ID, RDM) only
            self.codes = self.counts = None
        else:
            self.codes, self.counts = check_labels(self.labels, len(self.row_sum))

    @property
    def n(self) -> int:
        return len(self.row_sum)

    @cached_property
    def gram(self) -> np.ndarray:
        """``X Xᵀ`` of the raw activations: with ``X = Xc + 1μᵀ``,
        ``Xc Xcᵀ + v 1ᵀ + 1 vᵀ + |μ|²`` where ``v = Xc μ``."""
        v = self.mean_projection
        return self.centred_gram + v[:, None] + v[None, :] + self.mean_sq_norm

    @cached_property
    def row_centred_gram(self) -> np.ndarray:
        """Gram matrix of the row-centred activations (each sample minus its own mean)."""
        s = self.row_sum
        return self.gram - np.outer(s, s) / self.n_features

    @cached_property
    def sq_distances(self) -> np.ndarray:
        """Squared Euclidean distances between samples (from the centred Gram, clipped at 0);
        exactly 0 between byte-identical samples."""
        k = self.centred_gram
        diag = np.diag(k)
        d2 = diag[:, None] + diag[None, :] - 2.0 * k
        np.maximum(d2, 0.0, out=d2)
        same = self.duplicate_of[:, None] == self.duplicate_of[None, :]
        d2[same] = 0.0
        return d2

    @cached_property
    def centred_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`eigh_psd` of the centred Gram matrix (ascending), computed once for every
        metric that needs it (H-scores, the principal components of GBC, NLEEP, SFDA; PARC
        uses it when present, see :meth:`cached`)."""
        return eigh_psd(self.centred_gram)

    @property
    def centred_eigh_desc(self) -> tuple[np.ndarray, np.ndarray]:
        """:attr:`centred_eigh`, largest eigenvalue first (views, no copy)."""
        lam, vec = self.centred_eigh
        return lam[::-1], vec[:, ::-1]

    @cached_property
    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`eigh_psd` of the raw Gram matrix (ascending; LogME)."""
        return eigh_psd(self.gram)

    def cached(self, name: str) -> Any:
        """The cached property ``name`` if a metric has computed it already, else None."""
        return self.__dict__.get(name)

    @property
    def constant_rows(self) -> np.ndarray:
        return self.row_min == self.row_max

    def class_indicator(self) -> np.ndarray:
        """(n, K) one-hot matrix of the class codes."""
        onehot = np.zeros((self.n, len(self.counts)))
        onehot[np.arange(self.n), self.codes] = 1.0
        return onehot


class _RowLogSumExp:
    """Per-row ``log Σ_j exp(x_ij)`` over column strips: a running maximum and the sum of
    ``exp(x_ij − max)``, rescaled whenever the maximum grows (no overflow, O(n) memory)."""

    def __init__(self, n: int) -> None:
        self.top = np.full(n, -np.inf)
        self.total = np.zeros(n)

    def add(self, strip: np.ndarray) -> None:
        """Add a float64 strip (all rows)."""
        top = np.maximum(self.top, strip.max(axis=1))
        self.total *= np.exp(self.top - top)  # exp(−inf) = 0 before the first strip
        self.total += np.exp(strip - top[:, None]).sum(axis=1)
        self.top = top

    def value(self) -> np.ndarray:
        return self.top + np.log(self.total)


def _row_hash():
    return hashlib.blake2b(digest_size=16)


def _duplicate_rows(x: np.ndarray, row_min: np.ndarray, row_max: np.ndarray) -> np.ndarray:
    """``duplicate_of`` of in-memory rows (n, d), as the streaming pass's per-row hashes give
    it, without hashing every byte: rows are grouped by exact cheap keys (minimum, maximum and
    16 sampled columns) and only rows that share a key are hashed in full."""
    n, d = x.shape
    cols = np.unique(np.linspace(0, d - 1, min(d, 16)).astype(np.int64))
    keys = np.column_stack([row_min, row_max, x[:, cols]]).astype(np.float64) + 0.0  # no -0.0
    keys = np.ascontiguousarray(keys).view(f"V{keys.shape[1] * 8}").ravel()
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys.tolist()):
        groups.setdefault(key, []).append(i)
    duplicate_of = np.arange(n)
    for rows in groups.values():
        if len(rows) > 1:
            first: dict[bytes, int] = {}
            for i in rows:  # ascending: the first of byte-identical rows wins
                h = _row_hash()
                h.update((x[i] + x.dtype.type(0)).tobytes())
                duplicate_of[i] = first.setdefault(h.digest(), i)
    return duplicate_of


def row_logsumexp_of_strips(strips: Iterator[np.ndarray], n: int) -> np.ndarray:
    """``log Σ_j exp(x_ij)`` of every row of the matrix given as float64 column strips."""
    acc = _RowLogSumExp(n)
    for strip in strips:
        acc.add(np.asarray(strip, dtype=np.float64))
    return acc.value()


class _Accumulator:
    """Adds column strips of X (all rows) into the statistics.

    A strip holds every sample of its columns, so it is centred exactly by its own column means
    before entering the Gram matrix: the distances derived from it do not suffer from
    cancellation against large common offsets.
    """

    def __init__(self, n: int, *, row_logsumexp: bool = False, hash_rows: bool = True) -> None:
        self.gram = np.zeros((n, n))
        self.mean_projection = np.zeros(n)
        self.mean_sq_norm = 0.0
        self.row_sum = np.zeros(n)
        self.row_min = np.full(n, np.inf)
        self.row_max = np.full(n, -np.inf)
        self.row_nonzero = np.zeros(n, dtype=np.int64)
        self.hashes = [_row_hash() for _ in range(n)] if hash_rows else None
        self.logsumexp = _RowLogSumExp(n) if row_logsumexp else None

    def add(self, strip: np.ndarray, scratch: bool = False) -> None:
        """``scratch``: ``strip`` is float64 and may be overwritten (centred in place)."""
        strip = np.asarray(strip)
        if self.hashes is not None:
            strip = strip + strip.dtype.type(0)  # a copy in which -0.0 became 0.0 (for hashing)
            for h, row in zip(self.hashes, strip, strict=True):
                h.update(row.tobytes())
        np.minimum(self.row_min, strip.min(axis=1), out=self.row_min)
        np.maximum(self.row_max, strip.max(axis=1), out=self.row_max)
        self.row_nonzero += np.count_nonzero(strip, axis=1)
        self.row_sum += strip.sum(axis=1, dtype=np.float64)
        centred = strip if scratch else strip.astype(np.float64)
        if self.logsumexp is not None:
            self.logsumexp.add(centred)  # the raw values, before centring
        mean = centred.mean(axis=0)
        centred -= mean  # in place: no second n × strip copy
        self.gram += centred @ centred.T
        self.mean_projection += centred @ mean
        self.mean_sq_norm += float(mean @ mean)

    def finish(
        self,
        labels,
        n_features,
        layer_shape,
        source,
        sample_stats=None,
        strips=None,
        duplicate_of=None,
    ) -> LayerStats:
        if duplicate_of is None:
            first: dict[bytes, int] = {}
            duplicate_of = np.array(
                [first.setdefault(h.digest(), i) for i, h in enumerate(self.hashes)]
            )
        centred_gram = 0.5 * (self.gram + self.gram.T)  # exactly symmetric
        return LayerStats(
            centred_gram, self.mean_projection, self.mean_sq_norm, self.row_sum, self.row_min,
            self.row_max, self.row_nonzero, duplicate_of, labels, n_features, tuple(layer_shape),
            sample_stats, source,
            None if self.logsumexp is None else self.logsumexp.value(), strips,
        )  # fmt: skip


def _sample_stats_of_blocks(blocks, layer_shape) -> dict[str, np.ndarray]:
    from transferability.metrics.per_image import sample_stats

    parts: dict[str, list[np.ndarray]] = {}
    for block in blocks:
        fmaps = np.asarray(block).reshape((len(block), *_as_fmap_shape(layer_shape)))
        for key, value in sample_stats(fmaps).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}


def _as_fmap_shape(layer_shape) -> tuple[int, int, int]:
    """(c, h, w) of a layer; flat layers are c = d channels of 1 × 1 (SPEC §7)."""
    shape = tuple(int(s) for s in layer_shape)
    if len(shape) == 3:
        return shape
    return (int(np.prod(shape)), 1, 1)


def layer_stats(
    features: Any,
    labels: Any,
    *,
    layer_shape: tuple[int, ...] | None = None,
    with_sample_stats: bool = False,
    with_row_logsumexp: bool = False,
) -> LayerStats:
    """Statistics of in-memory activations ``features`` (n, d) or (n, c, h, w).

    ``layer_shape`` defaults to ``features.shape[1:]``; per-image featuremap statistics are
    gathered when ``with_sample_stats``, the per-sample logsumexp when ``with_row_logsumexp``.
    ``strips()`` of the result re-reads ``features`` (kept by reference, converted strip by strip).
    """
    raw = to_numpy(features)
    shape = tuple(layer_shape or raw.shape[1:])
    x = check_features(raw)
    flat = raw.reshape(len(raw), -1)  # a view of the caller's array: no float64 copy is kept
    extra = None
    if with_sample_stats:
        rows = max(1, STREAM_BYTES // (8 * x.shape[1]))
        extra = _sample_stats_of_blocks((x[i : i + rows] for i in range(0, len(x), rows)), shape)
    # x is the caller's array or a float64 copy of it; a copy is centred in place, strip by strip
    scratch = not np.may_share_memory(x, raw)
    acc = _Accumulator(len(x), row_logsumexp=with_row_logsumexp, hash_rows=False)
    step = max(1, STREAM_BYTES // (8 * len(x)))
    for start in range(0, x.shape[1], step):
        acc.add(x[:, start : start + step], scratch=scratch)
    duplicate_of = _duplicate_rows(flat, acc.row_min, acc.row_max)

    def strips() -> Iterator[np.ndarray]:
        for start in range(0, flat.shape[1], step):
            yield np.asarray(flat[:, start : start + step], dtype=np.float64)

    return acc.finish(labels, x.shape[1], shape, "array", extra, strips, duplicate_of)


def layer_stats_from_h5(
    path: str | Path,
    *,
    with_sample_stats: bool = False,
    stream_bytes: int = STREAM_BYTES,
    with_row_logsumexp: bool = False,
) -> LayerStats:
    """Stream an activation file (``transferability.artifacts`` layout) into :class:`LayerStats`.

    One pass over column strips (aligned to the file's chunks) builds the Gram matrix and the
    per-sample sums (and the per-sample logsumexp if ``with_row_logsumexp``); a second pass over
    row blocks gathers the per-image featuremap statistics if ``with_sample_stats``.
    ``strips()`` of the result opens the file again and reads the same strips. Raises
    ``ValueError`` naming the file and layer on NaN/Inf.
    """
    import h5py

    path = Path(path)
    try:
        return _stream(
            h5py.File(path, "r"), path, with_sample_stats, stream_bytes, with_row_logsumexp
        )
    except (OSError, KeyError) as err:  # missing, truncated or foreign file: name it
        raise ValueError(
            f"cannot read activations file {path}: {type(err).__name__}: {err}"
        ) from err


def _h5_strips(path: Path, width: int) -> Callable[[], Iterator[np.ndarray]]:
    """Re-reads the column strips of an activation file (the first pass's widths)."""

    def strips() -> Iterator[np.ndarray]:
        import h5py

        try:
            file = h5py.File(path, "r")
        except OSError as err:
            raise ValueError(f"cannot re-read activations file {path}: {err}") from err
        with file as f:
            data = f["activations"]
            for start in range(0, data.shape[1], width):
                yield np.asarray(data[:, start : start + width], dtype=np.float64)

    return strips


def _stream(
    file, path: Path, with_sample_stats: bool, stream_bytes: int, with_row_logsumexp: bool = False
) -> LayerStats:
    with file as f:
        data = f["activations"]
        n, d = data.shape
        labels = f["labels"][...]
        layer = f.attrs.get("layer", "?")
        shape = tuple(int(s) for s in f.attrs.get("layer_shape", (d,)))
        chunk_rows, chunk_cols = data.chunks or (1, 1)
        # strips and row blocks aligned to the chunk tiles: each tile is decompressed once
        width = max(chunk_cols, (stream_bytes // (8 * max(n, 1))) // chunk_cols * chunk_cols)
        acc = _Accumulator(n, row_logsumexp=with_row_logsumexp)
        for start in range(0, d, width):
            strip = data[:, start : start + width]
            if not np.isfinite(strip).all():
                raise ValueError(f"{path}: layer {layer} activations contain NaN/Inf")
            acc.add(strip)
        extra = None
        if with_sample_stats:
            rows = max(chunk_rows, (stream_bytes // (8 * d)) // chunk_rows * chunk_rows)
            extra = _sample_stats_of_blocks((data[i : i + rows] for i in range(0, n, rows)), shape)
    return acc.finish(labels, d, shape, str(path), extra, _h5_strips(path, width))
