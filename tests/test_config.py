import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transferability.run import config as tconfig

REPO = Path(__file__).resolve().parents[1]


def test_snakefile_imports_do_not_load_torch():
    """The Snakefile imports transferability.run.config (SPEC §9: no torch at parse time)."""
    code = (
        "import sys; import transferability.run.config, transferability.data.arrays; "
        "import transferability.metrics; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _validated(path: Path | str) -> dict:
    """A config as the Snakefile sees it: schema-validated, defaults filled."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / path).read_text())
    validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))
    return cfg


@pytest.mark.parametrize("name", ["config.yaml", "config/paper.yaml", "tests/config/tiny.yaml"])
def test_shipped_configs_pass_the_semantic_checks(name):
    tconfig.check(_validated(name))


def test_paper_config_merged_into_the_demo_keeps_the_papers_study_protocols():
    """`--configfile config/paper.yaml` merges into config.yaml: none of the demo's scaled study
    settings (QUANTA on seed 0, tested before/after only; layer transfer to 100b) may leak."""
    from snakemake.utils import update_config, validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(cfg, yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))
    quanta = tconfig.quanta_protocol(cfg, "cnn")
    assert quanta["eval_every"] == 1 and quanta["epochs"] == 60 and quanta["lr"] == 1.0e-4
    assert tconfig.study_seeds(cfg, "cnn", "quanta") == cfg["tracks"]["cnn"]["seeds"]
    assert tconfig.layer_transfer_protocol(cfg, "cnn", "mnist")["checkpoints"][-1] == "10e"
    assert len(tconfig.family_tasks(cfg, "cnn", "imbalanced")) == 200


def test_protocol_resolution_applies_source_overrides():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert tconfig.pretrain_protocol(cfg, "cnn", "mnist_split1")["batch_size"] == 32
    assert tconfig.pretrain_protocol(cfg, "cnn", "mnist")["batch_size"] == 64
    assert tconfig.source(cfg, "cnn", "mnist_noise")["dataset"] == "mnist_noise"
    assert tconfig.checkpoint_labels(cfg, "cnn", "pretrain")[0] == "0"
    with pytest.raises(tconfig.ConfigError, match="unknown target 'svhn'.*known: "):
        tconfig.target(cfg, "cnn", "svhn")


def test_checkpoint_zero_is_required():
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["tracks"]["cnn"]["pretrain"]["checkpoints"] = ["1b", "3b"]
    with pytest.raises(tconfig.ConfigError, match="must include '0'"):
        tconfig.check(cfg)


def test_step_zero_is_the_untrained_model_of_seed_and_classes():
    """Every source with C classes shares one untrained model per seed: its checkpoint (and
    its activations, metrics and curves) live under initial/classes<C>, not the source's."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    path = tconfig.checkpoint_path
    assert (
        path(cfg, "cnn", "mnist", 1, "0")
        == "results/cnn/checkpoints/initial/classes10/seed1/step0.pt"
    )
    assert path(cfg, "cnn", "mnist_noise", 1, "0") == path(cfg, "cnn", "fashion_mnist", 1, "0")
    assert path(cfg, "cnn", "mnist_split2", 0, "0").endswith("initial/classes5/seed0/step0.pt")
    assert path(cfg, "cnn", "mnist", 1, "3e") == "results/cnn/checkpoints/mnist/seed1/step3e.pt"
    assert tconfig.run_folder(cfg, "cnn", "mnist_split1", "10b") == "mnist_split1"
    cfg["tracks"]["cnn"]["sources"]["mnist"] = {"dataset": "mnist_typo"}
    with pytest.raises(
        tconfig.ConfigError, match=r"sources.mnist.dataset: unknown dataset 'mnist_typo'"
    ):
        tconfig.run_folder(cfg, "cnn", "mnist", "0")


def test_a_source_may_not_take_the_untrained_models_folder_name():
    cfg = _validated("tests/config/tiny.yaml")
    cfg["tracks"]["cnn"]["sources"]["initial"] = {"dataset": "mnist"}
    with pytest.raises(
        tconfig.ConfigError, match=r"tracks.cnn.sources.initial: the name is reserved"
    ):
        tconfig.check(cfg)


def test_config_checkpoints_step_zero_names_the_shared_file(tmp_path):
    """`transferability rank --config ... --step 0` finds the untrained model's checkpoint."""
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "tests/config/tiny.yaml").read_text())
    with pytest.raises(tconfig.ConfigError, match=r"initial/classes10/seed0/step0.pt"):
        tconfig.config_checkpoints(config, ["mnist"], step="0", workdir=tmp_path)
    shared = tmp_path / "results/cnn/checkpoints/initial/classes10/seed0/step0.pt"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(b"")
    found = tconfig.config_checkpoints(
        config, ["mnist", "fashion_mnist"], step="0", workdir=tmp_path
    )
    assert found.paths == (shared, shared)


