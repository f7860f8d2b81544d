"""config/paper_vgg.yaml as configured, on stand-ins: every source (random weights of its real
architecture and head size, written where its config says a file comes from; the ImageNet
weights in a temporary torch hub cache) through split → extract → one fine-tuning step on a
generated image folder per target (2 images per class), with the settings the rules derive
from the config (input size per source, batch size and checkpoint grid per target, seeds of the
baselines). So that the paper config fails here, not on a cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from test_workflow import REPO

from transferability.artifacts import read_activations
from transferability.data.folders import write_png_folder
from transferability.jobs.extract import extract_images as extract
from transferability.jobs.finetune import finetune_images as finetune
from transferability.jobs.sources import load_source
from transferability.jobs.targets import split_target
from transferability.models import ModelSpec, build_model
from transferability.run import config as tconfig
from transferability.training.schedule import resolve_checkpoints

#: Head sizes of the thesis's weight files (thesis §2.1.2): Places365, Stanford Cars, VGG-Face.
HEADS = {"places365": 365, "stanford_cars": 196, "vgg_face": 2622, "cifar10": 10}
CLASSES = 3  # per generated target folder


def paper_config() -> dict:
    return yaml.safe_load((REPO / "config" / "paper_vgg.yaml").read_text())


def write_stand_in(name: str, settings: dict, path: Path) -> None:
    """Random weights in the layout the real file has: torchvision's VGG (the CIFAR VGG-19 and
    the encoder-only SegNet file in this package's VGG layout, torchvision key names)."""
    arch = settings["arch"]
    if settings.get("cifar"):
        state = build_model(ModelSpec.create(arch, HEADS[name], cifar=True), 0).state_dict()
    elif settings.get("encoder"):  # SegNet's VGG16-BN encoder: features only
        full = getattr(torchvision.models, arch)(weights=None).state_dict()
        state = {k: v for k, v in full.items() if k.startswith("features.")}
    else:
        state = getattr(torchvision.models, arch)(num_classes=HEADS.get(name, 1000)).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


@pytest.fixture(scope="module")
def paper(tmp_path_factory, monkeypatch_module):
    """The paper config with its weight files and target folders stood in under a temp dir."""
    root = tmp_path_factory.mktemp("paper_vgg")
    monkeypatch_module.setenv("TORCH_HOME", str(root / "torch"))
    config = paper_config()
    vgg = config["tracks"]["vgg"]
    for name, settings in vgg["sources"].items():
        weights = settings["weights"]
        if weights == "random":
            continue
        if weights.startswith("VGG16_Weights"):
            weight = torchvision.models.get_weight(weights)
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weight.url).name
        else:
            path = root / weights
            settings["weights"] = str(path)
        write_stand_in(name, settings, path)
    rng = np.random.default_rng(0)
    for name, settings in vgg["targets"].items():
        images = rng.integers(0, 256, (2 * CLASSES, 48, 64, 3), dtype=np.uint8)
        settings["root"] = str(root / "data" / name)
        write_png_folder(settings["root"], images, np.repeat(np.arange(CLASSES), 2),
                         [f"class{k}" for k in range(CLASSES)])  # fmt: skip
    tconfig.check(config)
    assert tconfig.missing_image_inputs(config) == []
    return root, config


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_paper_vgg_protocol_per_target_and_per_source():
    config = paper_config()
    grids = {
        t: tconfig.image_finetune_protocol(config, "vgg", t)
        for t in config["tracks"]["vgg"]["targets"]
    }
    for target in ("custom3d", "oxford_pet"):
        assert not {"100b", "300b"} & set(grids[target]["checkpoints"])
        assert len(grids[target]["checkpoints"]) == 10
    assert len(grids["malaria"]["checkpoints"]) == 12 and grids["malaria"]["batch_size"] == 22
    assert grids["custom3d"]["batch_size"] == 12 and grids["oxford_pet"]["batch_size"] == 58
    # custom3D: 40 classes × 30 training images at batch 12 = 100 batches per epoch
    resolve_checkpoints(grids["custom3d"]["checkpoints"], 1200, 12)
    with pytest.raises(ValueError, match=r"'100b' and '1e' are the same step \(100 batches"):
        resolve_checkpoints(config["tracks"]["vgg"]["finetune"]["checkpoints"], 1200, 12)
    assert tconfig.image_transforms(config, "vgg", "cifar10") == {"resize": 32, "crop": 32}
    assert tconfig.image_transforms(config, "vgg", "imagenet") == {"resize": 256, "crop": 224}
    assert tconfig.image_transforms(config, "vgg", "scratch") == {"resize": 256, "crop": 224}
    assert tconfig.image_seeds(config, "vgg", "random") == [0, 1, 2]
    assert tconfig.image_seeds(config, "vgg", "scratch") == [0, 1, 2]
    assert tconfig.image_seeds(config, "vgg", "imagenet") == [0]


