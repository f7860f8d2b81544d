"""``transferability rank`` (SPEC §12): a CNN trained on the target ranks above a random one, the
values are the workflow's own (same extraction, same metric rows), and every user error is one
clear line on stderr with exit status 2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from transferability import cli
from transferability.artifacts import read_activations, save_checkpoint
from transferability.data.arrays import balanced_subset, load_dataset
from transferability.data.folders import dataset_folder, write_png_folder
from transferability.jobs.extract import extract as cnn_extract
from transferability.jobs.extract import extract_images as vgg_extract
from transferability.jobs.metric_jobs import metric_table
from transferability.jobs.sources import load_source
from transferability.jobs.targets import target_subset
from transferability.models.thesis_cnn import build_cnn
from transferability.rank import RankError, load_candidate, load_target, rank_models
from transferability.rank import extract as rank_extract
from transferability.training.loop import to_input

DATA_DIR = Path(__file__).resolve().parents[1] / "resources" / "datasets"
FASHION = DATA_DIR / "fashion_mnist" / "data.npz"
TRAINED, RANDOM = "fashion_mnist seed0 step150b", "fashion_mnist seed1 step0"


def _meta(seed: int, step: str) -> dict:
    return {"source": "fashion_mnist", "seed": seed, "step": step, "num_classes": 10}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A CNN trained 150 Adam steps on 2 000 FashionMNIST images, and a random one."""
    out = tmp_path_factory.mktemp("models")
    ds = load_dataset(FASHION)
    index = balanced_subset(ds.train_y, 200, seed=0)
    x, y = torch.from_numpy(ds.train_x[index]), torch.from_numpy(ds.train_y[index])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads are 5x slower when the 2 cores are busy elsewhere
    torch.manual_seed(0)  # dropout
    model = build_cnn(10, 0).to(memory_format=torch.channels_last).train()  # 1.6x faster
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        batch = torch.randint(len(y), (64,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(to_input(x[batch])), y[batch]).backward()
        optimizer.step()
    torch.set_num_threads(threads)
    paths = {"trained": out / "trained.pt", "random": out / "random.pt"}
    save_checkpoint(paths["trained"], model.state_dict(), _meta(0, "150b"))
    save_checkpoint(paths["random"], build_cnn(10, 1).state_dict(), _meta(1, "0"))
    return paths


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A 28×28 image folder: 6 images of each of 3 FashionMNIST classes."""
    root = tmp_path_factory.mktemp("folder") / "clothes"
    dataset_folder(FASHION, root, per_class=6, size=None, classes=[0, 1, 7])
    return root


def rank_cli(*args: str) -> int:
    return cli.main(["rank", "--data-dir", str(DATA_DIR), "--threads", "1", *map(str, args)])


def test_trained_model_ranks_above_random_by_rsa_and_leep(models):
    for by in ("rsa", "leep"):
        result = rank_models(
            [models["random"], models["trained"]],  # the worse one first: the order is earned
            "fashion_mnist",
            metrics=["rsa", "logme", "leep", "nce", "hscore_reg"],
            by=by,
            per_class=20,
            data_dir=DATA_DIR,
            threads=1,
        )
        table = result.table
        assert list(table.columns) == ["rank", "model", "rsa", "logme", "leep", "nce", "hscore_reg"]
        assert table["model"].tolist() == [TRAINED, RANDOM] and table["rank"].tolist() == [1, 2]
        assert table.loc[0, by] > table.loc[1, by]
        assert result.target.n == 200 and result.by == by
        assert set(result.rows["layer"]) == {"fc1", "logits"}


def test_cli_prints_ranked_table_and_writes_csv(models, tmp_path, capsys):
    csv = tmp_path / "out" / "rank.csv"
    rc = rank_cli(
        "--target", "fashion_mnist", "--model", models["random"], "--model", models["trained"],
        "--name", "random", "--name", "trained", "--per-class", 20, "--csv", csv,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[header].split() == ["rank", "model", "rsa", "logme", "leep", "nce", "hscore_reg"]
    assert lines[header + 1].split() == ["↑"] * 5
    assert lines[header + 2].split()[:2] == ["1", "trained"]
    assert lines[header + 3].split()[:2] == ["2", "random"]
    assert "ranked by rsa (higher is better)" in out and "fashion_mnist" in out
    table = pd.read_csv(csv)
    assert list(table.columns) == ["rank", "model", "rsa", "logme", "leep", "nce", "hscore_reg"]
    assert table["model"].tolist() == ["trained", "random"]
    # unrounded values, identical to the library's
    expected = rank_models(
        [models["trained"]], "fashion_mnist", per_class=20, data_dir=DATA_DIR, threads=1
    ).table
    np.testing.assert_allclose(table.loc[0, "rsa"], expected.loc[0, "rsa"], rtol=1e-12)
    assert f"{table.loc[0, 'rsa']:.4f}" in lines[header + 2]

    assert rank_cli(
        "--target", "fashion_mnist", "--model", models["trained"], "--model", models["random"],
        "--per-class", 20, "--metrics", "ss,leep",
    ) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("rank"))
    assert out[header + 1].split() == ["↓", "↑"]  # ss: lower is better
    assert out[header + 2].split()[:2] == ["1", "fashion_mnist"]


def test_values_equal_workflow_extraction_and_metric_table(models, tmp_path):
    """Same subset, same activations (the workflow's own extract job), same metric rows."""
    metrics = ["id", "ss", "rsa", "hscore", "hscore_reg", "logme", "s4", "s5", "leep", "nce"]
    subset = tmp_path / "subset.csv"
    target_subset(FASHION, subset, per_class=20, seed=3)
    acts, logits = tmp_path / "fc1.h5", tmp_path / "logits.h5"
    cnn_extract({"150b": models["trained"]}, FASHION, subset, {("150b", "fc1"): acts},
                {"150b": logits}, target="fashion_mnist")  # fmt: skip
    expected = metric_table([acts], metrics, logits)

    result = rank_models(
        [models["trained"]], "fashion_mnist", metrics=metrics, per_class=20, seed=3,
        data_dir=DATA_DIR, threads=1,
    )  # fmt: skip
    got = result.rows.drop(columns=["model", "checkpoint"])
    assert got[["layer", "metric", "note"]].equals(expected[["layer", "metric", "note"]])
    np.testing.assert_allclose(got["value"], expected["value"], rtol=1e-9, atol=1e-12)

    target = load_target("fashion_mnist", per_class=20, seed=3, data_dir=DATA_DIR)
    assert np.array_equal(target.sample_index, pd.read_csv(subset)["sample_index"])
    from transferability.rank import load_candidate

    mine, head = rank_extract(load_candidate(models["trained"]), target, "fc1")
    workflow, labels, _ = read_activations(acts)
    assert np.array_equal(mine.reshape(len(mine), -1), workflow)
    assert np.array_equal(labels, target.labels)
    assert np.array_equal(head, read_activations(logits)[0])


def test_image_folder_with_cnn_and_vgg_uses_the_vgg_tracks_extraction(models, folder, tmp_path):
    vgg = tmp_path / "vgg_tiny.pt"
    load_source("random", vgg, source="tiny", seed=0, arch="vgg_tiny")
    result = rank_models(
        [vgg, models["trained"]], folder, metrics=["rsa", "leep"], per_class=4, threads=1
    )
    assert result.table["model"].tolist() == [TRAINED, "tiny seed0 stepfinal"]
    layers = result.rows.query("metric == 'rsa'").set_index("model")["layer"]
    assert layers.to_dict() == {"tiny seed0 stepfinal": "fc7", TRAINED: "fc1"}
    # the VGG track's own extraction job on the same rows gives the same activations
    target = result.target
    subset = tmp_path / "subset.csv"  # as the VGG track writes it: a split index + sample_index
    classes = [target.classes[label] for label in target.labels]
    pd.DataFrame(
        {"sample_index": target.sample_index, "path": target.paths, "label": target.labels,
         "class": classes, "split": "test"}
    ).to_csv(subset, index=False)  # fmt: skip
    acts = tmp_path / "fc7.h5"
    vgg_extract(vgg, folder, subset, {"fc7": acts}, None, target="clothes", resize=32, crop=32)
    from transferability.rank import load_candidate

    mine, _ = rank_extract(load_candidate(vgg), target, "fc7")
    np.testing.assert_array_equal(mine, read_activations(acts)[0])


def test_nan_metric_ranks_last_with_its_note(models, tmp_path, capsys):
    dead = build_cnn(10, 2)
    with torch.no_grad():  # fc1 all zero: constant features, RSA undefined
        dead.fc1.weight.zero_()
        dead.fc1.bias.fill_(-1.0)
    path = tmp_path / "dead.pt"
    save_checkpoint(path, dead.state_dict(), _meta(2, "0"))
    assert rank_cli(
        "--target", "fashion_mnist", "--model", path, "--model", models["random"],
        "--per-class", 5, "--metrics", "rsa",
    ) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [r[-1] for r in rows] == [rows[0][-1], "nan"] and rows[0][-1] != "nan"
    assert "notes:" in out and "fashion_mnist seed2 step0: rsa:" in out


def test_config_sources_resolve_to_the_workflows_checkpoints(models, tmp_path, monkeypatch, capsys):
    config = {
        "data_dir": str(DATA_DIR),
        "tracks": {"cnn": {"sources": {"mnist": None, "fashion_mnist": None}, "seeds": [4, 5],
                           "pretrain": {"checkpoints": ["0", "10b", "3b"]},
                           "extract": {"per_class": 5, "seed": 0}}},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "results/cnn/checkpoints/fashion_mnist/seed4"
    run.mkdir(parents=True)
    shutil.copyfile(models["trained"], run / "step10b.pt")
    argv = ["--target", "fashion_mnist", "--config", "config.yaml", "--metrics", "rsa"]
    assert rank_cli(*argv, "--source", "fashion_mnist", "--model", models["random"]) == 0
    out = capsys.readouterr().out
    assert "5 per class" in out and TRAINED in out and RANDOM in out

    assert rank_cli(*argv) == 2  # mnist's checkpoint was never made
    err = capsys.readouterr().err
    assert "results/cnn/checkpoints/mnist/seed4/step10b.pt" in err
    assert "snakemake --cores all --configfile config.yaml" in err


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + str(_Evil.marker),))


def test_user_errors_are_one_clear_line(models, folder, tmp_path, capsys):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(models["trained"].read_bytes()[:5000])
    _Evil.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": {}, "payload": _Evil()}, evil, pickle_protocol=2)
    big = tmp_path / "big"
    images = np.zeros((6, 32, 32), dtype=np.uint8)
    write_png_folder(big, images, np.repeat([0, 1], 3), ["a", "b"])
    trained = str(models["trained"])
    cases = [
        (["--target", folder, "--model", tmp_path / "none.pt"], ["none.pt", "does not exist"]),
        (["--target", folder, "--model", truncated], ["truncated.pt", "truncated"]),
        (["--target", folder, "--model", evil], ["evil.pt", "pickled code", "weights_only"]),
        (["--target", big, "--model", trained, "--per-class", 3], ["32x32", "28x28", "big/a/"]),
        (["--target", folder, "--model", trained, "--per-class", 7],
         ["need 7 images per class", "'t_shirt': 6"]),
        (["--target", folder, "--model", trained, "--metrics", "rsa,bogus"],
         ["unknown metric(s) 'bogus'", "known:", "logme"]),
        (["--target", "fashionmnist", "--model", trained], ["'fashionmnist'", "fashion_mnist"]),
        (["--target", folder, "--model", trained, "--layer", "fc7"], ["no layer 'fc7'", "fc1"]),
        (["--target", folder, "--model", trained, "--name", "a", "--name", "b"], ["--name"]),
    ]  # fmt: skip
    for args, needles in cases:
        assert rank_cli(*args) == 2, args
        captured = capsys.readouterr()
        assert captured.out == ""
        err = captured.err.strip()
        assert err.startswith("transferability rank: error: ") and "\n" not in err, err
        assert "Traceback" not in err
        for needle in needles:
            assert needle in err, (needle, err)
    assert not _Evil.marker.exists()
    with pytest.raises(RankError, match="need 2000 test images per class"):
        load_target("fashion_mnist", per_class=2000, data_dir=DATA_DIR)


def test_torchvision_weight_files_rank_on_a_torchvision_layout(tmp_path, capsys):
    """Plain weight files of two torchvision architectures (`--weights` + `--arch`), one of them
    saved from torchvision itself, ranked on a CIFAR-10 root in torchvision's own layout."""
    import torchvision
    from test_target_formats import CIFAR_SPECS, dump_cifar

    folder, batches, meta, names_key, labels_key, classes = CIFAR_SPECS["cifar10"]
    (tmp_path / "cifar" / folder).mkdir(parents=True)
    dump_cifar(tmp_path / "cifar" / folder / meta, {names_key: list("abcdefghij")}, "py2")
    rng = np.random.default_rng(0)
    for name in batches:  # two images of every class in every batch file
        data = rng.integers(0, 256, (2 * classes, 3072), dtype=np.uint8)
        labels = [c for c in range(classes) for _ in range(2)]
        dump_cifar(tmp_path / "cifar" / folder / name, {"data": data, labels_key: labels}, "py2")
    resnet = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), resnet)
    mobile = tmp_path / "mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=4).state_dict(), mobile)
    csv = tmp_path / "ranking.csv"
    status = rank_cli("--target", tmp_path / "cifar", "--target-format", "cifar10",
                      "--per-class", 2, "--crop", 32, "--resize", 32, "--metrics", "logme,leep",
                      "--weights", resnet, "--arch", "resnet18", "--weights", mobile,
                      "--arch", "mobilenet_v3_small", "--csv", csv)  # fmt: skip
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(csv)
    assert sorted(table["model"]) == ["mobilenet.pt", "resnet18.pt"]
    assert table[["logme", "leep"]].notna().all().all()
    rows = rank_models(
        [load_candidate(resnet, arch="resnet18")],
        load_target(tmp_path / "cifar", per_class=2, format="cifar10"),
        metrics=["logme"],
        resize=32,
        crop=32,
    ).rows
    assert set(rows["layer"]) == {"penultimate"}  # the default layer of a torchvision model


