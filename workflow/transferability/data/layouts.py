"""Image targets stored in torchvision's on-disk dataset layouts, read without its classes.

A *format* names how a target's root folder is laid out. ``"imagefolder"`` is the
class-per-folder tree of :mod:`transferability.data.folders`; the others are the layouts that
torchvision 0.29's dataset classes download and extract (``OxfordIIITPet``, ``Flowers102``,
``DTD``, ``Caltech101``, ``CIFAR10``, ``CIFAR100``). Only their index files are re-read here:
the classes themselves check checksums, may download, create folders and (for CIFAR) unpickle
with the unrestricted :mod:`pickle`, none of which a listing job should do.

Every format yields *items*, strings relative to the root that a split index stores in its
``path`` column: POSIX file paths for the file formats, and the virtual ids
``"<batch file>#<row>"`` (e.g. ``data_batch_1#17``) for CIFAR, whose images live inside
pickled batches. :func:`open_image` turns an item back into an RGB PIL image.

Ordering is deterministic and independent of the file system and the locale: file formats are
ordered by (label, item as a plain string), as
:func:`~transferability.data.folders.list_image_folder` does; CIFAR items by batch file (train
batches, then test, torchvision's order) and row.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from transferability.data.obtain import restricted_loads

__all__ = [
    "FILE_FORMATS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "list_image_folder",
    "list_target",
    "missing_sources",
    "open_image",
]

FORMATS: tuple[str, ...] = (
    "imagefolder",
    "oxford_iiit_pet",
    "flowers102",
    "dtd",
    "caltech101",
    "cifar10",
    "cifar100",
)
#: Formats whose items are image files relative to the root (the rest are CIFAR batch rows).
FILE_FORMATS: tuple[str, ...] = FORMATS[:5]

_DOWNLOAD_HINT = "set allow_download: true to let torchvision download it"
# Directory names torchvision's classes use below ``root`` (attribute ``_base_folder`` etc.).
_PET = "oxford-iiit-pet"
_FLOWERS = "flowers-102"
_DTD = "dtd/dtd"
_CALTECH = "caltech101/101_ObjectCategories"
# torchvision drops this folder: it holds clutter images, not a category.
_CALTECH_BACKGROUND = "BACKGROUND_Google"
_CIFAR_SIDE = 32
_CIFAR_PIXELS = 3 * _CIFAR_SIDE * _CIFAR_SIDE
# Entries of a bad file an error message names before it only counts the rest.
_MAX_NAMED = 5

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def _is_image(name: str) -> bool:
    # Case-insensitive like torchvision, so that ``.JPG`` from cameras counts.
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], np.ndarray, list[str]]:
    """List an image folder: one immediate sub-folder per class.

    Files are found recursively inside each class folder (symbolic links followed, as in
    torchvision's ``ImageFolder``); a file counts as an image by its suffix
    (:data:`IMAGE_SUFFIXES`, case-insensitive). Hidden files and folders (name starting with
    ``.``) are ignored, and so are files directly in ``root``. The files are not opened.

    Parameters
    ----------
    root : path-like

    Returns
    -------
    paths : list of str
        POSIX paths relative to ``root`` (``<class>/.../<file>``), sorted by class, then by the
        path as a plain string.
    labels : np.ndarray
        int64, the position of each file's class in ``classes``.
    classes : list of str
        Class folder names, sorted.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``root`` does not exist or is not a directory.
    ValueError
        ``root`` has no class folders, a class folder holds no images, or a class holds a
        single image (it could not be split into train and test).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {root} is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class folders; expected one per class")
    paths: list[str] = []
    labels: list[int] = []
    empty, single = [], []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
            found.extend(str(rel / f) for f in filenames if _is_image(f))
        if len(found) == 0:
            empty.append(name)
        elif len(found) == 1:
            single.append(f"{name} ({found[0]})")
        paths.extend(sorted(found))
        labels.extend([label] * len(found))
    if empty:
        raise ValueError(
            f"image folder {root}: class folder(s) {', '.join(map(repr, empty))} hold no images "
            f"(suffixes {', '.join(IMAGE_SUFFIXES)})"
        )
    if single:
        raise ValueError(
            f"image folder {root}: class(es) {', '.join(single)} hold a single image; every "
            "class needs at least 2 to be split into train and test"
        )
    return paths, np.asarray(labels, dtype=np.int64), classes


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    batches: tuple[str, ...]  # train files, then test, as torchvision concatenates them
    meta: str
    meta_key: str
    label_key: str


_CIFAR: dict[str, _CifarSpec] = {
    "cifar10": _CifarSpec(
        folder="cifar-10-batches-py",
        batches=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
        meta="batches.meta",
        meta_key="label_names",
        label_key="labels",
    ),
    "cifar100": _CifarSpec(
        folder="cifar-100-python",
        batches=("train", "test"),
        meta="meta",
        meta_key="fine_label_names",
        label_key="fine_labels",
    ),
}


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"unknown target format {format!r}; known: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- layouts


def _layout(format: str) -> list[tuple[str, str]]:
    """What must exist below the root for ``format``: (relative path, "file" or "folder")."""
    if format == "oxford_iiit_pet":
        return [
            (f"{_PET}/images", "folder"),
            (f"{_PET}/annotations/trainval.txt", "file"),
            (f"{_PET}/annotations/test.txt", "file"),
        ]
    if format == "flowers102":
        # setid.mat only splits the images; the whole target is listed, so it is not needed.
        return [(f"{_FLOWERS}/jpg", "folder"), (f"{_FLOWERS}/imagelabels.mat", "file")]
    if format == "dtd":
        return [(f"{_DTD}/images", "folder")] + [
            (f"{_DTD}/labels/{split}1.txt", "file") for split in ("train", "val", "test")
        ]
    if format == "caltech101":
        return [(_CALTECH, "folder")]
    spec = _CIFAR[format]
    return [(f"{spec.folder}/{name}", "file") for name in (*spec.batches, spec.meta)]


def _missing_layout(root: Path, format: str) -> tuple[str, str] | None:
    for rel, kind in _layout(format):
        path = root / rel
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            return rel, kind
    return None


def _download(root: Path, format: str) -> None:
    # Imported here: only this opt-in path needs torchvision's dataset classes.
    from torchvision import datasets

    classes = {
        "oxford_iiit_pet": datasets.OxfordIIITPet,
        "flowers102": datasets.Flowers102,
        "dtd": datasets.DTD,
        "caltech101": datasets.Caltech101,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }
    root.mkdir(parents=True, exist_ok=True)
    # Every one of these classes takes the folder *above* its own base folder as root.
    classes[format](os.fspath(root), download=True)


def _ensure_layout(root: Path, format: str, allow_download: bool) -> None:
    missing = _missing_layout(root, format)
    if missing is None:
        return
    if allow_download:
        _download(root, format)
        missing = _missing_layout(root, format)
        if missing is None:
            return
        raise FileNotFoundError(
            f"{format} target {root}: torchvision's download did not produce the expected "
            f"{missing[1]} {root / missing[0]}"
        )
    raise FileNotFoundError(
        f"{format} target {root} lacks the expected {missing[1]} {root / missing[0]} "
        f"(torchvision's {format} layout); {_DOWNLOAD_HINT}"
    )


# --------------------------------------------------------------------------- listing


def list_target(
    root: str | os.PathLike, format: str = "imagefolder", *, allow_download: bool = False
) -> tuple[list[str], np.ndarray, list[str]]:
    """List a target stored in ``format``: its items, their labels and the class names.

    The contract of :func:`transferability.data.folders.list_image_folder`, for every format.
    Index files are read; images are neither opened nor checked for existence (as torchvision
    does; :func:`transferability.data.folders.read_split_index` checks them).

    - ``imagefolder``: :func:`~transferability.data.folders.list_image_folder` (nothing to
      download; ``allow_download`` is ignored).
    - ``oxford_iiit_pet``: ``oxford-iiit-pet/annotations/{trainval,test}.txt`` (lines
      ``<image id> <class id> <species> <breed id>``), items
      ``oxford-iiit-pet/images/<image id>.jpg``, label ``class id - 1``; class names derived
      from the image ids as torchvision does (``american_pit_bull_terrier_12`` ->
      ``American Pit Bull Terrier``).
    - ``flowers102``: ``flowers-102/imagelabels.mat`` (``labels``, 1..102 for image 1..N),
      items ``flowers-102/jpg/image_<00001>.jpg``, label ``labels - 1``; classes
      ``torchvision.datasets.Flowers102.classes``.
    - ``dtd``: ``dtd/dtd/labels/{train,val,test}1.txt`` (lines ``<class>/<file>``; the three
      splits of a partition hold every image once), items ``dtd/dtd/images/<class>/<file>``;
      classes sorted.
    - ``caltech101``: the class folders of ``caltech101/101_ObjectCategories`` except
      ``BACKGROUND_Google``, sorted; items their image files.
    - ``cifar10`` / ``cifar100``: the pickled batches of ``cifar-10-batches-py`` /
      ``cifar-100-python`` (``labels`` / ``fine_labels``), class names from ``batches.meta``
      (``label_names``) / ``meta`` (``fine_label_names``); items ``"<batch file>#<row>"``.

    Parameters
    ----------
    root : path-like
        The folder torchvision's class would be given as ``root`` (for ``imagefolder`` the
        class folders' parent).
    format : str
        One of :data:`FORMATS`.
    allow_download : bool
        When the layout is missing, let torchvision's dataset class download it into ``root``
        (``download=True``) before listing. Off by default: jobs should not reach the network
        unasked.

    Returns
    -------
    items : list of str
        Relative POSIX paths, or CIFAR ids; file formats sorted by (label, item), CIFAR by
        batch file and row.
    labels : np.ndarray
        int64 in ``[0, len(classes))``.
    classes : list of str
        Class names, position = label: sorted names, or the dataset's official list (Oxford
        Pet by class id, Flowers102, CIFAR), which may include classes without items.

    Raises
    ------
    ValueError
        Unknown format; an index file that cannot be read or parsed, or a refused pickle (the
        file is named).
    FileNotFoundError
        The layout is missing (the expected file or folder is named).
    """
    _check_format(format)
    root = Path(root)
    if format == "imagefolder":
        return list_image_folder(root)
    _ensure_layout(root, format, allow_download)
    if format in _CIFAR:
        return _list_cifar(root, _CIFAR[format])
    lister = {
        "oxford_iiit_pet": _list_oxford_pet,
        "flowers102": _list_flowers102,
        "dtd": _list_dtd,
        "caltech101": _list_caltech101,
    }[format]
    items, labels, classes = lister(root)
    order = sorted(range(len(items)), key=lambda i: (labels[i], items[i]))
    return (
        [items[i] for i in order],
        np.asarray([labels[i] for i in order], dtype=np.int64),
        classes,
    )


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of ``path`` with their 1-based numbers, stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _pet_class_name(image_id: str) -> str:
    # torchvision: the id without its trailing number, each "_"-part title-cased.
    return " ".join(part.title() for part in image_id.rsplit("_", 1)[0].split("_"))


def _list_oxford_pet(root: Path) -> tuple[list[str], list[int], list[str]]:
    items: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    names: dict[int, set[str]] = {}
    for split in ("trainval", "test"):
        path = root / _PET / "annotations" / f"{split}.txt"
        for n, line in _text_lines(path):
            if line.startswith("#"):  # list.txt has such headers; be lenient here too
                continue
            fields = line.split()
            try:
                if len(fields) != 4:
                    raise ValueError("expected 4 fields")
                image_id, label = fields[0], int(fields[1]) - 1
            except ValueError:
                raise ValueError(
                    f"{path}, line {n}: expected '<image id> <class id> <species> <breed id>', "
                    f"got {line!r}"
                ) from None
            if label < 0 or "/" in image_id or image_id.startswith("."):
                raise ValueError(f"{path}, line {n}: bad image id or class id in {line!r}")
            if image_id in seen:
                raise ValueError(f"{path}, line {n}: image {image_id!r} is listed twice")
            seen.add(image_id)
            items.append(f"{_PET}/images/{image_id}.jpg")
            labels.append(label)
            names.setdefault(label, set()).add(_pet_class_name(image_id))
    anns = root / _PET / "annotations"
    if not items:
        raise ValueError(f"{anns}: trainval.txt and test.txt list no images")
    # torchvision derives the names from the ids, which only works if the class ids are
    # 1..K without gaps and every id maps to one breed; check instead of misnaming silently.
    if sorted(names) != list(range(len(names))):
        raise ValueError(
            f"{anns}: class ids are not 1..{len(names)} without gaps: {sorted(names)[:10]}"
        )
    ambiguous = {label + 1: sorted(s) for label, s in names.items() if len(s) > 1}
    if ambiguous:
        raise ValueError(f"{anns}: class ids name several breeds: {ambiguous}")
    return items, labels, [names[label].pop() for label in range(len(names))]


def _list_flowers102(root: Path) -> tuple[list[str], list[int], list[str]]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    from torchvision.datasets import Flowers102  # for its class names only; not instantiated

    path = root / _FLOWERS / "imagelabels.mat"
    try:
        mat = loadmat(path, squeeze_me=True)
    except (MatReadError, ValueError, TypeError, IndexError, OSError, EOFError) as err:
        # scipy reports a garbled file with any of these (e.g. IndexError on random bytes).
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if "labels" not in mat:
        raise ValueError(f"{path} has no variable 'labels'")
    raw = np.atleast_1d(np.asarray(mat["labels"]))
    classes = list(Flowers102.classes)
    # The file stores doubles; anything but integers 1..102 means a different file.
    if (
        raw.ndim != 1
        or raw.size == 0
        or not np.issubdtype(raw.dtype, np.number)
        or not np.all(np.isfinite(raw))
        or not np.all(raw == np.round(raw))
        or raw.min() < 1
        or raw.max() > len(classes)
    ):
        raise ValueError(
            f"{path}: 'labels' must be integers 1..{len(classes)}, one per image, got "
            f"{raw.dtype} {raw.shape}"
        )
    labels = (raw.astype(np.int64) - 1).tolist()
    items = [f"{_FLOWERS}/jpg/image_{i:05d}.jpg" for i in range(1, len(labels) + 1)]
    return items, labels, classes


def _list_dtd(root: Path) -> tuple[list[str], list[int], list[str]]:
    pairs: set[tuple[str, str]] = set()
    for split in ("train", "val", "test"):
        path = root / _DTD / "labels" / f"{split}1.txt"
        for n, line in _text_lines(path):
            parts = line.split("/")
            if len(parts) != 2 or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"{path}, line {n}: expected '<class>/<file>', got {line!r}")
            pairs.add((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"{root / _DTD / 'labels'}: train1/val1/test1.txt list no images")
    classes = sorted({cls for cls, _ in pairs})
    index = {cls: i for i, cls in enumerate(classes)}
    items = [f"{_DTD}/images/{cls}/{name}" for cls, name in pairs]
    return items, [index[cls] for cls, _ in pairs], classes


def _list_caltech101(root: Path) -> tuple[list[str], list[int], list[str]]:
    top = root / _CALTECH
    # torchvision sorts os.listdir() and removes BACKGROUND_Google; hidden entries and stray
    # files are skipped here as well (torchvision would take them for classes).
    classes = sorted(
        e.name
        for e in os.scandir(top)
        if e.is_dir() and not e.name.startswith(".") and e.name != _CALTECH_BACKGROUND
    )
    if not classes:
        raise ValueError(f"{top} has no category folders")
    items: list[str] = []
    labels: list[int] = []
    empty = []
    for label, cls in enumerate(classes):
        # torchvision assumes image_0001.jpg .. image_<n>.jpg with n the folder's entry count;
        # listing the image files gives the same on the real data and never invents a name.
        files = [
            e.name
            for e in os.scandir(top / cls)
            if e.is_file()
            and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_SUFFIXES)
        ]
        if not files:
            empty.append(cls)
        items.extend(f"{_CALTECH}/{cls}/{name}" for name in files)
        labels.extend([label] * len(files))
    if empty:
        raise ValueError(f"{top}: category folder(s) {', '.join(map(repr, empty))} hold no images")
    return items, labels, classes


