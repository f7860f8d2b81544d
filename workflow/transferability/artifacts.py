"""Reading and writing the workflow's artifacts: checkpoints, HDF5 activations, CSV tables.

Every write goes to a temporary name in the target directory and is renamed into place, so an
interrupted job never leaves a file that looks complete (SPEC §10).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

#: HDF5 chunks of activations: tiles of CHUNK_ROWS samples × ~CHUNK_BYTES of features.
CHUNK_ROWS = 32
CHUNK_BYTES = 2**20


@functools.cache
def code_version() -> str:
    """The code that produces an artifact: ``git describe --always --dirty`` of the checkout the
    library runs from, else the installed package version (recorded in every checkpoint and
    activation file, SPEC §10)."""
    from transferability import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        described = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        described = ""
    return f"{__version__}+git.{described}" if described else __version__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Temporary files that a killed earlier attempt left for the same ``path`` are removed first
    (each output has one producing job, so nothing else writes them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# --- checkpoints -------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state_dict: Mapping, meta: Mapping[str, Any]) -> None:
    """Save ``{"state_dict", "meta"}``; ``meta`` holds only str/int/float/bool/None values."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {"code_version": code_version(), **meta}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint, loaded with ``weights_only=True`` (no code runs).

    Raises ``ValueError`` naming the file when it is missing, truncated, corrupted, contains
    pickled code or lacks the expected keys.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad files
        raise ValueError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ValueError(
            f"checkpoint {path} is not a transferability checkpoint "
            "(expected a dict with 'state_dict' and 'meta')"
        )
    return blob["state_dict"], blob["meta"]


# --- activations -------------------------------------------------------------------------------


@contextlib.contextmanager
def activation_writer(
    path: str | os.PathLike,
    n: int,
    layer_shape: tuple[int, ...],
    labels: np.ndarray,
    sample_index: np.ndarray,
    attrs: Mapping[str, Any],
    compression: str | None = "lzf",
) -> Iterator[h5py.Dataset]:
    """Open a new activation file and yield its ``activations`` dataset (n × features, float32)
    to be filled in row blocks — large layers never need all samples in memory. The file
    appears under ``path`` only when the block completes.

    Chunks are tiles of ``CHUNK_ROWS`` samples × a slice of features, so that both streaming
    passes of the metrics (column strips and row blocks) decompress each chunk once.
    """
    features = int(np.prod(layer_shape))
    rows = max(1, min(n, CHUNK_ROWS))
    cols = max(1, min(features, CHUNK_BYTES // (4 * rows)))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_dataset(
            "activations", shape=(n, features), dtype=np.float32,
            chunks=(rows, cols) if n else None, compression=compression,
        )  # fmt: skip
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        f.create_dataset("sample_index", data=np.asarray(sample_index, dtype=np.int64))
        f.attrs["layer_shape"] = np.asarray(layer_shape, dtype=np.int64)
        f.attrs["dtype"] = "float32"
        f.attrs["code_version"] = code_version()
        for key, value in attrs.items():
            f.attrs[key] = value
        yield data


def write_activations(
    path: str | os.PathLike,
    activations: np.ndarray,
    labels: np.ndarray,
    sample_index: np.ndarray,
    attrs: Mapping[str, Any],
    compression: str | None = "lzf",
) -> None:
    """One layer's activations for the target subset (see :func:`activation_writer`):
    dataset ``activations`` (n × features, float32, chunked, compressed), ``labels``,
    ``sample_index``; attributes ``layer_shape``, ``dtype`` and everything in ``attrs``."""
    activations = np.asarray(activations)
    n = activations.shape[0]
    with activation_writer(
        path, n, activations.shape[1:], labels, sample_index, attrs, compression
    ) as data:
        data[...] = activations.reshape(n, -1).astype(np.float32, copy=False)


def read_activations(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(activations (n, features) float32, labels, attrs)``; errors name the file."""
    with _opened(path) as f:
        features = f["activations"][...]
        labels = f["labels"][...]
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    if len(features) != len(labels):
        raise ValueError(f"{path}: {len(features)} activation rows but {len(labels)} labels")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: layer {attrs.get('layer', '?')} activations contain NaN/Inf")
    return features, labels, attrs


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The attributes of an activation file (cheap: no data are read)."""
    try:
        with h5py.File(path, "r") as f:
            return {k: _plain(v) for k, v in f.attrs.items()}
    except Exception as err:
        raise ValueError(
            f"cannot read activations file {path}: {type(err).__name__}: {err}"
        ) from err


def activation_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of an activation file's activations (cheap: no data are read)."""
    with _opened(path) as f:
        return tuple(int(n) for n in f["activations"].shape)


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An activation file open for reading; any error but a missing file names the file."""
    try:
        with h5py.File(path, "r") as f:
            yield f
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(
            f"cannot read activations file {path}: {type(err).__name__}: {err}"
        ) from err


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