def test_colliding_grid_names_the_target_labels_and_step(paper, tmp_path):
    root, config = paper
    target = config["tracks"]["vgg"]["targets"]["custom3d"]
    index, subset = tmp_path / "index.csv", tmp_path / "subset.csv"
    split_target(target["root"], index, subset, test_fraction=0.5, per_class=1)
    protocol = {**tconfig.image_finetune_protocol(config, "vgg", "custom3d"), "batch_size": 1,
                "checkpoints": ["0", "3b", "1e"]}  # fmt: skip
    with pytest.raises(ValueError) as err:  # 3 training images at batch 1: 1e = 3b
        finetune(None, target["root"], index, tmp_path / "curve.csv", target="custom3d",
                 source="scratch", seed=0, protocol=protocol, resize=32, crop=32,
                 scratch_arch="vgg16", device="cpu")  # fmt: skip
    message = str(err.value)
    assert "custom3d" in message and "'3b' and '1e'" in message and "3 batches" in message
    assert not (tmp_path / "curve.csv").exists()


def test_every_paper_vgg_source_splits_extracts_and_fine_tunes(paper):
    root, config = paper
    vgg = config["tracks"]["vgg"]
    work = root / "results"
    for target, settings in vgg["targets"].items():
        index, subset_csv = work / target / "index.csv", work / target / "subset.csv"
        split_target(settings["root"], index, subset_csv, test_fraction=0.5, per_class=1,
                     subset_split=settings.get("extract_split", "test"))  # fmt: skip
        subset = pd.read_csv(subset_csv)
        protocol = {
            **tconfig.image_finetune_protocol(config, "vgg", target),
            "checkpoints": ["0", "1b"],
        }
        for source, source_settings in [*vgg["sources"].items(), ("scratch", None)]:
            size = tconfig.image_transforms(config, "vgg", source)
            seed = tconfig.image_seeds(config, "vgg", source)[-1]
            out = work / target / source
            checkpoint = None
            if source_settings is not None:
                checkpoint = out / "final.pt"
                load_source(tconfig.image_weights(config, "vgg", source), checkpoint, source=source,
                            seed=seed, arch=source_settings["arch"],
                            cifar=source_settings.get("cifar", False),
                            encoder=source_settings.get("encoder", False))  # fmt: skip
                full = not source_settings.get("encoder")
                layers = vgg["layers"] if full else [x for x in vgg["layers"] if "pool" in x]
                paths = {layer: out / f"{layer}.h5" for layer in layers}
                extract(checkpoint, settings["root"], subset_csv, paths,
                        out / "logits.h5" if full else None, target=target, **size,
                        batch_size=vgg["extract"]["batch_size"])  # fmt: skip
                pool5, labels, _ = read_activations(paths["pool5"])
                assert pool5.shape == (CLASSES, 512 * (1 if source == "cifar10" else 49))
                assert list(labels) == list(subset["label"])
                if full:
                    logits = read_activations(out / "logits.h5")[0]
                    assert logits.shape == (CLASSES, HEADS.get(source, 1000))
            curve = finetune(checkpoint, settings["root"], index, out / "curve.csv",
                             target=target, source=source, seed=seed, protocol=protocol,
                             extras=settings.get("extras"), scratch_arch=vgg["scratch"],
                             device="cpu", **size)  # fmt: skip
            assert list(curve["finetune_step"]) == ["0", "1b"], (target, source)
            assert curve["test_accuracy"].between(0, 1).all()