# --------------------------------------------------------------------------- CIFAR pickles


def _text(value: Any) -> Any:
    # Python-2 str loads as str under latin1; files re-pickled by Python 3 may hold bytes.
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_pickle(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = restricted_loads(data)
    except pickle.UnpicklingError as err:
        if str(err).startswith("refused global"):
            raise ValueError(
                f"CIFAR file {path} was refused ({err}); CIFAR files hold only dicts, lists, "
                "strings, numbers and numpy arrays"
            ) from None
        raise ValueError(f"cannot read CIFAR file {path}: UnpicklingError: {err}") from err
    except (EOFError, ValueError, TypeError, AttributeError, LookupError, OverflowError) as err:
        raise ValueError(f"cannot read CIFAR file {path}: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR file {path} holds a {type(obj).__name__}, not a dict")
    return {_text(k): v for k, v in obj.items()}


def _cache_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR file {path} does not exist") from None
    return os.path.abspath(path), st.st_mtime_ns, st.st_size


def _load_pickle(path: Path) -> dict[str, Any]:
    return _read_pickle(_cache_key(path)[0])


# Room for all six CIFAR-10 batches (about 180 MB) or both CIFAR-100 files: a shuffled data
# loader visits the batches at random, and a smaller cache would unpickle one per image.
@functools.lru_cache(maxsize=8)
def _cached_batch(path: str, mtime_ns: int, size: int, label_key: str) -> tuple[np.ndarray, ...]:
    # Keyed by mtime and size as well, so a rewritten file is never served from the cache.
    del mtime_ns, size
    entry = _read_pickle(path)
    data = entry.get("data")
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_PIXELS
    ):
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise ValueError(
            f"CIFAR file {path}: 'data' must be a uint8 array (n, {_CIFAR_PIXELS}), got {described}"
        )
    labels = np.asarray(entry.get(label_key, []))
    if labels.shape != (len(data),) or (
        labels.size and not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(f"CIFAR file {path}: '{label_key}' must list {len(data)} integer labels")
    labels = labels.astype(np.int64)
    data.setflags(write=False)  # shared through the cache
    labels.setflags(write=False)
    return data, labels


def _load_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = _cached_batch(*_cache_key(path), label_key)
    return data, labels


def _list_cifar(root: Path, spec: _CifarSpec) -> tuple[list[str], np.ndarray, list[str]]:
    meta_path = root / spec.folder / spec.meta
    names = _load_pickle(meta_path).get(spec.meta_key)
    if not isinstance(names, list) or not all(isinstance(_text(n), str) for n in names):
        raise ValueError(f"CIFAR file {meta_path}: '{spec.meta_key}' must be a list of names")
    classes = [_text(n) for n in names]
    items: list[str] = []
    all_labels = []
    for name in spec.batches:
        path = root / spec.folder / name
        _, labels = _load_batch(path, spec.label_key)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(
                f"CIFAR file {path}: labels span [{labels.min()}, {labels.max()}], outside "
                f"[0, {len(classes)}) of {meta_path}"
            )
        items.extend(f"{name}#{row}" for row in range(len(labels)))
        all_labels.append(labels)
    return items, np.concatenate(all_labels).astype(np.int64), classes


def _parse_cifar_item(item: str, spec: _CifarSpec) -> tuple[str, int]:
    name, sep, row = item.rpartition("#")
    if not sep or name not in spec.batches or not (row.isascii() and row.isdigit()):
        raise ValueError(
            f"bad CIFAR item {item!r}: expected '<batch file>#<row>' with the file one of "
            f"{', '.join(spec.batches)}"
        )
    return name, int(row)


# --------------------------------------------------------------------------- images


def open_image(root: str | os.PathLike, item: str, format: str = "imagefolder") -> Image.Image:
    """Load one item of a target as an RGB PIL image.

    File formats open ``root / item`` with PIL (decoded at once, file closed). CIFAR decodes
    row ``row`` of the batch (3072 bytes: the red, green and blue 32x32 planes) to 32x32 RGB;
    decoded batches are cached per file (a few at a time), so a data loader does not unpickle
    a batch per image.

    Parameters
    ----------
    root : path-like
        As given to :func:`list_target`.
    item : str
        One of the items :func:`list_target` returned.
    format : str
        One of :data:`FORMATS`.

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``.

    Raises
    ------
    FileNotFoundError
        The image or batch file is missing (named).
    ValueError
        Unknown format; the file cannot be decoded, a CIFAR pickle is refused, or a CIFAR id
        is malformed or out of range (all named).
    """
    _check_format(format)
    root = Path(root)
    if format in _CIFAR:
        spec = _CIFAR[format]
        name, row = _parse_cifar_item(item, spec)
        path = root / spec.folder / name
        data, _ = _load_batch(path, spec.label_key)
        if row >= len(data):
            raise ValueError(f"CIFAR item {item!r}: row {row} out of range, {path} has {len(data)}")
        # Channel planes -> height x width x channel, as torchvision does.
        pixels = data[row].reshape(3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(1, 2, 0)
        return Image.fromarray(np.ascontiguousarray(pixels))  # uint8 (32, 32, 3): RGB
    path = root / item
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # also forces the lazy decoding
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return image


def missing_sources(
    root: str | os.PathLike, items: Iterable[str], format: str = "imagefolder"
) -> list[str]:
    """The files behind ``items`` that do not exist below ``root`` (none are opened).

    For file formats the items themselves, in the given order; for CIFAR the batch files the
    ids refer to (``<folder>/<batch file>``, once each).

    Raises
    ------
    ValueError
        Unknown format, or a malformed CIFAR id (the first ones are named).
    """
    _check_format(format)
    root = Path(root)
    if format not in _CIFAR:
        return [p for p in items if not (root / p).is_file()]
    spec = _CIFAR[format]
    files: set[str] = set()
    bad = []
    for item in items:
        try:
            files.add(_parse_cifar_item(item, spec)[0])
        except ValueError:
            bad.append(item)
    if bad:
        raise ValueError(
            f"{len(bad)} malformed {format} id(s), e.g. {bad[:_MAX_NAMED]}; expected "
            f"'<batch file>#<row>' with the file one of {', '.join(spec.batches)}"
        )
    return [
        f"{spec.folder}/{name}"
        for name in spec.batches
        if name in files and not (root / spec.folder / name).is_file()
    ]
