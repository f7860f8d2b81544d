"""Image-track job functions on their own: an encoder-only source (SegNet-style weights), its
extraction without a head, fine-tuning and the from-scratch baseline, on a small image folder."""

import numpy as np
import pandas as pd
import pytest
import torch

from transferability.artifacts import load_checkpoint, read_activations
from transferability.data.folders import write_png_folder
from transferability.jobs.extract import extract_images as extract
from transferability.jobs.finetune import finetune_images as finetune
from transferability.jobs.metric_jobs import metric_table
from transferability.jobs.sources import load_source
from transferability.jobs.targets import split_target
from transferability.models import ModelSpec, build_model

PROTOCOL = {"lr": 0.01, "momentum": 0.9, "lr_step_epochs": 20, "lr_gamma": 0.1,
            "batch_size": 4, "checkpoints": ["0", "2b"], "eval_samples": None}  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images") / "target"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    write_png_folder(root, images, np.repeat([0, 1], 10), ["cats", "dogs"])
    index, subset = root.parent / "index.csv", root.parent / "subset.csv"
    split_target(root, index, subset, per_class=2)
    return root, index, subset


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A features-only source loaded from a full VGG16 (CIFAR-size) state-dict file."""
    path = tmp_path_factory.mktemp("weights")
    torch.save(build_model(ModelSpec("vgg16", 10, cifar=True), 1).state_dict(), path / "full.pt")
    checkpoint = path / "encoder.pt"
    load_source(str(path / "full.pt"), checkpoint, path / "history.csv", source="encoder",
                seed=0, arch="vgg16_features", cifar=True)  # fmt: skip
    return checkpoint


def test_encoder_only_source_keeps_the_features_and_no_head(encoder):
    state, meta = load_checkpoint(encoder)
    assert meta["num_classes"] is None and meta["arch"] == "vgg16_features"
    assert not any(key.startswith("classifier.") for key in state)
    reference = build_model(ModelSpec("vgg16", 10, cifar=True), 1).state_dict()
    assert torch.equal(state["features.28.weight"], reference["features.28.weight"])


def test_extraction_without_a_head_streams_pool_layers(encoder, folder, tmp_path):
    root, _, subset_csv = folder
    paths = {layer: tmp_path / f"{layer}.h5" for layer in ("pool1", "pool5")}
    extract(encoder, root, subset_csv, paths, None, target="toy", resize=32, crop=32,
            batch_size=3)  # fmt: skip
    subset = pd.read_csv(subset_csv)
    pool1, labels, attrs = read_activations(paths["pool1"])
    assert pool1.shape == (4, 64 * 16 * 16) and list(labels) == list(subset["label"])
    assert attrs["step"] == "final" and attrs["source"] == "encoder"
    assert read_activations(paths["pool5"])[0].shape == (4, 512)
    with pytest.raises(ValueError, match="no classifier"):
        extract(encoder, root, subset_csv, paths, tmp_path / "logits.h5", target="toy",
                resize=32, crop=32)  # fmt: skip
    table = metric_table([paths["pool5"]], ["rsa", "leep"], None)
    leep = table[table["metric"] == "leep"].iloc[0]
    assert np.isnan(leep["value"]) and "no classifier head" in leep["note"]


def test_extraction_subset_is_checked_as_a_split_index(encoder, folder, tmp_path):
    """The extraction job reads its subset through the one data interface (an index of one
    split, plus sample_index): a subset that is not one is refused, naming the file."""
    root, _, subset_csv = folder
    subset = pd.read_csv(subset_csv)
    paths = {"pool1": tmp_path / "pool1.h5"}
    two_splits = tmp_path / "two_splits.csv"
    subset.assign(split=["train"] + ["test"] * (len(subset) - 1)).to_csv(two_splits, index=False)
    with pytest.raises(ValueError, match=r"two_splits.csv: rows of one split expected"):
        extract(encoder, root, two_splits, paths, None, target="toy", resize=32, crop=32)
    no_class = tmp_path / "no_class.csv"
    subset.drop(columns="class").to_csv(no_class, index=False)
    with pytest.raises(ValueError, match=r"no_class.csv lacks column\(s\) class"):
        extract(encoder, root, no_class, paths, None, target="toy", resize=32, crop=32)
    assert not paths["pool1"].exists()  # nothing half-written


def test_finetuning_an_encoder_and_from_scratch(encoder, folder, tmp_path):
    root, index_csv, _ = folder
    curve = finetune(encoder, root, index_csv, tmp_path / "curve.csv", target="toy",
                     source="encoder", seed=0, protocol=PROTOCOL, resize=32, crop=32,
                     device="cpu")  # fmt: skip
    assert list(curve["finetune_step"]) == ["0", "2b"]
    assert curve["test_accuracy"].between(0, 1).all() and np.isnan(curve["train_loss"].iloc[0])
    assert pd.read_csv(tmp_path / "curve.csv").shape == curve.shape
    again = finetune(encoder, root, index_csv, tmp_path / "again.csv", target="toy",
                     source="encoder", seed=0, protocol=PROTOCOL, resize=32, crop=32,
                     device="cpu")  # fmt: skip
    pd.testing.assert_frame_equal(curve, again)  # deterministic on CPU
    scratch = finetune(None, root, index_csv, tmp_path / "scratch.csv", target="toy",
                       source="scratch", seed=0, protocol=PROTOCOL, resize=32, crop=32,
                       scratch_arch="vgg_tiny", device="cpu")  # fmt: skip
    assert (scratch["source"] == "scratch").all()
    with pytest.raises(ValueError, match="scratch_arch"):
        finetune(None, root, index_csv, tmp_path / "x.csv", target="toy", source="scratch",
                 seed=0, protocol=PROTOCOL, resize=32, crop=32)  # fmt: skip


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_source(str(tmp_path / "nowhere.pth"), tmp_path / "c.pt", source="s", seed=0,
                    arch="vgg_tiny")  # fmt: skip


def test_weights_trained_here_are_reproducible(tmp_path):
    # dropout in the classifier draws from the global generator: it must be seeded per job
    from transferability.data.arrays import ImageDataset, save_dataset
    from transferability.jobs.sources import pretrain_weights

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 3, 40)
    save_dataset(ImageDataset(x, y, x[:10], y[:10], 3, "toy"), tmp_path / "toy.npz")
    for name in ("a", "b"):
        pretrain_weights(tmp_path / "toy.npz", tmp_path / f"{name}.pt", arch="vgg_tiny",
                         steps=4, batch_size=8, device="cpu")  # fmt: skip
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    untrained = build_model(ModelSpec("vgg_tiny", 3), 0).state_dict()
    assert not torch.equal(a["features.0.weight"], untrained["features.0.weight"])