def test_timm_safetensors_files_rank(tmp_path, capsys):
    """`--weights FILE.safetensors --arch timm/NAME`: two timm models from safetensors files,
    ranked on FashionMNIST; the images get each model's own statistics (MobileViT's pretrained
    config takes [0, 1] inputs, not ImageNet-normalised ones)."""
    from safetensors.torch import save_file

    from transferability import models as families

    paths = {}
    for arch, name in [("timm/resnet18.a1_in1k", "r18"), ("timm/mobilevit_xxs.cvnets_in1k", "mv")]:
        model = families.build_model(families.ModelSpec.create(arch, 10), seed=0)
        paths[arch] = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, paths[arch])
    csv = tmp_path / "ranking.csv"
    candidates = [a for arch, path in paths.items() for a in ("--weights", path, "--arch", arch)]
    status = rank_cli("--target", "fashion_mnist", "--per-class", 3, "--crop", 32, "--resize", 32,
                      "--metrics", "logme,leep", "--csv", csv, *candidates)  # fmt: skip
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(csv)
    assert sorted(table["model"]) == ["mv.safetensors", "r18.safetensors"]
    assert table[["logme", "leep"]].notna().all().all()
    mobilevit = load_candidate(
        paths["timm/mobilevit_xxs.cvnets_in1k"], arch="timm/mobilevit_xxs.cvnets_in1k"
    )
    target = load_target("fashion_mnist", per_class=3, data_dir=DATA_DIR)
    from transferability.rank import _batches

    own = next(_batches(mobilevit, target, resize=32, crop=32, batch_size=6))
    assert own.min() >= 0.0 and own.max() <= 1.0  # MobileViT's config: mean 0, std 1


