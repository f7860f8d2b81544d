"""The CNN track's datasets as arrays: what a dataset is (:class:`ImageDataset`: uint8 images
(N, 28, 28) and int64 labels of a train and a test split), its file ``<root>/<name>/data.npz``
(root ``resources/datasets``), the derived sets (MNIST splits and noise sets, built
deterministically from MNIST and a seed) and fixed class-balanced subsets.

How the base sets (MNIST, FashionMNIST) are obtained, offline first, is
:mod:`transferability.data.obtain`.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BASE_DATASETS",
    "DATASET_FILE",
    "DATASET_ROOT",
    "DERIVED_DATASETS",
    "KNOWN_DATASETS",
    "KNOWN_NUM_CLASSES",
    "STRUCT_NOISE_RATIO",
    "ImageDataset",
    "balanced_subset",
    "dataset_path",
    "load_dataset",
    "make_derived",
    "save_dataset",
]

log = logging.getLogger(__name__)

BASE_DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist")


DERIVED_DATASETS: tuple[str, ...] = (
    "mnist_split1",
    "mnist_split2",
    "mnist_noise_struct",
    "mnist_noise",
)


KNOWN_DATASETS: tuple[str, ...] = BASE_DATASETS + DERIVED_DATASETS


#: Classes of each known dataset (the splits keep five digits each).
KNOWN_NUM_CLASSES: dict[str, int] = {
    name: 5 if name.startswith("mnist_split") else 10 for name in KNOWN_DATASETS
}


DATASET_ROOT = Path("resources/datasets")


DATASET_FILE = "data.npz"


STRUCT_NOISE_RATIO = 0.1


_NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y", "num_classes", "name")


def _how_to_create(path: Path) -> str:
    return (
        f"run `make data` or `python -m transferability.data.arrays --root {path.parent.parent} "
        f"{path.parent.name}`"
    )


def _check_name(name: str, allowed: Sequence[str] = KNOWN_DATASETS) -> None:
    if name not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
    if name not in allowed:
        raise ValueError(
            f"dataset {name!r} is not allowed here; expected one of {', '.join(allowed)}"
        )


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled grey-scale image dataset with a train and a test split.

    Attributes
    ----------
    train_x, test_x : np.ndarray
        uint8 images, shape (N, H, W); (N, 28, 28) for every dataset of this module.
    train_y, test_y : np.ndarray
        int64 labels in ``[0, num_classes)``, shape (N,).
    num_classes : int
    name : str
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if int(self.num_classes) < 1:
            raise ValueError(f"dataset {self.name!r}: num_classes must be >= 1")
        for split in ("train", "test"):
            x = getattr(self, f"{split}_x")
            y = getattr(self, f"{split}_y")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3:
                raise ValueError(
                    f"dataset {self.name!r}: {split}_x must be a uint8 array (N, H, W), got "
                    f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(
                    f"dataset {self.name!r}: {split}_y must be an int64 array (N,), got "
                    f"{getattr(y, 'dtype', type(y))} {getattr(y, 'shape', '')}"
                )
            if len(x) != len(y):
                raise ValueError(
                    f"dataset {self.name!r}: {len(x)} {split} images but {len(y)} labels"
                )
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"dataset {self.name!r}: {split} labels span [{y.min()}, {y.max()}], "
                    f"outside [0, {self.num_classes})"
                )
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"dataset {self.name!r}: train images {self.train_x.shape[1:]} and test images "
                f"{self.test_x.shape[1:]} differ in size"
            )


def dataset_path(name: str, root: str | os.PathLike[str] = DATASET_ROOT) -> Path:
    """Return ``<root>/<name>/data.npz`` for a known dataset name."""
    _check_name(name)
    return Path(root) / name / DATASET_FILE


def save_dataset(
    ds: ImageDataset, path: str | os.PathLike[str], *, seed: int | None = None
) -> None:
    """Write ``ds`` to a compressed ``.npz`` atomically (temporary file, then ``os.replace``).

    Parameters
    ----------
    ds : ImageDataset
    path : path-like
        Destination; parent directories are created.
    seed : int, optional
        Stored alongside for derived datasets, so that :func:`prepare_dataset` can notice a
        file made with another seed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": ds.train_x,
        "train_y": ds.train_y,
        "test_x": ds.test_x,
        "test_y": ds.test_y,
        "num_classes": np.int64(ds.num_classes),
        "name": np.str_(ds.name),
    }
    if seed is not None:
        arrays["seed"] = np.int64(seed)
    # A unique name in the same directory (so os.replace is atomic); os.open rather than
    # mkstemp so that the file gets the umask's permissions, not 0600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_dataset(path: str | os.PathLike[str]) -> ImageDataset:
    """Load a dataset written by :func:`save_dataset`.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is corrupted or does not hold a valid dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist; {_how_to_create(path)}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _NPZ_KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"arrays {missing} missing")
            fields = {k: npz[k] for k in _NPZ_KEYS}
        return ImageDataset(
            train_x=fields["train_x"],
            train_y=fields["train_y"],
            test_x=fields["test_x"],
            test_y=fields["test_y"],
            num_classes=int(fields["num_classes"]),
            name=str(fields["name"]),
        )
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(
            f"dataset file {path} is corrupted or not a dataset ({type(exc).__name__}: {exc}); "
            f"delete it and {_how_to_create(path)}"
        ) from exc


def _stored_seed(path: Path) -> int | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return int(npz["seed"]) if "seed" in npz.files else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None


def make_derived(name: str, mnist: ImageDataset, seed: int) -> ImageDataset:
    """Build a derived dataset from MNIST.

    ``mnist_split1``: digits 0-4, labels unchanged, 5 classes. ``mnist_split2``: digits 5-9
    relabelled 0-4, 5 classes. ``mnist_noise``: MNIST's labels, images i.i.d. uniform 0..255.
    ``mnist_noise_struct``: as ``mnist_noise``, but for each label a fixed random 10 % of pixel
    positions (``int(H*W*0.1)``, 78 for 28x28, without replacement) carry fixed label-specific
    values (uniform 0..255), identical in train and test (thesis listing A.1).

    Random draws use ``np.random.default_rng(seed)`` in this order: for the structured set the
    (positions, values) of label 0, 1, ...; then the train images, then the test images.
    The splits do not use the seed.
    """
    _check_name(name, DERIVED_DATASETS)
    if mnist.num_classes != 10:
        raise ValueError(f"{name} needs MNIST (10 classes), got {mnist.num_classes} classes")
    if name in ("mnist_split1", "mnist_split2"):
        low = 0 if name == "mnist_split1" else 5
        keep_train = (mnist.train_y >= low) & (mnist.train_y < low + 5)
        keep_test = (mnist.test_y >= low) & (mnist.test_y < low + 5)
        return ImageDataset(
            train_x=mnist.train_x[keep_train],
            train_y=mnist.train_y[keep_train] - low,
            test_x=mnist.test_x[keep_test],
            test_y=mnist.test_y[keep_test] - low,
            num_classes=5,
            name=name,
        )
    rng = np.random.default_rng(seed)
    shape = mnist.train_x.shape[1:]
    n_pixels = math.prod(shape)
    patterns = []
    if name == "mnist_noise_struct":
        n_fixed = int(n_pixels * STRUCT_NOISE_RATIO)
        for _ in range(mnist.num_classes):
            positions = rng.choice(n_pixels, n_fixed, replace=False)
            values = rng.integers(0, 256, n_fixed, dtype=np.uint8)
            patterns.append((positions, values))
    splits = []
    for y in (mnist.train_y, mnist.test_y):
        x = rng.integers(0, 256, (len(y), *shape), dtype=np.uint8)
        flat = x.reshape(len(y), n_pixels)
        for label, (positions, values) in enumerate(patterns):
            flat[np.flatnonzero(y == label)[:, None], positions[None, :]] = values
        splits.append((x, y.copy()))
    return ImageDataset(
        train_x=splits[0][0],
        train_y=splits[0][1],
        test_x=splits[1][0],
        test_y=splits[1][1],
        num_classes=mnist.num_classes,
        name=name,
    )


def balanced_subset(
    labels: np.ndarray, per_class: int, seed: int, *, num_classes: int | None = None
) -> np.ndarray:
    """Indices of a class-balanced subset, ``per_class`` samples of every class.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels, shape (N,).
    per_class : int
        Samples per class, >= 1; drawn without replacement with ``np.random.default_rng(seed)``,
        classes in increasing order.
    seed : int
    num_classes : int, optional
        If given (>= 1), classes ``0 .. num_classes-1`` are required, including absent ones;
        otherwise the classes present in ``labels``.

    Returns
    -------
    np.ndarray
        int64 indices sorted by (label, index).

    Raises
    ------
    ValueError
        A class has fewer than ``per_class`` samples (classes and counts named), or bad arguments.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels outside [0, {num_classes})")
        classes = np.arange(num_classes)
    else:
        classes = np.unique(labels)
        if len(classes) == 0:
            raise ValueError("labels is empty: need at least one class")
    members = [np.flatnonzero(labels == c) for c in classes]
    short = [f"class {c}: {len(m)}" for c, m in zip(classes, members, strict=True)]
    short = [s for s, m in zip(short, members, strict=True) if len(m) < per_class]
    if short:
        raise ValueError(f"need {per_class} samples per class, but only have {'; '.join(short)}")
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(m, per_class, replace=False)) for m in members]
    return np.concatenate(chosen).astype(np.int64)
