"""The tiny VGG configuration end to end through Snakemake: weights trained by the workflow and
loaded through the weight-file path, an image-folder target it writes, extraction, metrics,
fine-tuning (with the from-scratch baseline) and the same tables as the CNN track."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import torch
import yaml
from test_workflow import DATA_DIR, REPO, planned_jobs, snakemake

from transferability.artifacts import load_checkpoint, read_activations, read_attrs
from transferability.run import config as tconfig

SOURCES = ["tiny_fashion", "tiny_fashion_short", "tiny_mnist", "random"]
LAYERS = ["pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8"]


def tiny_vgg_config() -> dict:
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny_vgg.yaml").read_text())
    config["data_dir"] = str(DATA_DIR)
    return config


def test_tiny_vgg_run_fills_the_tables(vgg_run):
    tables = vgg_run / "results" / "vgg" / "tables"
    sources = pd.read_csv(tables / "pretrain.csv")
    assert sorted(sources["source"].unique()) == sorted(SOURCES)
    assert set(sources["step"]) == {"final"}
    metrics = pd.read_csv(tables / "metrics.csv", keep_default_na=True)
    for source in SOURCES:
        got = metrics[metrics["source"] == source]
        assert set(got["layer"]) == set(LAYERS) | {"logits", "model"}  # model: the baselines
        assert got[got["metric"] == "rsa"]["value"].notna().all()
    finetune = pd.read_csv(tables / "finetune.csv")
    assert sorted(finetune["source"].unique()) == sorted(SOURCES + ["scratch"])
    random = finetune[(finetune["source"] == "random") & (finetune["seed"] == 0)]
    assert list(random["finetune_step"].astype(str)) == ["0", "3b", "10b", "30b"]
    # the baselines (random weights, scratch) run over baseline_seeds, loaded sources once
    seeds = finetune.groupby("source")["seed"].unique().apply(sorted).to_dict()
    assert seeds == {s: [0, 1] if s in ("random", "scratch") else [0] for s in seeds}
    assert sorted(sources[sources["source"] == "random"]["seed"]) == [0, 1]
    random_models = [vgg_run / f"results/vgg/checkpoints/random/seed{s}/final.pt" for s in (0, 1)]
    first, second = (load_checkpoint(path)[0] for path in random_models)
    assert not torch.equal(first["features.0.weight"], second["features.0.weight"])
    logauc = pd.read_csv(tables / "logauc.csv")
    assert len(logauc) == len(SOURCES) + 1 + 2 and logauc["logauc"].between(0, 1).all()
    # weights pre-trained on the target's own dataset beat frozen random features
    final = logauc.groupby("source")["final_accuracy"].mean()
    assert final["tiny_fashion"] > final["random"], logauc
    correlations = pd.read_csv(tables / "correlations.csv")
    everything = correlations[correlations["grouping"] == "all"]
    defined = everything[everything["n"] > 0]
    # random weights have no task of their own: no source accuracy for that source
    accuracy = defined["metric"] == "baseline_source_accuracy"
    assert (defined.loc[accuracy, "n"] == len(SOURCES) - 1).all() and accuracy.any()
    assert (defined.loc[~accuracy, "n"] == len(SOURCES)).all()  # scratch: not a model
    # 30 extraction images: ETran (needs n >= 200) and NLEEP (5 K = 50 mixture components) are
    # NaN for every model, with the reason
    undefined = everything[everything["n"] == 0]
    assert (
        set(undefined["metric"]) <= {"etran", "nleep"} and undefined["note"].str.len().gt(0).all()
    )
    assert {"etran", "nleep"} <= set(metrics.loc[metrics["value"].isna(), "metric"])
    assert everything["rho"].notna().any()
    for figure in ("metrics_per_layer", "finetune_curves", "finetune_delta", "correlations"):
        assert (vgg_run / "results" / "vgg" / "figures" / f"{figure}.png").stat().st_size > 0


def test_weights_made_by_the_workflow_load_like_external_files(vgg_run):
    results = vgg_run / "results" / "vgg"
    weights = torch.load(results / "weights" / "tiny_fashion.pt", weights_only=True)
    state, meta = load_checkpoint(results / "checkpoints" / "tiny_fashion" / "seed0" / "final.pt")
    assert meta["weights"] == "results/vgg/weights/tiny_fashion.pt"
    assert (meta["arch"], meta["num_classes"]) == ("vgg_tiny", 10)
    assert all(torch.equal(state[k], weights[k]) for k in weights)


def test_activation_files_match_the_cnn_layout(vgg_run):
    folder = vgg_run / "results" / "vgg" / "activations" / "fashion" / "random" / "seed0"
    values, labels, attrs = read_activations(folder / "stepfinal" / "pool1.h5")
    subset = pd.read_csv(vgg_run / "results" / "vgg" / "subsets" / "fashion.csv")
    assert values.shape == (len(subset), 8 * 16 * 16)
    assert list(labels) == list(subset["label"])
    assert tuple(read_attrs(folder / "stepfinal" / "pool1.h5")["layer_shape"]) == (8, 16, 16)
    assert attrs["layer"] == "pool1" and attrs["step"] == "final"
    logits, _, _ = read_activations(folder / "stepfinal" / "logits.h5")
    assert logits.shape == (len(subset), 10)


def test_split_index_is_identical_across_runs(vgg_run, tmp_path):
    index = vgg_run / "results" / "vgg" / "splits" / "fashion.csv"
    first = index.read_bytes()
    copy = tmp_path / "run"
    shutil.copytree(vgg_run, copy, symlinks=True)
    snakemake(copy, tiny_vgg_config(), "--cores", "1", "--forcerun", "image_split",
              "--until", "image_split")  # fmt: skip
    assert (copy / "results" / "vgg" / "splits" / "fashion.csv").read_bytes() == first
    table = pd.read_csv(index)
    assert set(table["split"]) == {"train", "test"}
    assert table.groupby("class")["split"].apply(lambda s: (s == "test").sum()).eq(4).all()


def test_nothing_to_do_after_a_complete_vgg_run(vgg_run):
    assert planned_jobs(vgg_run, tiny_vgg_config()) == []


def test_adding_a_vgg_source_plans_only_its_jobs(vgg_run):
    config = tiny_vgg_config()
    config["tracks"]["vgg"]["sources"]["random2"] = {"arch": "vgg_tiny", "weights": "random"}
    jobs = planned_jobs(vgg_run, config)
    per_model = [(rule, wc.get("source")) for rule, wc in jobs if "source" in wc]
    assert {source for _, source in per_model} == {"random2"}
    assert {rule for rule, _ in per_model} == {
        "image_source", "vgg_extract", "image_metrics", "image_finetune"
    }  # fmt: skip


def test_paper_vgg_config_validates_and_dry_runs_naming_missing_files(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper_vgg.yaml").read_text())
    tconfig.check(config)
    result = snakemake(tmp_path, config, "-n")
    assert "missing, provide it before running: tracks.vgg.sources.places365.weights" in (
        result.stderr
    )
    assert "tracks.vgg.targets.malaria.root: data/malaria" in result.stderr
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    # 6 loaded sources + random over 3 baseline seeds; 3 targets; scratch over 3 seeds too
    assert counts["image_source"] == "9" and counts["image_split"] == "3"
    assert int(counts["vgg_extract"]) + int(counts["vgg_extract_encoder"]) == 3 * 9
    assert counts["image_metrics"] == "27" and counts["image_finetune"] == str(3 * (9 + 3))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda v: v["sources"]["random"].update(pretrain_on="mnist"), "exactly one of"),
        (lambda v: v["sources"]["random"].update(arch="resnet9000"), "unknown architecture"),
        (
            lambda v: v["sources"].update(scratch={"arch": "vgg_tiny", "weights": "random"}),
            "names the from-scratch baseline",
        ),  # fmt: skip
        (lambda v: v["targets"]["fashion"].update(make_from="svhn"), "unknown dataset 'svhn'"),
        (lambda v: v["layers"].append("conv5"), "layers"),
        (
            lambda v: v["targets"]["fashion"].update(checkpoints=["0", "3b", "3b"]),
            "tracks.vgg.targets.fashion.checkpoints: duplicate labels",
        ),
        (lambda v: v["sources"]["random"].update(transforms={"crop": 0}), "crop"),
        (
            lambda v: v["sources"]["random"].update(arch="timm/resnet5O"),
            "tracks.vgg.sources.random.arch: unknown timm model 'timm/resnet5O'; close names: ",
        ),
    ],
)
def test_bad_vgg_config_stops_before_any_job(tmp_path, change, expected):
    config = tiny_vgg_config()
    change(config["tracks"]["vgg"])
    result = snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_zoo_config_plans_its_protocol(tmp_path):
    """config/zoo.yaml (merged into config.yaml, as `--configfile` does): seven architectures
    trained here, four (images, policy) targets, the zoo track only."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    zoo = yaml.safe_load((REPO / "config" / "zoo.yaml").read_text())
    config["run_tracks"] = zoo["run_tracks"]
    config["tracks"]["zoo"] = zoo["tracks"]["zoo"]
    config["data_dir"] = str(DATA_DIR)
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert counts["image_weights"] == "7" and counts["image_source"] == "7"
    assert counts["zoo_extract"] == str(4 * 7) and counts["image_metrics"] == str(4 * 7)
    assert counts["image_finetune"] == str(4 * (7 + 1))  # + the from-scratch resnet18
    assert counts["image_folder"] == "2"  # the policies of one target share its images
    assert not any(rule in counts for rule in ("pretrain", "extract", "finetune"))
    policies = {t: s["policy"] for t, s in zoo["tracks"]["zoo"]["targets"].items()}
    assert sorted(set(policies.values())) == ["full", "linear_probe"]