def test_weights_errors_name_the_architecture_and_keys(tmp_path, capsys):
    import torchvision

    resnet = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), resnet)
    cases = [
        (["--weights", resnet], ["--arch"]),
        (["--weights", resnet, "--arch", "resnet50"], ["resnet50", "layer1.0.conv1.weight"]),
        (["--weights", resnet, "--arch", "resnet9000"], ["unknown architecture", "resnet18"]),
        (["--model", resnet], ["not a checkpoint of this workflow", "--arch"]),
    ]
    for args, needles in cases:
        assert rank_cli("--target", "fashion_mnist", *args) == 2, args
        err = capsys.readouterr().err
        for needle in needles:
            assert needle in err, (needle, err)


def test_cli_ranks_by_a_metric_plugin(models, capsys):
    """`--metric-plugin` registers the example k-NN metric; the trained model's fc1 separates
    FashionMNIST's classes better than a random model's."""
    example = Path(__file__).resolve().parents[1] / "examples" / "metric_plugin.py"
    rc = rank_cli(
        "--target", "fashion_mnist", "--model", models["random"], "--model", models["trained"],
        "--name", "random", "--name", "trained", "--per-class", 20,
        "--metric-plugin", example, "--metrics", "knn_loo,rsa",
    )  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    header = next(i for i, line in enumerate(out) if line.startswith("rank"))
    assert out[header].split() == ["rank", "model", "knn_loo", "rsa"]
    assert out[header + 2].split()[:2] == ["1", "trained"]
    values = [float(out[header + i].split()[2]) for i in (2, 3)]
    assert 0.1 <= values[1] < values[0] <= 1.0  # accuracies over 10 classes
