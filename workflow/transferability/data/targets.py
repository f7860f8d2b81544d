"""The one way a job reads a target: its samples and labels per split, fixed subsets, and
batches as tensors — whatever the target's origin.

Two readers implement :class:`Target`:

:class:`ArrayTarget`
    MNIST-like arrays held in memory (``data.npz``, :mod:`transferability.data.arrays`): the
    thesis CNN's targets. Besides PIL images through a transform, it hands out its uint8
    images as tensors directly (:meth:`ArrayTarget.tensors`), the CNN track's fast path.
:class:`IndexedTarget`
    Files named by a split index (:mod:`transferability.data.folders`): an image folder
    (``format="imagefolder"``) or a torchvision dataset's own layout (CIFAR-10/100 batches,
    Oxford-IIIT Pet, Flowers-102, DTD, Caltech-101; :mod:`transferability.data.layouts`).

:func:`open_target` picks the reader from what it is given. Every reader refuses bad input
with the errors of the module that reads the files (a missing or corrupt ``data.npz``, a split
index that does not match its folder, an unknown format), naming the file.

Fixed subsets keep each reader's established rule, so results do not change: arrays take a
class-balanced subset (:func:`~transferability.data.arrays.balanced_subset`, seed
:data:`SUBSET_SEED`), indexed targets a uniform sample of rows (``random_state=0``, the VGG
track's evaluation subset).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from transferability.data.arrays import ImageDataset, balanced_subset, load_dataset

__all__ = [
    "SPLITS", "SUBSET_SEED", "ArrayImages", "ArrayTarget", "IndexedTarget", "Split", "Target",
    "open_target",
]  # fmt: skip

SPLITS = ("train", "test")
#: Seed of the fixed (run-independent) class-balanced subsets of array targets.
SUBSET_SEED = 0


@dataclass
class Split:
    """Images (uint8, n×h×w) and int64 labels of one split, as tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray, index=None) -> Split:
        if index is not None:
            images, labels = images[index], labels[index]
        return cls(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        )

    def __len__(self) -> int:
        return len(self.labels)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; a target has the splits {', '.join(SPLITS)}")