def test_a_torchvision_layout_target_runs_end_to_end(tmp_path):
    """A target in torchvision's own CIFAR-10 layout (`format: cifar10`: pickled batches read
    with the restricted unpickler) through split, extraction, metrics and fine-tuning."""
    import numpy as np
    from test_target_formats import CIFAR_SPECS, dump_cifar

    folder, batches, meta, names_key, labels_key, classes = CIFAR_SPECS["cifar10"]
    root = tmp_path / "cifar"
    (root / folder).mkdir(parents=True)
    dump_cifar(root / folder / meta, {names_key: [f"c{k}" for k in range(classes)]}, "py2")
    rng = np.random.default_rng(0)
    for name in batches:  # 3 images of every class per batch file: 18 per class
        data = rng.integers(0, 256, (3 * classes, 3072), dtype=np.uint8)
        labels = [k for k in range(classes) for _ in range(3)]
        dump_cifar(root / folder / name, {"data": data, labels_key: labels}, "py2")
    config = tiny_vgg_config()
    vgg = config["tracks"]["vgg"]
    vgg["sources"] = {"random": {"arch": "vgg_tiny", "weights": "random"}}
    vgg["targets"] = {"cifar": {"root": str(root), "format": "cifar10", "batch_size": 16}}
    vgg["baseline_seeds"], vgg["scratch"] = None, None
    vgg["metrics"] = ["rsa", "logme", "leep"]
    (tmp_path / "run").mkdir()
    snakemake(tmp_path / "run", config, "--cores", "2")
    tables = tmp_path / "run" / "results" / "vgg" / "tables"
    split = pd.read_csv(tmp_path / "run" / "results" / "vgg" / "splits" / "cifar.csv")
    assert split["path"].str.fullmatch(r"(data|test)_batch(_\d)?#\d+").all()
    assert split.groupby("class").size().eq(18).all() and split["class"].nunique() == classes
    metrics = pd.read_csv(tables / "metrics.csv")
    measured = metrics[~metrics["metric"].str.startswith("baseline_")]
    assert set(measured["metric"]) == {"rsa", "logme", "leep"}
    assert measured["value"].notna().all()
    finetune = pd.read_csv(tables / "finetune.csv")
    assert finetune["test_accuracy"].between(0, 1).all() and len(finetune) == 4


