"""Reading and writing the workflow's artifacts: checkpoints, HDF5 activations, CSV tables.

Every write goes to a temporary name in the target directory and is renamed into place, so an
interrupted job never leaves a file that looks complete (SPEC §10).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

#: Bytes per HDF5 chunk of activations: all samples × a slice of features, so that metrics can
#: stream over feature chunks later (SPEC §7 scaling design).
CHUNK_BYTES = 4 * 2**20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": dict(meta)}, tmp)


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


def write_activations(
    path: str | os.PathLike,
    activations: np.ndarray,
    labels: np.ndarray,
    sample_index: np.ndarray,
    attrs: Mapping[str, Any],
    compression: str | None = "lzf",
) -> None:
    """One layer's activations for the target subset: dataset ``activations`` (n × features,
    float32, chunked over features, compressed), ``labels``, ``sample_index``; the layer's own
    shape goes into the ``layer_shape`` attribute, plus everything in ``attrs``."""
    activations = np.asarray(activations)
    n = activations.shape[0]
    flat = np.ascontiguousarray(activations.reshape(n, -1), dtype=np.float32)
    features = flat.shape[1]
    chunk_cols = int(min(features, max(1, CHUNK_BYTES // (4 * max(n, 1)))))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(
            "activations",
            data=flat,
            chunks=(n, chunk_cols) if n else None,
            compression=compression,
        )
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        f.create_dataset("sample_index", data=np.asarray(sample_index, dtype=np.int64))
        f.attrs["layer_shape"] = np.asarray(activations.shape[1:], dtype=np.int64)
        f.attrs["dtype"] = "float32"
        for key, value in attrs.items():
            f.attrs[key] = value


def read_activations(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(activations (n, features) float32, labels, attrs)``; errors name the file."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            features = f["activations"][...]
            labels = f["labels"][...]
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(
            f"cannot read activations file {path}: {type(err).__name__}: {err}"
        ) from err
    if len(features) != len(labels):
        raise ValueError(f"{path}: {len(features)} activation rows but {len(labels)} labels")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: layer {attrs.get('layer', '?')} activations contain NaN/Inf")
    return features, labels, attrs


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