def _tiny_with_studies() -> dict:
    return _validated("tests/config/tiny.yaml")


@pytest.mark.parametrize(
    "study, key, value, expected",
    [
        (
            "quanta",
            "sources",
            ["mnist", "svhn"],
            "studies.quanta.sources: unknown name(s) ['svhn']",
        ),
        ("quanta", "pretrain_step", "99b", "studies.quanta.pretrain_step: '99b' is not a pre-"),
        ("quanta", "score_lambda_init", 0.75, "score_lambda_init: 0.75 is not among lambda_inits"),
        ("layer_transfer", "targets", ["cifar"], "layer_transfer.targets: unknown name(s)"),
        ("random_tasks", "seeds", [7], "random_tasks.seeds: unknown name(s) [7]"),
        ("random_tasks", "layers", ["fc9"], "random_tasks.layers: unknown layer(s) ['fc9']"),
        (
            "random_tasks",
            "metrics",
            ["leep", "c56"],
            "random_tasks.metrics: unknown name(s) ['c56']",
        ),
        ("random_tasks", "levels_metric", "rsa", "levels_metric: 'rsa' is not computed"),
    ],
)
def test_bad_study_settings_name_the_key(study, key, value, expected):
    cfg = _tiny_with_studies()
    cfg["tracks"]["cnn"]["studies"][study][key] = value
    with pytest.raises(tconfig.ConfigError) as err:
        tconfig.check(cfg)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"max_classes": 11}, "families.tiny: max_classes (11) must be <= num_classes (10)"),
        ({"min_classes": 4, "max_classes": 3}, "min_classes (4) must be <= max_classes (3)"),
        ({"per_class": 2, "imbalance_ratio": 5}, "the smallest class would have no examples"),
        ({"dataset": "cifar100"}, "families.tiny.dataset: unknown dataset 'cifar100'"),
    ],
)
def test_infeasible_task_families_name_the_family(change, expected):
    cfg = _tiny_with_studies()
    cfg["tracks"]["cnn"]["studies"]["random_tasks"]["families"]["tiny"].update(change)
    with pytest.raises(tconfig.ConfigError) as err:
        tconfig.check(cfg)
    assert expected in str(err.value)


