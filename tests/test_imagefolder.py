"""Tests of transferability.data.folders on small synthetic folders; CPU only, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from transferability.data import folders as imagefolder
from transferability.data.folders import (
    FASHION_MNIST_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderSplit,
    build_transform,
    dataset_folder,
    extraction_subset,
    list_image_folder,
    read_split_index,
    split_index,
    stratified_split,
    write_png_folder,
    write_split_index,
)

REPO = Path(__file__).resolve().parents[1]
FASHION_NPZ = REPO / "resources" / "datasets" / "fashion_mnist" / "data.npz"


def random_images(n: int, rgb: bool = False, shape=(12, 16), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape, 3) if rgb else (n, *shape), dtype=np.uint8)


def make_folder(
    root: Path, counts: dict[str, int], rgb: bool = False, seed: int = 0
) -> pd.DataFrame:
    """``counts`` images per class name (in the given order), labels 0, 1, ..."""
    labels = np.repeat(np.arange(len(counts)), list(counts.values()))
    images = random_images(len(labels), rgb=rgb, seed=seed)
    return write_png_folder(root, images, labels, list(counts))


def tmp_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- listing


def test_listing_order_labels_and_ignored_files(tmp_path):
    root = tmp_path / "target"
    written = make_folder(root, {"zebra": 3, "ant": 2, "Mole": 2})
    # Nested files count; hidden files and folders, other suffixes and root files do not.
    (root / "ant" / "sub").mkdir()
    Image.new("L", (5, 5)).save(root / "ant" / "sub" / "a.PNG")
    Image.new("L", (5, 5)).save(root / "ant" / ".hidden.png")
    (root / "ant" / ".cache").mkdir()
    Image.new("L", (5, 5)).save(root / "ant" / ".cache" / "x.png")
    (root / "ant" / "notes.txt").write_text("not an image")
    Image.new("L", (5, 5)).save(root / "stray.png")
    (root / ".git").mkdir()

    paths, labels, classes = list_image_folder(root)
    assert classes == ["Mole", "ant", "zebra"]  # code-point order: upper case first
    assert paths == [
        "Mole/00005.png",
        "Mole/00006.png",
        "ant/00003.png",
        "ant/00004.png",
        "ant/sub/a.PNG",
        "zebra/00000.png",
        "zebra/00001.png",
        "zebra/00002.png",
    ]
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    # write_png_folder's listing is what list_image_folder saw before the extra files.
    assert written["path"].tolist() == [p for p in paths if p != "ant/sub/a.PNG"]
    assert written["source_label"].tolist() == [2, 2, 1, 1, 0, 0, 0]


def test_listing_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_folder(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        list_image_folder(tmp_path / "file")
    (tmp_path / "flat").mkdir()
    Image.new("L", (5, 5)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match=r"flat has no class folders"):
        list_image_folder(tmp_path / "flat")

    root = tmp_path / "target"
    make_folder(root, {"cat": 2, "dog": 2})
    (root / "empty").mkdir()
    (root / "textonly").mkdir()
    (root / "textonly" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"'empty', 'textonly' hold no images"):
        list_image_folder(root)

    root = tmp_path / "single"
    make_folder(root, {"cat": 2, "dog": 1})
    with pytest.raises(ValueError, match=r"dog \(dog/00002.png\) hold a single image"):
        list_image_folder(root)


# --------------------------------------------------------------------------- splits


def test_stratified_split_sizes_and_partition():
    labels = np.repeat([3, 0, 7, 5], [10, 5, 2, 3])
    train, test = stratified_split(labels, test_fraction=0.2, seed=1)
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(len(labels)))
    # round(0.2 n), at least one on each side: 10 -> 2, 5 -> 1, 2 -> 1 (0.4), 3 -> 1 (0.6).
    counts = {c: int(np.sum(labels[test] == c)) for c in (0, 3, 5, 7)}
    assert counts == {0: 1, 3: 2, 5: 1, 7: 1}
    assert all(np.sum(labels[train] == c) >= 1 for c in counts)


def test_stratified_split_determinism_and_seeds():
    labels = np.repeat(np.arange(3), 50)
    a = stratified_split(labels, seed=0)
    b = stratified_split(labels, seed=0)
    c = stratified_split(labels, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    assert len(c[1]) == 30 and len(c[0]) == 120


def test_stratified_split_reproduces_thesis_malaria_counts():
    train, test = stratified_split(np.repeat([0, 1], 13_779), test_fraction=0.2)
    assert (len(train), len(test)) == (22_046, 5_512)


def test_stratified_split_errors():
    with pytest.raises(ValueError, match=r"class 4: 1"):
        stratified_split(np.array([0, 0, 4]))
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            stratified_split(np.array([0, 0, 1, 1]), test_fraction=fraction)
    with pytest.raises(ValueError, match="integer"):
        stratified_split(np.array([0.0, 1.0]))


@pytest.fixture
def target(tmp_path) -> Path:
    root = tmp_path / "target"
    make_folder(root, {"NA": 10, "cat": 12, "dog": 6}, rgb=True)
    return root


def test_split_index_columns_and_determinism(target):
    frame = split_index(target, seed=3)
    assert list(frame.columns) == ["path", "label", "class", "split"]
    assert frame["label"].dtype == np.int64
    assert set(frame["split"]) == {"train", "test"}
    assert frame.groupby("class")["split"].apply(lambda s: int((s == "test").sum())).to_dict() == {
        "NA": 2,
        "cat": 2,
        "dog": 1,
    }
    assert all(p.startswith(f"{c}/") for p, c in zip(frame["path"], frame["class"], strict=True))
    pd.testing.assert_frame_equal(frame, split_index(target, seed=3))
    assert not frame["split"].equals(split_index(target, seed=4)["split"])


def test_write_read_round_trip_and_identical_bytes(target, tmp_path):
    first = write_split_index(target, tmp_path / "a" / "index.csv", seed=2)
    write_split_index(target, tmp_path / "b.csv", seed=2)
    assert (tmp_path / "a" / "index.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    back = read_split_index(tmp_path / "b.csv", root=target)
    pd.testing.assert_frame_equal(back, first)
    assert "NA" in set(back["class"])  # not turned into a missing value
    assert tmp_leftovers(tmp_path / "a") == []


def test_read_split_index_missing_file_and_bad_content(target, tmp_path):
    csv = tmp_path / "index.csv"
    frame = write_split_index(target, csv)
    gone = frame["path"].iloc[4]
    (target / gone).unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 of {len(frame)} files missing.*{gone}"):
        read_split_index(csv, root=target)
    read_split_index(csv)  # without root the files are not checked

    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        read_split_index(tmp_path / "nothing.csv")
    bad = tmp_path / "bad.csv"
    frame.drop(columns="split").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad.csv lacks column\(s\) split"):
        read_split_index(bad)
    frame.assign(split="val").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"split values \['val'\]"):
        read_split_index(bad)
    frame.assign(label=0).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="one to one"):
        read_split_index(bad)
    frame.assign(path="../escape.png").to_csv(bad, index=False)
    with pytest.raises(ValueError, match="inside the root"):
        read_split_index(bad)


# --------------------------------------------------------------------------- extraction subset


def test_extraction_subset(target):
    index = split_index(target, test_fraction=0.5)
    subset = extraction_subset(index, per_class=3, seed=0)
    assert (subset["split"] == "test").all()
    assert subset.groupby("label").size().tolist() == [3, 3, 3]
    assert subset.equals(subset.sort_values(["label", "path"]))
    assert subset.equals(index.loc[subset.index])  # original row labels kept
    pd.testing.assert_frame_equal(subset, extraction_subset(index, per_class=3, seed=0))
    # Independent of the row order of the index.
    shuffled = index.sample(frac=1.0, random_state=0)
    assert extraction_subset(shuffled, per_class=3, seed=0)["path"].tolist() == (
        subset["path"].tolist()
    )
    others = {tuple(extraction_subset(index, per_class=3, seed=s)["path"]) for s in range(5)}
    assert len(others) > 1
    train = extraction_subset(index, per_class=3, split="train")
    assert (train["split"] == "train").all()


def test_extraction_subset_too_few(target):
    index = split_index(target)  # dog: 1 test image
    with pytest.raises(ValueError, match=r"'dog' \(label 2\): 1"):
        extraction_subset(index, per_class=2)
    with pytest.raises(ValueError, match="per_class"):
        extraction_subset(index, per_class=0)


# --------------------------------------------------------------------------- transforms


def rgb_image(seed: int = 0, size=(40, 30)) -> Image.Image:
    return Image.fromarray(random_images(1, rgb=True, shape=size[::-1], seed=seed)[0])


def test_transform_shapes_and_grey_to_rgb():
    for train in (False, True):
        t = build_transform(train, resize=32, crop=24)
        assert t(rgb_image()).shape == (3, 24, 24)
        grey = Image.fromarray(random_images(1, shape=(20, 50))[0])
        out = t(grey)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32
        if not train:  # grey: the three channels differ only by the normalisation
            raw = out * torch.tensor(IMAGENET_STD)[:, None, None]
            raw += torch.tensor(IMAGENET_MEAN)[:, None, None]
            assert torch.allclose(raw[0], raw[1], atol=1e-6)
    assert build_transform(False)(rgb_image(size=(300, 260))).shape == (3, 224, 224)


def test_test_transform_deterministic_training_transform_random():
    image = rgb_image()
    test = build_transform(False, resize=32, crop=20)
    assert torch.equal(test(image), test(image))
    train = build_transform(True, resize=32, crop=20)
    torch.manual_seed(0)
    a, b = train(image), train(image)
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    assert torch.equal(train(image), a)


def test_normalisation_of_a_constant_image():
    value = 200
    out = build_transform(False, resize=16, crop=8)(Image.new("RGB", (20, 17), (value,) * 3))
    expected = (value / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, expected[:, None, None].expand(3, 8, 8), atol=1e-6)


def test_malaria_extras_and_unknown_extras():
    image = rgb_image()
    train = build_transform(True, resize=32, crop=24, extras="malaria")
    names = [type(step).__name__ for step in train.transforms]
    assert names == [
        "_ToRGB",
        "Resize",
        "CenterCrop",
        "RandomCrop",
        "ColorJitter",
        "RandomHorizontalFlip",
        "RandomVerticalFlip",
        "RandomRotation",
        "ToTensor",
        "Normalize",
    ]
    assert train.transforms[4].brightness == (0.95, 1.05) and train.transforms[4].contrast is None
    assert train.transforms[7].degrees == [-20.0, 20.0]
    torch.manual_seed(1)
    out = train(image)
    assert out.shape == (3, 24, 24) and torch.isfinite(out).all()
    # The test/extraction transform is the same deterministic one with or without extras.
    test = build_transform(False, resize=32, crop=24, extras="malaria")
    assert torch.equal(test(image), build_transform(False, resize=32, crop=24)(image))
    with pytest.raises(ValueError, match=r"unknown transform extras 'pets'; valid: malaria"):
        build_transform(True, extras="pets")
    with pytest.raises(ValueError, match="resize >= crop"):
        build_transform(False, resize=16, crop=24)


# --------------------------------------------------------------------------- dataset


def test_image_folder_split_labels_and_channels(tmp_path):
    root = tmp_path / "grey"
    make_folder(root, {"b": 3, "a": 4})
    index = split_index(root)
    test_rows = index[index["split"] == "test"]
    ds = ImageFolderSplit(root, test_rows, build_transform(False, resize=16, crop=12))
    assert len(ds) == len(test_rows) == 2
    items = [ds[i] for i in range(len(ds))]
    assert [label for _, label in items] == test_rows["label"].tolist() == [0, 1]
    assert all(isinstance(label, int) for _, label in items)
    assert all(x.shape == (3, 12, 12) for x, _ in items)
    raw = ImageFolderSplit(root, index, None)[0][0]
    assert raw.mode == "RGB" and raw.size == (16, 12)
    batch, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch.shape == (2, 3, 12, 12) and labels.tolist() == [0, 1]


def test_image_folder_split_corrupt_and_missing_files(tmp_path):
    root = tmp_path / "target"
    make_folder(root, {"a": 2, "b": 2})
    index = split_index(root)
    ds = ImageFolderSplit(root, index, None)
    (root / index["path"][0]).write_bytes(b"not a png")
    with pytest.raises(ValueError, match=rf"cannot read image .*{index['path'][0]}"):
        ds[0]
    png = (root / index["path"][1]).read_bytes()
    (root / index["path"][1]).write_bytes(png[: len(png) // 2])  # truncated
    with pytest.raises(ValueError, match=index["path"][1]):
        ds[1]
    (root / index["path"][2]).unlink()
    with pytest.raises(FileNotFoundError, match=index["path"][2]):
        ds[2]
    assert ds[3][1] == 1


# --------------------------------------------------------------------------- writing folders


def test_write_png_folder_content_and_resize(tmp_path):
    images = random_images(4, rgb=True)
    frame = write_png_folder(tmp_path / "rgb", images, np.array([0, 1, 0, 1]), ["x", "y"])
    assert frame["path"].tolist() == ["x/00000.png", "x/00002.png", "y/00001.png", "y/00003.png"]
    with Image.open(tmp_path / "rgb" / "y" / "00003.png") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), images[3])
    grey = random_images(3)
    write_png_folder(tmp_path / "small", grey, np.array([0, 0, 0]), ["only"], size=8)
    with Image.open(tmp_path / "small" / "only" / "00001.png") as im:
        assert im.mode == "L" and im.size == (8, 8)
    # An existing empty directory is fine.
    (tmp_path / "empty").mkdir()
    frame = write_png_folder(tmp_path / "empty", random_images(4), np.array([1, 0, 1, 0]), "qp")
    expected = ["p/00000.png", "p/00002.png", "q/00001.png", "q/00003.png"]
    assert list_image_folder(tmp_path / "empty")[0] == frame["path"].tolist() == expected
    assert frame["label"].tolist() == [0, 0, 1, 1] and frame["source_label"].tolist() == [
        1,
        1,
        0,
        0,
    ]
    assert tmp_leftovers(tmp_path) == []


def test_write_png_folder_refuses_and_cleans_up(tmp_path, monkeypatch):
    images, labels = random_images(4), np.array([0, 0, 1, 1])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="full"):
        write_png_folder(tmp_path / "full", images, labels, ["a", "b"])
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    with pytest.raises(ValueError, match=r"\['c'\] have no images"):
        write_png_folder(tmp_path / "new", images, labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="uint8"):
        write_png_folder(tmp_path / "new", images.astype(np.int16), labels, ["a", "b"])
    with pytest.raises(ValueError, match="not unique"):
        write_png_folder(tmp_path / "new", images, labels, ["a", "a"])

    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original_save(self, *args, **kwargs)

    original_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_png_folder(tmp_path / "new", images, labels, ["a", "b"])
    assert not (tmp_path / "new").exists()
    assert tmp_leftovers(tmp_path) == []


@pytest.mark.skipif(
    not FASHION_NPZ.is_file(), reason=f"{FASHION_NPZ} missing; run `make data` to create it"
)
def test_dataset_folder(tmp_path):
    from transferability.data.arrays import load_dataset

    frame = dataset_folder(FASHION_NPZ, tmp_path / "fm", per_class=3, classes=[9, 0, 3])
    assert sorted(p.name for p in (tmp_path / "fm").iterdir()) == ["ankle_boot", "dress", "t_shirt"]
    assert frame.groupby("class").size().to_dict() == {"ankle_boot": 3, "dress": 3, "t_shirt": 3}
    paths, labels, classes = list_image_folder(tmp_path / "fm")
    assert frame["path"].tolist() == paths and frame["label"].tolist() == labels.tolist()
    ds = load_dataset(FASHION_NPZ)
    assert ds.train_y[frame["source_index"]].tolist() == frame["source_label"].tolist()
    assert [FASHION_MNIST_CLASSES[c] for c in frame["source_label"]] == frame["class"].tolist()
    with Image.open(tmp_path / "fm" / frame["path"][0]) as im:
        assert im.size == (32, 32) and im.mode == "L"

    full = dataset_folder(FASHION_NPZ, tmp_path / "raw", per_class=2, size=None, seed=1)
    assert sorted(set(full["class"])) == sorted(FASHION_MNIST_CLASSES) and len(full) == 20
    row = full.iloc[5]
    with Image.open(tmp_path / "raw" / row["path"]) as im:
        assert np.array_equal(np.asarray(im), ds.train_x[row["source_index"]])
    again = dataset_folder(FASHION_NPZ, tmp_path / "raw2", per_class=2, size=None, seed=1)
    pd.testing.assert_frame_equal(full, again)
    assert imagefolder.split_index(tmp_path / "raw")["split"].value_counts().to_dict() == {
        "train": 10,
        "test": 10,
    }
