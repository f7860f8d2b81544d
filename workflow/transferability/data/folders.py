"""Image-folder targets of the VGG track (custom3D, Malaria, Oxford Pet): listing, splitting,
transforms and a PyTorch dataset.

A target is a folder with one sub-folder per class; the images of a class may lie anywhere
below its folder. The thesis splits each target once, 80/20 per class, and uses the test split
for evaluation and for the fixed samples whose activations are extracted (§2.1.3), so the split
is written to a CSV index (``path, label, class, split``) that every later job reads.

Ordering: class names are sorted as Python strings (code points, as torchvision's
``ImageFolder``) and their position is the label; within a class the files are sorted by their
POSIX path relative to the root, also as plain strings (so ``img10.png`` precedes
``img2.png``). The order therefore depends neither on the file system nor on the locale.

Corrupt images are not looked for up-front (that would read every file of a large target);
:class:`ImageFolderSplit` raises an error naming the file when it loads one.

Randomness: the splits and subsets use ``np.random.default_rng(seed)``; the random training
transforms draw from torch's global generator (through torchvision), which the pipeline seeds
per run (and DataLoader workers derive their seeds from it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from transferability.artifacts import write_csv
from transferability.data.arrays import balanced_subset, load_dataset
from transferability.data.layouts import (
    FILE_FORMATS,
    FORMATS,
    IMAGE_SUFFIXES,
    list_image_folder,
    list_target,
    missing_sources,
    open_image,
)
from transferability.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRANSFORM_EXTRAS,
    build_transform,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "INDEX_COLUMNS",
    "TRANSFORM_EXTRAS",
    "ImageFolderSplit",
    "build_transform",
    "extraction_subset",
    "dataset_folder",
    "list_image_folder",
    "read_split_index",
    "split_index",
    "stratified_split",
    "write_png_folder",
    "write_split_index",
]

INDEX_COLUMNS = ("path", "label", "class", "split")
SPLITS = ("train", "test")
FASHION_MNIST_CLASSES = (
    "t_shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
# How many missing files an error message names before it only counts the rest.
_MAX_NAMED = 5


# --------------------------------------------------------------------------- listing and splits


def stratified_split(
    labels: np.ndarray, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and test, class by class.

    One ``np.random.default_rng(seed)`` permutes the members of each class, classes in
    increasing label order; the first ``round(test_fraction * n_c)`` (Python's ``round``, at
    least 1 and at most ``n_c - 1``) go to test. With 0.2 this reproduces the thesis's Malaria
    split (2 x 13,779 images -> 22,046 train, 5,512 test).

    Parameters
    ----------
    labels : np.ndarray
        Integer labels, shape (N,).
    test_fraction : float
        In (0, 1).
    seed : int

    Returns
    -------
    train, test : np.ndarray
        Sorted int64 indices into ``labels``; disjoint, together all of them.

    Raises
    ------
    ValueError
        Bad arguments, or a class with fewer than 2 samples (named).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) == 0:
        raise ValueError(
            f"labels must be a non-empty 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    small = [f"class {c}: {n}" for c, n in zip(classes, counts, strict=True) if n < 2]
    if small:
        raise ValueError(
            f"every class needs at least 2 samples to be split, but {'; '.join(small)}"
        )
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(max(round(test_fraction * len(members)), 1), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return (
        np.sort(np.concatenate(train)).astype(np.int64),
        np.sort(np.concatenate(test)).astype(np.int64),
    )


def split_index(
    root: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    format: str = "imagefolder",
    allow_download: bool = False,
) -> pd.DataFrame:
    """The split index of a target: its listing + :func:`stratified_split`.

    The listing is :func:`transferability.data.layouts.list_target` (for the default
    ``format="imagefolder"``, :func:`list_image_folder`); ``allow_download`` is passed on.

    Returns
    -------
    pd.DataFrame
        Columns ``path`` (POSIX, relative to ``root``, or a CIFAR id ``<batch file>#<row>``),
        ``label`` (int64), ``class``, ``split`` (``"train"``/``"test"``); rows in listing order.
        Deterministic for a target and seed.
    """

    paths, labels, classes = list_target(root, format, allow_download=allow_download)
    _, test = stratified_split(labels, test_fraction=test_fraction, seed=seed)
    split = np.full(len(paths), "train", dtype=object)
    split[test] = "test"
    return pd.DataFrame(
        {
            "path": paths,
            "label": labels,
            "class": [classes[i] for i in labels],
            "split": split,
        }
    )


def write_split_index(
    root: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    format: str = "imagefolder",
    allow_download: bool = False,
) -> pd.DataFrame:
    """Write :func:`split_index` to ``out_csv`` atomically and return it."""
    frame = split_index(
        root,
        test_fraction=test_fraction,
        seed=seed,
        format=format,
        allow_download=allow_download,
    )
    write_csv(frame, out_csv)
    return frame


def read_split_index(
    csv_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    format: str = "imagefolder",
) -> pd.DataFrame:
    """Read and check a split index written by :func:`write_split_index`.

    Every column is read as text (a class called ``NA`` stays a name); ``label`` becomes
    int64. Checked: the columns :data:`INDEX_COLUMNS`, integer labels, one label per class
    and vice versa, splits ``train``/``test``, unique relative paths that stay inside the root
    and, if ``root`` is given, that every file exists (the files are not opened): for the
    CIFAR formats (see :mod:`transferability.data.layouts`) the batch files the ids name.

    Raises
    ------
    FileNotFoundError
        ``csv_path`` is missing, or (with ``root``) files are; the first ones are named.
    ValueError
        The file is not a valid split index, or ``format`` is unknown; the message names the
        problem.
    """

    if format not in FORMATS:
        raise ValueError(f"unknown target format {format!r}; known: {', '.join(FORMATS)}")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"split index {csv_path} does not exist")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read split index {csv_path}: {err}") from err
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"split index {csv_path} lacks column(s) {', '.join(missing)}; expected "
            f"{', '.join(INDEX_COLUMNS)}"
        )
    if frame.empty:
        raise ValueError(f"split index {csv_path} has no rows")
    try:
        frame["label"] = frame["label"].astype(np.int64)
    except ValueError as err:
        raise ValueError(f"split index {csv_path}: non-integer label ({err})") from err
    bad_split = sorted(set(frame["split"]) - set(SPLITS))
    if bad_split:
        raise ValueError(
            f"split index {csv_path}: split values {bad_split}; expected {' or '.join(SPLITS)}"
        )
    bad_paths = [p for p in frame["path"] if not _is_safe_relative(p)]
    if bad_paths:
        raise ValueError(
            f"split index {csv_path}: paths must be non-empty, relative and inside the root, "
            f"got {bad_paths[:_MAX_NAMED]}"
        )
    duplicated = frame["path"][frame["path"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"split index {csv_path}: duplicate paths {duplicated[:_MAX_NAMED]}")
    pairs = frame[["label", "class"]].drop_duplicates()
    if pairs["label"].duplicated().any() or pairs["class"].duplicated().any():
        raise ValueError(
            f"split index {csv_path}: labels and classes do not correspond one to one: "
            f"{sorted(map(tuple, pairs.to_numpy().tolist()))}"
        )
    if root is not None:
        root = Path(root)
        try:
            absent = missing_sources(root, frame["path"], format)
        except ValueError as err:  # a malformed CIFAR id
            raise ValueError(f"split index {csv_path}: {err}") from None
        if absent and format not in FILE_FORMATS:
            raise FileNotFoundError(
                f"split index {csv_path}: {format} batch file(s) missing under {root}: "
                f"{', '.join(absent)}"
            )
        if absent:
            raise FileNotFoundError(
                f"split index {csv_path}: {len(absent)} of {len(frame)} files missing under "
                f"{root}, e.g. {', '.join(absent[:_MAX_NAMED])}"
            )
    return frame


def _is_safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts


def extraction_subset(
    index: pd.DataFrame, *, per_class: int, seed: int = 0, split: str = "test"
) -> pd.DataFrame:
    """The fixed samples whose activations are extracted: ``per_class`` rows of every class.

    The rows of ``split`` are ordered by (label, path) first, so the choice does not depend on
    the row order of ``index``; then one ``np.random.default_rng(seed)`` picks ``per_class``
    of each class without replacement, classes in increasing label order.

    Parameters
    ----------
    index : pd.DataFrame
        A split index (:func:`split_index`, :func:`read_split_index`).
    per_class : int
        >= 1.
    seed : int
    split : str
        ``"test"`` (the thesis's choice for Malaria and Oxford Pet). The thesis's custom3D
        extraction (30 per class, 1,200 in all) equals its whole training split, hence the
        option of ``"train"``.

    Returns
    -------
    pd.DataFrame
        The chosen rows of ``index`` (its index labels kept, to trace them back), ordered by
        (label, path).

    Raises
    ------
    ValueError
        A class (named, with its count) has fewer than ``per_class`` rows in ``split``; or bad
        arguments.
    """
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks column(s) {', '.join(missing)}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if index.empty:
        raise ValueError("index has no rows")
    labels = index["label"].to_numpy()
    paths = index["path"].to_numpy().astype(str)
    in_split = (index["split"] == split).to_numpy()
    classes = index[["label", "class"]].drop_duplicates().sort_values("label")
    rng = np.random.default_rng(seed)
    chosen, short = [], []
    for label, name in classes.itertuples(index=False):
        rows = np.flatnonzero(in_split & (labels == label))
        rows = rows[np.argsort(paths[rows], kind="stable")]
        if len(rows) < per_class:
            short.append(f"{name!r} (label {label}): {len(rows)}")
            continue
        chosen.append(rows[np.sort(rng.choice(len(rows), per_class, replace=False))])
    if short:
        raise ValueError(
            f"need {per_class} {split} images per class, but only have {'; '.join(short)}"
        )
    return index.iloc[np.concatenate(chosen)]


# --------------------------------------------------------------------------- dataset


class ImageFolderSplit(torch.utils.data.Dataset):
    """The samples of a split index (rows already filtered) as ``(transform(image), label)``.

    Images are loaded with :func:`transferability.data.layouts.open_image` (for the default
    format: opened with PIL) and converted to RGB when a sample is loaded; a missing file
    raises ``FileNotFoundError``, an unreadable or corrupt one ``ValueError``, both naming it.

    Parameters
    ----------
    root : path-like
        The folder the index's paths are relative to.
    index : pd.DataFrame
        With columns ``path`` and ``label``; its rows are the samples, in order.
    transform : callable, optional
        Applied to the PIL image (e.g. :func:`build_transform`); ``None`` returns the image.
    format : str
        The target's layout, one of :data:`transferability.data.layouts.FORMATS`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        index: pd.DataFrame,
        transform: Callable[[Image.Image], Any] | None,
        format: str = "imagefolder",
    ) -> None:

        if format not in FORMATS:
            raise ValueError(f"unknown target format {format!r}; known: {', '.join(FORMATS)}")
        missing = [c for c in ("path", "label") if c not in index.columns]
        if missing:
            raise ValueError(f"index lacks column(s) {', '.join(missing)}")
        self.root = Path(root)
        self.format = format
        self.paths: list[str] = [str(p) for p in index["path"]]
        self.labels: np.ndarray = index["label"].to_numpy(dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        # Imported per call (a dict look-up) rather than kept on self: modules do not pickle,
        # and DataLoader workers receive the dataset pickled.

        image = open_image(self.root, self.paths[i], self.format)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


# --------------------------------------------------------------------------- writing folders


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(n) for n in class_names]
    bad = [n for n in names if not n or n.startswith(".") or "/" in n or "\\" in n or os.sep in n]
    if bad:
        raise ValueError(f"class names must be non-empty, not hidden, without slashes: {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names are not unique: {names}")
    return names


def write_png_folder(
    out_root: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    size: int | None = None,
) -> pd.DataFrame:
    """Write images as an image folder ``out_root/<class>/<i:05d>.png``.

    The folder is built in a temporary sibling directory (``.<name>.<pid>.<random>.tmp``) and
    renamed into place at the end, so an interrupted call never leaves a half-written dataset.

    Parameters
    ----------
    out_root : path-like
        Must not exist, or be an empty directory.
    images : np.ndarray
        uint8, (n, h, w) grey or (n, h, w, 3) RGB.
    labels : np.ndarray
        Integers in ``[0, len(class_names))``, shape (n,); ``i`` of a file name is the row.
    class_names : sequence of str
        Folder names, unique; every class must have at least one image.
    size : int, optional
        Resize every image to ``size x size`` (bilinear) before writing.

    Returns
    -------
    pd.DataFrame
        The folder's listing as :func:`list_image_folder` sees it: ``path``, ``label`` (position
        of the class among the *sorted* names, which differs from ``labels`` when
        ``class_names`` is not sorted), ``class``, plus ``source_index`` (row in ``images``) and
        ``source_label`` (the given label); ordered by (label, path).

    Raises
    ------
    FileExistsError
        ``out_root`` exists and is not an empty directory.
    ValueError
        Bad images, labels, class names or size.
    """
    out_root = Path(out_root)
    images = np.asarray(images)
    labels = np.asarray(labels)
    names = _check_class_names(class_names)
    if images.dtype != np.uint8 or not (
        images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)
    ):
        raise ValueError(
            f"images must be uint8 (n, h, w) or (n, h, w, 3), got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {len(images)} integers, got {labels.dtype} {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"labels span [{labels.min()}, {labels.max()}], outside [0, {len(names)})")
    absent = [n for c, n in enumerate(names) if not np.any(labels == c)]
    if absent:
        raise ValueError(f"class(es) {absent} have no images; pass only the classes present")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1 or None, got {size}")
    _check_free(out_root)

    out_root.parent.mkdir(parents=True, exist_ok=True)
    # os.mkdir, not tempfile.mkdtemp, so the folder gets the umask's permissions, not 0700.
    tmp = out_root.parent / f".{out_root.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    os.mkdir(tmp)
    try:
        for name in names:
            (tmp / name).mkdir()
        rows = []
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            pil = Image.fromarray(image)
            if size is not None:
                pil = pil.resize((size, size), Image.Resampling.BILINEAR)
            rel = f"{names[label]}/{i:05d}.png"
            pil.save(tmp / rel, format="PNG")
            rows.append((rel, names[label], i, int(label)))
        _check_free(out_root)
        if out_root.is_dir():
            out_root.rmdir()
        os.rename(tmp, out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sorted_names = sorted(names)
    frame = pd.DataFrame(rows, columns=["path", "class", "source_index", "source_label"])
    frame.insert(1, "label", frame["class"].map(sorted_names.index).astype(np.int64))
    frame["source_index"] = frame["source_index"].astype(np.int64)
    frame["source_label"] = frame["source_label"].astype(np.int64)
    return frame.sort_values(["label", "path"], kind="stable", ignore_index=True)


def _check_free(out_root: Path) -> None:
    if out_root.exists() and (not out_root.is_dir() or any(out_root.iterdir())):
        raise FileExistsError(
            f"{out_root} already exists and is not an empty directory; remove it or choose "
            "another folder"
        )


def dataset_folder(
    dataset_npz: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    per_class: int,
    size: int | None = 32,
    seed: int = 0,
    classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A small image-folder target made from a converted dataset (``make data``): FashionMNIST
    (folders named by :data:`FASHION_MNIST_CLASSES`), MNIST or a derived set (folders named by
    the label, e.g. ``3``).

    ``per_class`` images of each class are drawn from the *train* split with
    :func:`transferability.data.arrays.balanced_subset` (``np.random.default_rng(seed)``, classes in
    increasing order) and written with :func:`write_png_folder`.

    Parameters
    ----------
    dataset_npz : path-like
        A dataset as written by ``transferability.data.arrays``.
    out_root : path-like
        See :func:`write_png_folder`.
    per_class : int
    size : int, optional
        Side of the written images (bilinear); ``None`` keeps 28.
    seed : int
    classes : sequence of int, optional
        Class ids to include (order irrelevant); default all.

    Returns
    -------
    pd.DataFrame
        As :func:`write_png_folder`, with ``source_index`` the row in the train split and
        ``source_label`` the dataset's class id.
    """
    ds = load_dataset(dataset_npz)
    names = (
        FASHION_MNIST_CLASSES
        if ds.name == "fashion_mnist"
        else tuple(str(c) for c in range(ds.num_classes))
    )
    ids = np.arange(ds.num_classes) if classes is None else np.asarray(sorted(classes))
    if len(ids) == 0 or len(set(ids.tolist())) != len(ids):
        raise ValueError(f"classes must be non-empty and unique, got {classes}")
    if ids.min() < 0 or ids.max() >= ds.num_classes:
        raise ValueError(f"classes must lie in [0, {ds.num_classes}), got {classes}")
    pool = np.flatnonzero(np.isin(ds.train_y, ids))
    chosen = pool[balanced_subset(ds.train_y[pool], per_class, seed)]
    frame = write_png_folder(
        out_root,
        ds.train_x[chosen],
        np.searchsorted(ids, ds.train_y[chosen]),
        [names[c] for c in ids],
        size=size,
    )
    frame["source_index"] = chosen[frame["source_index"].to_numpy()]
    frame["source_label"] = ids[frame["source_label"].to_numpy()].astype(np.int64)
    return frame