def test_study_resolution():
    cfg = _validated("config.yaml")
    assert tconfig.study_pretrain_step(cfg, "cnn", "quanta") == "3e"  # the last checkpoint
    assert tconfig.study_sources(cfg, "cnn", "quanta") == list(cfg["tracks"]["cnn"]["sources"])
    assert tconfig.study_sources(cfg, "cnn", "layer_transfer") == ["mnist", "fashion_mnist"]
    assert tconfig.base_role(cfg, "cnn", "mnist", "mnist") == "B"
    assert tconfig.base_role(cfg, "cnn", "fashion_mnist", "mnist") == "A"
    # the demo's layer transfer trains like the track's fine-tuning, tested before and after
    track_protocol = tconfig.finetune_protocol(cfg, "cnn", "mnist")
    assert tconfig.layer_transfer_protocol(cfg, "cnn", "mnist") == {
        **track_protocol,
        "checkpoints": ["0", "100b"],
    }
    # without its own protocol it trains like the track's fine-tuning
    del cfg["tracks"]["cnn"]["studies"]["layer_transfer"]["finetune"]
    assert tconfig.layer_transfer_protocol(cfg, "cnn", "mnist") == track_protocol
    assert tconfig.study_seeds(cfg, "cnn", "random_tasks") == [0]
    assert tconfig.study_seeds(cfg, "cnn", "layer_transfer") == [0]
    assert tconfig.study_seeds(cfg, "cnn", "quanta") == [0]
    assert "c56" not in tconfig.random_tasks_metrics(cfg, "cnn")
    assert tconfig.levels_layer(cfg, "cnn") == "logits"
    tasks = tconfig.family_tasks(cfg, "cnn", "imbalanced")
    assert len(tasks) == 6 and all(sorted(t.train_per_class) == [30, 150] for t in tasks)
    assert tconfig.family_tasks(cfg, "cnn", "imbalanced") == tasks  # drawn from the seed
    assert tconfig.family_setting(cfg, "cnn", "small") == "small, balanced"
    # every figure a study draws is registered with the plotting code, reading its study's tables
    from transferability.report.plots_studies import STUDY_FIGURES

    for study, figures in tconfig.STUDY_FIGURES.items():
        for figure in figures:
            assert set(STUDY_FIGURES[figure][1]) <= set(tconfig.STUDY_TABLES[study]), figure
    assert sorted(STUDY_FIGURES) == sorted(f for fs in tconfig.STUDY_FIGURES.values() for f in fs)
    # and the track's figures, which the Snakefile names without importing the plotting code
    from transferability.report.plots import FIGURES

    assert sorted(FIGURES) == sorted(tconfig.TRACK_FIGURES)
    assert set(tconfig.SINGLE_CHECKPOINT_SKIPS) <= set(FIGURES)


def test_schema_rejects_a_quanta_layer_at_the_output(tmp_path):
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["tracks"]["cnn"]["studies"]["quanta"]["layers"] = ["fc2"]
    with pytest.raises(Exception, match="fc2"):
        validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))


def test_image_transforms_of_timm_and_torchvision_sources():
    """A timm source without sizes of its own or of its track takes its pretrained config's
    (none given here); a torchvision source takes 256 -> 224; the track's and the source's own
    sizes win, and image_size means resize = crop."""
    cfg = _validated("tests/config/tiny_vgg.yaml")
    vgg = cfg["tracks"]["vgg"]
    vgg["sources"]["t"] = {"arch": "timm/convnext_atto.d2_in1k", "weights": "random"}
    vgg["sources"]["t32"] = {"arch": "timm/convnext_atto.d2_in1k", "weights": "random",
                             "image_size": 32}  # fmt: skip
    vgg["sources"]["r"] = {"arch": "resnet18", "weights": "random"}
    assert tconfig.image_transforms(cfg, "vgg", "t") == {"resize": 32, "crop": 32}  # the track's
    del vgg["transforms"]
    assert tconfig.image_transforms(cfg, "vgg", "t") == {}
    assert tconfig.image_transforms(cfg, "vgg", "r") == {"resize": 256, "crop": 224}
    assert tconfig.image_transforms(cfg, "vgg", "t32") == {"resize": 32, "crop": 32}
    vgg["sources"]["t"]["transforms"] = {"crop": 40}
    assert tconfig.image_transforms(cfg, "vgg", "t") == {"crop": 40}
    vgg["scratch"] = "timm/convnext_atto.d2_in1k"
    assert tconfig.image_transforms(cfg, "vgg", "scratch") == {}