def test_timm_sources_run_end_to_end(tmp_path):
    """Two timm sources in an image track: one from a .safetensors file, one pre-trained here
    (`pretrain_on`), through weights, extraction, metrics and fine-tuning (`linear_probe`)."""
    import h5py
    from safetensors.torch import save_file

    from transferability import models as families

    arch = "timm/mobilevit_xxs.cvnets_in1k"
    model = families.build_model(families.ModelSpec.create(arch, 10, image_size=32), seed=0)
    weights = tmp_path / "mobilevit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    config = tiny_vgg_config()
    vgg = config["tracks"]["vgg"]
    vgg["sources"] = {
        "mvit": {"arch": arch, "weights": str(weights), "image_size": 32},
        "convnext": {"arch": "timm/convnext_atto.d2_in1k", "pretrain_on": "fashion_mnist",
                     "pretrain_steps": 20, "image_size": 32},
    }  # fmt: skip
    vgg["targets"]["fashion"]["policy"] = "linear_probe"
    vgg["baseline_seeds"], vgg["scratch"] = None, None
    vgg["layers"], vgg["metrics"] = ["penultimate"], ["rsa", "logme", "leep"]
    del vgg["transforms"]  # each source's image_size decides
    (tmp_path / "run").mkdir()
    snakemake(tmp_path / "run", config, "--cores", "2")
    results = tmp_path / "run" / "results" / "vgg"
    metrics = pd.read_csv(results / "tables" / "metrics.csv")
    measured = metrics[metrics["metric"].isin(["rsa", "logme", "leep"])]
    assert sorted(measured["source"].unique()) == ["convnext", "mvit"]
    assert measured["value"].notna().all()
    with h5py.File(results / "activations/fashion/mvit/seed0/stepfinal/penultimate.h5") as f:
        assert f["activations"].shape[1:] == (320,)  # MobileViT-XXS's pooled features
    finetune = pd.read_csv(results / "tables" / "finetune.csv")
    assert sorted(finetune["source"].unique()) == ["convnext", "mvit"]
    assert finetune["test_accuracy"].notna().all()
    _, meta = load_checkpoint(results / "checkpoints/convnext/seed0/final.pt")
    assert meta["arch"] == "timm/convnext_atto.d2_in1k" and meta["image_size"] == 32
