"""The one data interface (transferability.data.targets): each reader — MNIST-like arrays,
image folders, torchvision layouts — gives the same view of a target (labels per split, fixed
subsets, PIL datasets through a transform, tensor batches), and refuses bad input naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_target_formats import make_cifar, make_pet
from torchvision import transforms

from transferability.data.arrays import ImageDataset, balanced_subset, save_dataset
from transferability.data.folders import write_split_index
from transferability.data.targets import (
    SUBSET_SEED,
    ArrayTarget,
    IndexedTarget,
    Split,
    Target,
    open_target,
)

TO_TENSOR = transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])


def small_arrays(n_train: int = 40, n_test: int = 20, classes: int = 4) -> ImageDataset:
    rng = np.random.default_rng(0)
    return ImageDataset(
        train_x=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        train_y=np.arange(n_train, dtype=np.int64) % classes,
        test_x=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        test_y=np.arange(n_test, dtype=np.int64) % classes,
        num_classes=classes,
        name="tiny",
    )


def image_folder(root, classes=("cat", "dog", "eel"), per_class=5):
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"img{i}.png")
    return root


def check_common_view(target: Target, expected_classes: int) -> None:
    """What every reader must give, whatever the target's origin."""
    assert target.num_classes == expected_classes == len(target.class_names)
    for split in ("train", "test"):
        labels = target.labels(split)
        assert labels.dtype == np.int64 and labels.min() >= 0
        assert labels.max() < target.num_classes
        dataset = target.dataset(split, TO_TENSOR)
        assert len(dataset) == len(labels)
        x, y = dataset[0]
        assert isinstance(x, torch.Tensor) and y == labels[0]
        batches = list(target.loader(split, batch_size=3, transform=TO_TENSOR))
        assert sum(len(b[1]) for b in batches) == len(labels)
        assert batches[0][0].shape[1:] == (3 if x.shape[0] == 3 else 1, 8, 8)
        np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), labels)
    picked = target.limit("test", 2)
    subset = target.dataset("test", TO_TENSOR, picked)
    assert len(subset) == len(picked)
    assert [subset[i][1] for i in range(len(picked))] == list(target.labels("test")[picked])
    with pytest.raises(ValueError, match="unknown split 'val'"):
        target.labels("val")


# --------------------------------------------------------------------------- arrays


def test_array_target_reads_a_data_file(tmp_path):
    ds = small_arrays()
    save_dataset(ds, tmp_path / "data.npz")
    target = open_target(tmp_path / "data.npz")
    assert isinstance(target, ArrayTarget) and target.name == "tiny"
    check_common_view(target, 4)
    np.testing.assert_array_equal(target.labels("train"), ds.train_y)


def test_array_target_fast_path_hands_out_uint8_tensors():
    ds = small_arrays()
    target = ArrayTarget(ds)
    split = target.tensors("train")
    assert isinstance(split, Split) and split.images.dtype == torch.uint8
    assert split.images.shape == (40, 28, 28) and len(split) == 40
    # a fixed class-balanced subset (the CNN track's rule): n // classes per class
    small = target.tensors("train", 8)
    expected = balanced_subset(ds.train_y, per_class=2, seed=SUBSET_SEED)
    np.testing.assert_array_equal(small.labels.numpy(), ds.train_y[expected])
    assert target.limit("train", 40) is None and target.limit("train", None) is None
    train, train_eval, test = target.training_splits(8, 12)
    assert (len(train), len(train_eval), len(test)) == (8, 12, 12)
    # train_eval defaults to the test split's size
    assert len(target.training_splits(None, None)[1]) == 20


def test_array_target_pil_images_are_the_arrays():
    ds = small_arrays()
    dataset = ArrayTarget(ds).dataset("test")
    image, label = dataset[3]
    assert image.mode == "L" and label == ds.test_y[3]
    np.testing.assert_array_equal(np.asarray(image), ds.test_x[3])


def test_array_target_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        ArrayTarget(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="bad.npz"):
        ArrayTarget(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- image folders


def test_indexed_target_reads_an_image_folder(tmp_path):
    root = image_folder(tmp_path / "animals")
    write_split_index(root, tmp_path / "index.csv", test_fraction=0.4, seed=0)
    target = open_target(root, tmp_path / "index.csv")
    assert isinstance(target, IndexedTarget) and target.name == "animals"
    assert target.class_names == ["cat", "dog", "eel"]
    check_common_view(target, 3)
    assert len(target.labels("test")) == 6 and len(target.labels("train")) == 9
    # the VGG track's evaluation subset: a uniform sample with random_state=0, in its order
    rows = target.rows("test")
    np.testing.assert_array_equal(
        target.limit("test", 4), rows.sample(n=4, random_state=0).index.to_numpy()
    )
    assert target.limit("test", None) is None
    assert sorted(target.limit("test", 100)) == list(range(6))


def test_indexed_target_bad_inputs(tmp_path):
    root = image_folder(tmp_path / "animals")
    with pytest.raises(FileNotFoundError, match="index.csv"):
        IndexedTarget(root, tmp_path / "index.csv")
    write_split_index(root, tmp_path / "index.csv", test_fraction=0.4, seed=0)
    with pytest.raises(ValueError, match="unknown target format 'tiff'"):
        IndexedTarget(root, tmp_path / "index.csv", format="tiff")
    gone = pd.read_csv(tmp_path / "index.csv")["path"][0]
    (root / gone).unlink()
    with pytest.raises(FileNotFoundError, match=gone.split("/")[-1]):
        IndexedTarget(root, tmp_path / "index.csv")
    pd.DataFrame({"path": ["x.png"], "label": [0]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="short.csv"):
        IndexedTarget(root, tmp_path / "short.csv")


def test_open_target_needs_an_index_for_a_folder(tmp_path):
    root = image_folder(tmp_path / "animals")
    with pytest.raises(ValueError, match="split index"):
        open_target(root)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: expected a data.npz file"):
        open_target(tmp_path / "notes.txt")


# --------------------------------------------------------------------------- torchvision layouts


def test_indexed_target_reads_a_cifar_layout(tmp_path):
    written = make_cifar(tmp_path, "cifar10")
    write_split_index(tmp_path, tmp_path / "index.csv", test_fraction=0.4, format="cifar10")
    target = open_target(tmp_path, tmp_path / "index.csv", format="cifar10")
    check_common_view(target, 10)
    # CIFAR-10's class names; labels without images in this small layout still count
    assert target.class_names[3] == "class_3" and target.class_names[1] == "1"
    image, label = target.dataset("train")[0]
    assert image.size == (32, 32) and image.mode == "RGB" and label == target.labels("train")[0]
    assert sum(len(d) for d, _ in written.values()) == len(target.index)


def test_indexed_target_reads_an_oxford_pet_layout(tmp_path):
    make_pet(tmp_path)
    write_split_index(tmp_path, tmp_path / "index.csv", format="oxford_iiit_pet")
    target = IndexedTarget(tmp_path, tmp_path / "index.csv", format="oxford_iiit_pet")
    check_common_view(target, target.num_classes)
    assert target.num_classes >= 2


def test_layout_target_bad_inputs(tmp_path):
    make_cifar(tmp_path, "cifar10")
    write_split_index(tmp_path, tmp_path / "index.csv", test_fraction=0.4, format="cifar10")
    batch = next((tmp_path / "cifar-10-batches-py").glob("data_batch_*"))
    batch.unlink()
    with pytest.raises(FileNotFoundError, match=batch.name):
        IndexedTarget(tmp_path, tmp_path / "index.csv", format="cifar10")
