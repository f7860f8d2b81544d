"""Tests of transferability.data.layouts on tiny fake roots in torchvision's layouts.

Where torchvision's own dataset class can read the fake root (download=False; checksum checks
patched out where it has them), its labels serve as an independent reading of the same files.
CPU only, no network.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision import datasets as tv

from transferability.data import layouts as target_formats
from transferability.data.folders import (
    ImageFolderSplit,
    list_image_folder,
    read_split_index,
    split_index,
    write_png_folder,
    write_split_index,
)
from transferability.data.layouts import FORMATS, list_target, missing_sources, open_image

FILE_FORMATS = ("oxford_iiit_pet", "flowers102", "dtd", "caltech101")
CIFAR_FORMATS = ("cifar10", "cifar100")


def write_jpg(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_images(root: Path, rels: list[str]) -> dict[str, tuple[int, int]]:
    """A small JPEG of a distinct size per path; returns path -> (width, height)."""
    sizes = {}
    for i, rel in enumerate(rels):
        sizes[rel] = (8 + i, 6 + 2 * i)
        write_jpg(root / rel, sizes[rel], seed=i)
    return sizes


# --------------------------------------------------------------------------- fake roots

PET_ROWS = {  # image id -> class id (1-based), species, breed id
    "trainval": [
        ("Abyssinian_1", 1, 1, 1),
        ("Abyssinian_2", 1, 1, 1),
        ("american_pit_bull_terrier_1", 2, 2, 1),
        ("american_pit_bull_terrier_3", 2, 2, 1),
        ("basset_hound_10", 3, 2, 2),
        ("basset_hound_2", 3, 2, 2),
    ],
    "test": [
        ("Abyssinian_10", 1, 1, 1),
        ("american_pit_bull_terrier_2", 2, 2, 1),
        ("basset_hound_1", 3, 2, 2),
    ],
}


def make_pet(root: Path) -> dict[str, tuple[int, int]]:
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    rels = []
    for split, rows in PET_ROWS.items():
        lines = [" ".join(map(str, row)) for row in rows]
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        rels += [f"oxford-iiit-pet/images/{row[0]}.jpg" for row in rows]
    sizes = write_images(root, rels)
    write_jpg(base / "images" / "unlisted_1.jpg", (5, 5), seed=99)  # in no split: not listed
    return sizes


FLOWER_LABELS = [78, 3, 78, 3, 12, 12, 3]  # 1-based, image_00001 .. image_00007


def make_flowers(root: Path) -> dict[str, tuple[int, int]]:
    base = root / "flowers-102"
    base.mkdir(parents=True)
    # The real file stores a 1 x N double array.
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([FLOWER_LABELS], float)})
    scipy.io.savemat(
        base / "setid.mat",
        {"trnid": np.array([[1, 2, 5]]), "valid": np.array([[3, 6]]), "tstid": np.array([[4, 7]])},
    )
    n = len(FLOWER_LABELS)
    return write_images(root, [f"flowers-102/jpg/image_{i:05d}.jpg" for i in range(1, n + 1)])


DTD_SPLITS = {
    "train": ["zigzagged/zigzagged_0001.jpg", "banded/banded_0002.jpg", "Braided/b_0010.jpg"],
    "val": ["banded/banded_0010.jpg", "Braided/b_0005.jpg", "zigzagged/zigzagged_0003.jpg"],
    "test": ["Braided/b_0002.jpg", "banded/banded_0001.jpg", "zigzagged/zigzagged_0002.jpg"],
}


def make_dtd(root: Path) -> dict[str, tuple[int, int]]:
    base = root / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    for split, lines in DTD_SPLITS.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    # Other partitions and files are present in the real archive but not read.
    (base / "labels" / "train2.txt").write_text("banded/banded_0001.jpg\n")
    (base / "labels" / "labels_joint_anno.txt").write_text("banded/banded_0001.jpg banded\n")
    return write_images(root, [f"dtd/dtd/images/{p}" for ps in DTD_SPLITS.values() for p in ps])


CALTECH_COUNTS = {"BACKGROUND_Google": 2, "airplanes": 3, "Faces": 2, "accordion": 2}


def make_caltech(root: Path) -> dict[str, tuple[int, int]]:
    top = "caltech101/101_ObjectCategories"
    rels = [
        f"{top}/{cls}/image_{i:04d}.jpg"
        for cls, n in CALTECH_COUNTS.items()
        for i in range(1, n + 1)
    ]
    return write_images(root, rels)


# CIFAR's files are Python-2 pickles (protocol 2) whose str keys and values load as str under
# encoding="latin1"; Py2Str reproduces that opcode. Files re-pickled by Python 3 hold bytes
# (the "py3" style, b"data" etc.); both are read.


class Py2Str(bytes):
    pass


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj: Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + bytes(obj))
        self.memoize(obj)

    dispatch[Py2Str] = save_py2str

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:  # as numpy under Python 2 wrote it: raw bytes as a str
            reconstruct = np.ndarray.__reduce__(obj)[0]
            state = (1, obj.shape, obj.dtype, False, Py2Str(obj.tobytes()))
            return reconstruct, (np.ndarray, (0,), Py2Str(b"b")), state
        return NotImplemented


def to_py2(obj):
    if isinstance(obj, str):
        return Py2Str(obj.encode("latin1"))
    if isinstance(obj, dict):
        return {to_py2(k): to_py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_py2(v) for v in obj]
    return obj


def to_bytes(obj):
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, dict):
        return {to_bytes(k): to_bytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_bytes(v) for v in obj]
    return obj


def dump_cifar(path: Path, obj: dict, style: str) -> None:
    if style == "py2":
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(to_py2(obj))
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(to_bytes(obj), protocol=2))


CIFAR_SPECS = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
        "batches.meta",
        "label_names",
        "labels",
        10,
    ),
    "cifar100": (
        "cifar-100-python",
        ["train", "test"],
        "meta",
        "fine_label_names",
        "fine_labels",
        100,
    ),
}


def make_cifar(root: Path, fmt: str, style: str = "py2") -> dict[str, tuple[np.ndarray, list]]:
    """Batches of 3-5 random rows; returns batch -> (data, labels)."""
    folder, batches, meta, meta_key, label_key, k = CIFAR_SPECS[fmt]
    (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(len(fmt))
    names = [f"class_{c}" for c in range(k)]
    meta_obj = {meta_key: names, "num_cases_per_batch": 3}
    if fmt == "cifar100":
        meta_obj["coarse_label_names"] = ["superclass"]
    dump_cifar(root / folder / meta, meta_obj, style)
    written = {}
    used = [3, 0, k - 1]  # a few classes, each with >= 2 rows so that the target splits
    count = 0
    for b, name in enumerate(batches):
        n = 3 + b % 3
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [used[(count + r) % len(used)] for r in range(n)]
        count += n
        entry = {"batch_label": f"batch {b}", label_key: labels, "data": data}
        entry["filenames"] = [f"img_{b}_{r}.png" for r in range(n)]
        if fmt == "cifar100":
            entry["coarse_labels"] = [0] * n
        dump_cifar(root / folder / name, entry, style)
        written[name] = (data, labels)
    return written


MAKERS = {
    "oxford_iiit_pet": make_pet,
    "flowers102": make_flowers,
    "dtd": make_dtd,
    "caltech101": make_caltech,
}


# --------------------------------------------------------------------------- listing


def test_config_schema_offers_exactly_these_formats_and_policies():
    """The schema's enums (checked before any job) and the library's names are one list."""
    import yaml

    from transferability.models.layers import POLICIES

    schema = yaml.safe_load(
        (Path(__file__).parents[1] / "schemas" / "config.schema.yaml").read_text()
    )
    target = schema["$defs"]["image_target"]["properties"]
    assert tuple(target["format"]["enum"]) == FORMATS
    assert target["format"]["default"] == "imagefolder"
    assert tuple(target["policy"]["enum"]) == POLICIES
    assert tuple(schema["$defs"]["image_track"]["properties"]["policy"]["enum"]) == POLICIES


def test_oxford_pet_listing_matches_torchvision(tmp_path):
    make_pet(tmp_path)
    items, labels, classes = list_target(tmp_path, "oxford_iiit_pet")
    assert classes == ["Abyssinian", "American Pit Bull Terrier", "Basset Hound"]
    assert labels.dtype == np.int64
    assert items == [
        "oxford-iiit-pet/images/Abyssinian_1.jpg",
        "oxford-iiit-pet/images/Abyssinian_10.jpg",
        "oxford-iiit-pet/images/Abyssinian_2.jpg",
        "oxford-iiit-pet/images/american_pit_bull_terrier_1.jpg",
        "oxford-iiit-pet/images/american_pit_bull_terrier_2.jpg",
        "oxford-iiit-pet/images/american_pit_bull_terrier_3.jpg",
        "oxford-iiit-pet/images/basset_hound_1.jpg",
        "oxford-iiit-pet/images/basset_hound_10.jpg",
        "oxford-iiit-pet/images/basset_hound_2.jpg",
    ]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    expected = {}
    for split in ("trainval", "test"):
        ds = tv.OxfordIIITPet(tmp_path, split=split, download=False)
        assert ds.classes == classes
        for path, label in zip(ds._images, ds._labels, strict=True):
            expected[Path(path).relative_to(tmp_path).as_posix()] = label
    assert dict(zip(items, labels.tolist(), strict=True)) == expected


def test_flowers102_listing_matches_torchvision(tmp_path, monkeypatch):
    make_flowers(tmp_path)
    items, labels, classes = list_target(tmp_path, "flowers102")
    assert classes == list(tv.Flowers102.classes) and len(classes) == 102
    assert items == [
        "flowers-102/jpg/image_00002.jpg",
        "flowers-102/jpg/image_00004.jpg",
        "flowers-102/jpg/image_00007.jpg",
        "flowers-102/jpg/image_00005.jpg",
        "flowers-102/jpg/image_00006.jpg",
        "flowers-102/jpg/image_00001.jpg",
        "flowers-102/jpg/image_00003.jpg",
    ]
    assert labels.tolist() == [2, 2, 2, 11, 11, 77, 77]
    # torchvision checks the .mat files' md5 sums, which fakes cannot match.
    monkeypatch.setattr("torchvision.datasets.flowers102.check_integrity", lambda *a, **k: True)
    expected = {}
    for split in ("train", "val", "test"):
        ds = tv.Flowers102(tmp_path, split=split, download=False)
        for path, label in zip(ds._image_files, ds._labels, strict=True):
            expected[Path(path).relative_to(tmp_path).as_posix()] = int(label)
    assert dict(zip(items, labels.tolist(), strict=True)) == expected
    # setid.mat is not needed for the whole target.
    (tmp_path / "flowers-102" / "setid.mat").unlink()
    assert list_target(tmp_path, "flowers102")[0] == items


def test_dtd_listing_matches_torchvision(tmp_path):
    make_dtd(tmp_path)
    items, labels, classes = list_target(tmp_path, "dtd")
    assert classes == ["Braided", "banded", "zigzagged"]
    assert items == [
        "dtd/dtd/images/Braided/b_0002.jpg",
        "dtd/dtd/images/Braided/b_0005.jpg",
        "dtd/dtd/images/Braided/b_0010.jpg",
        "dtd/dtd/images/banded/banded_0001.jpg",
        "dtd/dtd/images/banded/banded_0002.jpg",
        "dtd/dtd/images/banded/banded_0010.jpg",
        "dtd/dtd/images/zigzagged/zigzagged_0001.jpg",
        "dtd/dtd/images/zigzagged/zigzagged_0002.jpg",
        "dtd/dtd/images/zigzagged/zigzagged_0003.jpg",
    ]
    expected = {}
    for split in ("train", "val", "test"):
        ds = tv.DTD(tmp_path, split=split, partition=1, download=False)
        # torchvision sorts the classes of each split file; all three hold every class here.
        assert ds.classes == classes
        for path, label in zip(ds._image_files, ds._labels, strict=True):
            expected[Path(path).relative_to(tmp_path).as_posix()] = label
    assert dict(zip(items, labels.tolist(), strict=True)) == expected


def test_caltech101_listing_matches_torchvision(tmp_path):
    make_caltech(tmp_path)
    items, labels, classes = list_target(tmp_path, "caltech101")
    assert classes == ["Faces", "accordion", "airplanes"]  # code points; background dropped
    assert not any("BACKGROUND_Google" in p for p in items)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
    ds = tv.Caltech101(tmp_path, download=False)
    assert ds.categories == classes
    expected = {
        f"caltech101/101_ObjectCategories/{ds.categories[y]}/image_{i:04d}.jpg": y
        for i, y in zip(ds.index, ds.y, strict=True)
    }
    assert dict(zip(items, labels.tolist(), strict=True)) == expected
    assert items == sorted(expected, key=lambda p: (expected[p], p))


@pytest.mark.parametrize("fmt", CIFAR_FORMATS)
def test_cifar_listing_and_pixels_match_torchvision(tmp_path, monkeypatch, fmt):
    written = make_cifar(tmp_path, fmt, style="py2")
    items, labels, classes = list_target(tmp_path, fmt)
    folder, batches, *_, k = CIFAR_SPECS[fmt]
    assert classes == [f"class_{c}" for c in range(k)]
    assert items == [f"{b}#{r}" for b in batches for r in range(len(written[b][1]))]
    assert labels.dtype == np.int64
    assert labels.tolist() == [lab for b in batches for lab in written[b][1]]
    for item in items:
        name, row = item.split("#")
        image = open_image(tmp_path, item, fmt)
        assert image.mode == "RGB" and image.size == (32, 32)
        rgb = written[name][0][int(row)].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(np.asarray(image), rgb)

    # torchvision checks md5 sums; its own (unrestricted) unpickling reads the same files.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    cls = tv.CIFAR10 if fmt == "cifar10" else tv.CIFAR100
    train, test = cls(tmp_path, train=True), cls(tmp_path, train=False)
    assert train.classes == classes
    assert list(train.targets) + list(test.targets) == labels.tolist()
    tv_pixels = np.concatenate([train.data, test.data])
    ours = np.stack([np.asarray(open_image(tmp_path, item, fmt)) for item in items])
    assert np.array_equal(ours, tv_pixels)


@pytest.mark.parametrize("fmt", CIFAR_FORMATS)
def test_cifar_python3_bytes_keys(tmp_path, fmt):
    # The same content re-pickled by Python 3 (bytes keys and strings) lists the same.
    make_cifar(tmp_path / "py2", fmt, style="py2")
    written = make_cifar(tmp_path / "py3", fmt, style="py3")
    raw = (tmp_path / "py3" / CIFAR_SPECS[fmt][0] / CIFAR_SPECS[fmt][1][0]).read_bytes()
    assert b"data" in raw and isinstance(pickle.loads(raw), dict)
    assert list(pickle.loads(raw))[0] == b"batch_label"
    a, b = list_target(tmp_path / "py2", fmt), list_target(tmp_path / "py3", fmt)
    assert a[0] == b[0] and a[2] == b[2] and np.array_equal(a[1], b[1])
    name = CIFAR_SPECS[fmt][1][-1]
    image = open_image(tmp_path / "py3", f"{name}#1", fmt)
    assert np.array_equal(
        np.asarray(image), written[name][0][1].reshape(3, 32, 32).transpose(1, 2, 0)
    )


def test_cifar_batches_are_unpickled_once(tmp_path, monkeypatch):
    make_cifar(tmp_path, "cifar10")
    calls = []
    real = target_formats.restricted_loads
    monkeypatch.setattr(target_formats, "restricted_loads", lambda d: calls.append(1) or real(d))
    items, _, _ = list_target(tmp_path, "cifar10")
    for item in items * 3:
        open_image(tmp_path, item, "cifar10")
    assert len(calls) == 7  # six batches and the meta file, each once


def test_imagefolder_format_delegates(tmp_path):
    rng = np.random.default_rng(0)
    write_png_folder(
        tmp_path / "t",
        rng.integers(0, 256, (4, 5, 5), dtype=np.uint8),
        np.array([0, 1, 0, 1]),
        ["b", "a"],
    )
    got, want = list_target(tmp_path / "t"), list_image_folder(tmp_path / "t")
    assert got[0] == want[0] and got[2] == want[2] and np.array_equal(got[1], want[1])
    assert list_target(tmp_path / "t", "imagefolder", allow_download=True)[0] == want[0]


def test_listing_is_deterministic(tmp_path):
    for fmt, make in MAKERS.items():
        make(tmp_path / fmt)
        a, b = list_target(tmp_path / fmt, fmt), list_target(tmp_path / fmt, fmt)
        assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]


# --------------------------------------------------------------------------- splits and loading


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_split_index_and_dataset_file_formats(tmp_path, fmt):
    root = tmp_path / "root"
    sizes = MAKERS[fmt](root)
    items, labels, classes = list_target(root, fmt)
    index = write_split_index(root, tmp_path / "index.csv", seed=3, format=fmt)
    assert index["path"].tolist() == items and index["label"].tolist() == labels.tolist()
    assert index["class"].tolist() == [classes[i] for i in labels]
    assert set(index["split"]) == {"train", "test"}
    pd_read = read_split_index(tmp_path / "index.csv", root, format=fmt)
    assert pd_read["path"].tolist() == items
    again = split_index(root, seed=3, format=fmt)
    assert again["split"].tolist() == index["split"].tolist()
    ds = ImageFolderSplit(root, index, None, format=fmt)
    assert len(ds) == len(items)
    for i, (path, label) in enumerate(zip(items, labels, strict=True)):
        image, got = ds[i]
        assert image.mode == "RGB" and image.size == sizes[path] and got == label


@pytest.mark.parametrize("fmt", CIFAR_FORMATS)
def test_split_index_and_dataset_cifar(tmp_path, fmt):
    root = tmp_path / "root"
    written = make_cifar(root, fmt)
    index = write_split_index(root, tmp_path / "index.csv", test_fraction=0.5, format=fmt)
    read = read_split_index(tmp_path / "index.csv", root, format=fmt)
    assert read["path"].tolist() == index["path"].tolist()
    test_rows = read[read["split"] == "test"]
    ds = ImageFolderSplit(root, test_rows, None, format=fmt)
    for i, (path, label) in enumerate(zip(test_rows["path"], test_rows["label"], strict=True)):
        image, got = ds[i]
        name, row = path.split("#")
        assert got == label == written[name][1][int(row)]
        pixels = written[name][0][int(row)].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(np.asarray(image), pixels)


# --------------------------------------------------------------------------- errors


def test_unknown_format(tmp_path):
    make_pet(tmp_path)
    pattern = r"unknown target format 'svhn'; known: imagefolder, oxford_iiit_pet, .*cifar100"
    with pytest.raises(ValueError, match=pattern):
        list_target(tmp_path, "svhn")
    with pytest.raises(ValueError, match=pattern):
        open_image(tmp_path, "a.jpg", "svhn")
    with pytest.raises(ValueError, match=pattern):
        split_index(tmp_path, format="svhn")
    index = split_index(tmp_path, format="oxford_iiit_pet")
    with pytest.raises(ValueError, match=pattern):
        ImageFolderSplit(tmp_path, index, None, format="svhn")
    index.to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ValueError, match=pattern):
        read_split_index(tmp_path / "index.csv", tmp_path, format="svhn")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("oxford_iiit_pet", "oxford-iiit-pet/images"),
        ("flowers102", "flowers-102/jpg"),
        ("dtd", "dtd/dtd/images"),
        ("caltech101", "caltech101/101_ObjectCategories"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
    ],
)
def test_missing_layout_names_path_and_hint(tmp_path, fmt, expected):
    with pytest.raises(FileNotFoundError) as info:
        list_target(tmp_path, fmt)
    message = str(info.value)
    assert fmt in message and str(tmp_path / expected) in message
    assert "set allow_download: true to let torchvision download it" in message
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing downloaded


def test_partial_layout_names_the_missing_file(tmp_path):
    make_pet(tmp_path)
    (tmp_path / "oxford-iiit-pet" / "annotations" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"oxford-iiit-pet/annotations/test\.txt"):
        list_target(tmp_path, "oxford_iiit_pet")
    written = make_cifar(tmp_path / "c", "cifar10")
    assert written
    (tmp_path / "c" / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/batches\.meta"):
        list_target(tmp_path / "c", "cifar10")


def test_cifar_pickle_with_os_system_is_refused(tmp_path):
    make_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3 was refused \(refused global .*system"):
        list_target(tmp_path, "cifar10")
    with pytest.raises(ValueError, match="data_batch_3 was refused"):
        open_image(tmp_path, "data_batch_3#0", "cifar10")
    assert not marker.exists()


def test_corrupt_and_malformed_cifar(tmp_path):
    make_cifar(tmp_path, "cifar100")
    folder = tmp_path / "cifar-100-python"
    (folder / "test").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(ValueError, match=r"cannot read CIFAR file .*cifar-100-python/test"):
        list_target(tmp_path, "cifar100")
    (folder / "test").write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8)}, protocol=2))
    with pytest.raises(ValueError, match=r"cifar-100-python/test: 'data' must be a uint8 array"):
        list_target(tmp_path, "cifar100")
    for bad in ("train", "train#x", "data_batch_1#0", "train#-1", "../train#0"):
        with pytest.raises(ValueError, match="bad CIFAR item"):
            open_image(tmp_path, bad, "cifar100")
    with pytest.raises(ValueError, match=r"row 99 out of range"):
        open_image(tmp_path, "train#99", "cifar100")


def test_missing_and_corrupt_images_are_named(tmp_path):
    root = tmp_path / "root"
    make_dtd(root)
    index = write_split_index(root, tmp_path / "index.csv", format="dtd")
    gone = "dtd/dtd/images/banded/banded_0010.jpg"
    (root / gone).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 9 files missing .*banded_0010\.jpg"):
        read_split_index(tmp_path / "index.csv", root, format="dtd")
    assert missing_sources(root, index["path"], "dtd") == [gone]
    ds = ImageFolderSplit(root, index, None, format="dtd")
    with pytest.raises(FileNotFoundError, match=r"banded_0010\.jpg"):
        ds[index["path"].tolist().index(gone)]
    broken = "dtd/dtd/images/Braided/b_0002.jpg"
    (root / broken).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*b_0002\.jpg"):
        ds[index["path"].tolist().index(broken)]


def test_missing_cifar_batch_is_named(tmp_path):
    root = tmp_path / "root"
    make_cifar(root, "cifar10")
    write_split_index(root, tmp_path / "index.csv", test_fraction=0.5, format="cifar10")
    (root / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"cifar10 batch file\(s\) missing .*cifar-10-batches-py/data_batch_2",
    ):
        read_split_index(tmp_path / "index.csv", root, format="cifar10")
    with pytest.raises(FileNotFoundError, match=r"CIFAR file .*data_batch_2 does not exist"):
        open_image(root, "data_batch_2#0", "cifar10")
    # Without root only the index itself is checked; a malformed id is caught with it.
    assert len(read_split_index(tmp_path / "index.csv", format="cifar10")) > 0
    frame = read_split_index(tmp_path / "index.csv")
    frame.loc[0, "path"] = "nonsense"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: 1 malformed cifar10 id"):
        read_split_index(tmp_path / "bad.csv", root, format="cifar10")


def test_bad_index_files(tmp_path):
    make_pet(tmp_path)
    ann = tmp_path / "oxford-iiit-pet" / "annotations"
    (ann / "test.txt").write_text("Abyssinian_10 1 1\n")
    with pytest.raises(ValueError, match=r"test\.txt, line 1: expected"):
        list_target(tmp_path, "oxford_iiit_pet")
    (ann / "test.txt").write_text("Abyssinian_1 1 1 1\n")
    with pytest.raises(ValueError, match="listed twice"):
        list_target(tmp_path, "oxford_iiit_pet")
    (ann / "test.txt").write_text("beagle_1 5 2 3\n")
    with pytest.raises(ValueError, match="without gaps"):
        list_target(tmp_path, "oxford_iiit_pet")

    make_flowers(tmp_path / "f")
    mat = tmp_path / "f" / "flowers-102" / "imagelabels.mat"
    scipy.io.savemat(mat, {"labels": np.array([[0, 1, 2]])})
    with pytest.raises(ValueError, match=r"imagelabels\.mat: 'labels' must be integers 1\.\.102"):
        list_target(tmp_path / "f", "flowers102")
    mat.write_bytes(b"garbage" * 20)
    with pytest.raises(ValueError, match=r"cannot read .*imagelabels\.mat"):
        list_target(tmp_path / "f", "flowers102")

    make_dtd(tmp_path / "d")
    (tmp_path / "d" / "dtd" / "dtd" / "labels" / "val1.txt").write_text("../etc/passwd\n")
    with pytest.raises(ValueError, match=r"val1\.txt, line 1: expected '<class>/<file>'"):
        list_target(tmp_path / "d", "dtd")


def test_allow_download_calls_torchvision_class(tmp_path, monkeypatch):
    # A stand-in for torchvision's class: nothing is downloaded, only the call is checked.
    calls = []

    class FakeDTD:
        def __init__(self, root, download=False):
            calls.append((root, download))
            make_dtd(Path(root))

    monkeypatch.setattr("torchvision.datasets.DTD", FakeDTD)
    root = tmp_path / "new"
    items, _, classes = list_target(root, "dtd", allow_download=True)
    assert calls == [(os.fspath(root), True)] and len(items) == 9
    assert classes == ["Braided", "banded", "zigzagged"]
    list_target(root, "dtd", allow_download=True)
    assert len(calls) == 1  # present now: not called again

    class Useless:
        def __init__(self, root, download=False):
            pass

    monkeypatch.setattr("torchvision.datasets.Caltech101", Useless)
    with pytest.raises(FileNotFoundError, match="download did not produce .*101_ObjectCategories"):
        list_target(tmp_path / "other", "caltech101", allow_download=True)