class Target(ABC):
    """A labelled image set in a ``train`` and a ``test`` split.

    ``num_classes`` and ``class_names`` describe the labels ``0 … num_classes-1``.
    :meth:`dataset` gives a map-style dataset of ``(transform(PIL image), label)``;
    :meth:`loader` batches it into tensors, in sample order unless ``shuffle``.
    """

    num_classes: int
    class_names: list[str]

    @abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """The int64 labels of ``split``, in sample order."""

    @abstractmethod
    def limit(self, split: str, n: int | None) -> np.ndarray | None:
        """Sample indices of ``split``'s fixed subset of about ``n`` samples (``None``: every
        sample, in order)."""

    @abstractmethod
    def dataset(
        self,
        split: str,
        transform: Callable[[Any], Any] | None = None,
        indices: np.ndarray | None = None,
    ) -> torch.utils.data.Dataset:
        """``split``'s samples (those at ``indices``, in that order, if given) as
        ``(transform(PIL image), label)``."""

    def loader(
        self,
        split: str,
        *,
        batch_size: int,
        transform: Callable[[Any], Any] | None = None,
        indices: np.ndarray | None = None,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.utils.data.DataLoader:
        """Tensor batches ``(images, labels)`` of :meth:`dataset`."""
        return torch.utils.data.DataLoader(
            self.dataset(split, transform, indices),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
        )


class ArrayImages(torch.utils.data.Dataset):
    """uint8 grey images (n, h, w) as a map-style dataset of (transform(PIL image), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        image = Image.fromarray(self.images[i])
        return (image if self.transform is None else self.transform(image)), int(self.labels[i])


class ArrayTarget(Target):
    """An MNIST-like dataset in memory (:class:`~transferability.data.arrays.ImageDataset`, or
    the ``data.npz`` it is read from)."""

    def __init__(self, data: ImageDataset | str | os.PathLike[str]) -> None:
        self.data = data if isinstance(data, ImageDataset) else load_dataset(data)
        self.name = self.data.name
        self.num_classes = int(self.data.num_classes)
        self.class_names = [str(c) for c in range(self.num_classes)]  # the ids are the names

    def images(self, split: str) -> np.ndarray:
        """uint8 images (n, h, w) of ``split``."""
        _check_split(split)
        return self.data.train_x if split == "train" else self.data.test_x

    def labels(self, split: str) -> np.ndarray:
        _check_split(split)
        return self.data.train_y if split == "train" else self.data.test_y

    def limit(self, split: str, n: int | None) -> np.ndarray | None:
        labels = self.labels(split)
        if n is None or n >= len(labels):
            return None
        per_class = max(1, n // self.num_classes)
        return balanced_subset(labels, per_class=per_class, seed=SUBSET_SEED)

    def tensors(self, split: str, n: int | None = None) -> Split:
        """``split`` (its fixed subset of about ``n`` samples) as uint8 tensors in memory."""
        return Split.from_numpy(self.images(split), self.labels(split), self.limit(split, n))

    def training_splits(
        self, train_samples: int | None, eval_samples: int | None
    ) -> tuple[Split, Split, Split]:
        """(train, train_eval, test) of a training job: the training subset, and fixed subsets
        of ``eval_samples`` training and test images to evaluate on (train_eval defaults to
        the test split's size)."""
        train = self.tensors("train", train_samples)
        test = self.tensors("test", eval_samples)
        train_eval = self.tensors("train", eval_samples or len(self.labels("test")))
        return train, train_eval, test

    def dataset(self, split, transform=None, indices=None) -> torch.utils.data.Dataset:
        images, labels = self.images(split), self.labels(split)
        if indices is not None:
            images, labels = images[indices], labels[indices]
        return ArrayImages(images, labels, transform)


class IndexedTarget(Target):
    """Files named by a split index (``path, label, class, split``; written by
    :func:`~transferability.data.folders.write_split_index`) under ``root``, in ``format``
    (``"imagefolder"`` or a torchvision layout of :data:`transferability.data.layouts.FORMATS`).

    The index is checked on reading (:func:`~transferability.data.folders.read_split_index`:
    columns, labels, splits, paths inside the root, files present)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        index_csv: str | os.PathLike[str],
        format: str = "imagefolder",
    ) -> None:
        from transferability.data.folders import read_split_index

        self.root, self.format = Path(root), format
        self.index = read_split_index(index_csv, root, format=format)
        self.name = self.root.name
        self.num_classes = int(self.index["label"].max()) + 1
        # labels absent from the index (a layout's class without images) keep their number
        named = dict(zip(self.index["label"], self.index["class"], strict=True))
        self.class_names = [str(named.get(label, label)) for label in range(self.num_classes)]

    def rows(self, split: str) -> pd.DataFrame:
        """The index rows of ``split``, renumbered from 0 in index order."""
        _check_split(split)
        return self.index[self.index["split"] == split].reset_index(drop=True)

    def labels(self, split: str) -> np.ndarray:
        return self.rows(split)["label"].to_numpy(dtype=np.int64)

    def limit(self, split: str, n: int | None) -> np.ndarray | None:
        # A permutation even when n covers the split: the VGG track has always evaluated in
        # this order, and the order of a loss sum changes its last bits.
        if n is None:
            return None
        rows = self.rows(split)
        return rows.sample(n=min(len(rows), int(n)), random_state=0).index.to_numpy()

    def dataset(self, split, transform=None, indices=None) -> torch.utils.data.Dataset:
        from transferability.data.folders import ImageFolderSplit

        rows = self.rows(split)
        if indices is not None:
            rows = rows.iloc[indices].reset_index(drop=True)
        return ImageFolderSplit(self.root, rows, transform, format=self.format)


def open_target(
    path: str | os.PathLike[str],
    index_csv: str | os.PathLike[str] | None = None,
    format: str = "imagefolder",
) -> Target:
    """The reader for ``path``: a ``.npz`` file is an :class:`ArrayTarget`; a folder (the root
    of an image folder or of a torchvision layout) with its split index an
    :class:`IndexedTarget`.

    Raises ``ValueError`` when a folder comes without its ``index_csv``, or a file is not a
    ``.npz``; the readers' own errors otherwise (missing files are ``FileNotFoundError``)."""
    path = Path(path)
    if path.suffix == ".npz":
        return ArrayTarget(path)
    if path.is_file():
        raise ValueError(f"target {path}: expected a data.npz file or a folder of images")
    if index_csv is None:
        raise ValueError(
            f"target {path}: a folder target is read through its split index (index_csv), "
            "written by transferability.data.folders.write_split_index"
        )
    return IndexedTarget(path, index_csv, format)
