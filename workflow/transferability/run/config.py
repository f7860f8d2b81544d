"""Resolving the workflow configuration (validated by ``schemas/config.schema.yaml``) into the
settings one job needs, plus the semantic checks a JSON schema cannot express.

Imported while the Snakefile is parsed: it must not import torch (only a config with
``features`` metrics does, to measure its layers before any job).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferability.data.arrays import KNOWN_DATASETS, KNOWN_NUM_CLASSES
from transferability.models.layers import CNN_LAYERS
from transferability.run import resources as job_resources
from transferability.training.schedule import parse_label, sort_labels


class ConfigError(ValueError):
    """A configuration value that is well-typed but not usable; the message names the key."""


def track(config: dict, name: str) -> dict:
    try:
        return config["tracks"][name]
    except KeyError:
        known = sorted(config.get("tracks", {}))
        raise ConfigError(f"unknown track {name!r}; configured tracks: {known}") from None


def _member(config: dict, track_name: str, kind: str, name: str) -> dict:
    """Settings of a source or target (``kind`` = ``sources``/``targets``) with ``dataset``
    defaulting to its own name."""
    members = track(config, track_name)[kind]
    if name not in members:
        raise ConfigError(
            f"unknown {kind[:-1]} {name!r} in tracks.{track_name}.{kind}; known: {sorted(members)}"
        )
    settings = dict(members[name] or {})
    settings.setdefault("dataset", name)
    return settings


def source(config: dict, track_name: str, name: str) -> dict:
    return _member(config, track_name, "sources", name)


def target(config: dict, track_name: str, name: str) -> dict:
    return _member(config, track_name, "targets", name)


def pretrain_protocol(config: dict, track_name: str, source_name: str) -> dict[str, Any]:
    """The track's pre-training protocol with the source's own overrides (e.g. batch size)."""
    protocol = dict(track(config, track_name)["pretrain"])
    overrides = {k: v for k, v in source(config, track_name, source_name).items() if k != "dataset"}
    protocol.update(overrides)
    return protocol


def finetune_protocol(config: dict, track_name: str, target_name: str) -> dict[str, Any]:
    protocol = dict(track(config, track_name)["finetune"])
    overrides = {k: v for k, v in target(config, track_name, target_name).items() if k != "dataset"}
    protocol.update(overrides)
    return protocol


#: The untrained model's checkpoint label (SPEC §6.1: every run's step 0).
INITIAL_STEP = "0"
#: The ``source`` that the untrained model's own files record (its rows in the per-source
#: tables carry each source's name).
INITIAL_SOURCE = "initial"


#: The untrained model's folder, in place of a source's, under checkpoints/, activations/…/,
#: metrics/…/ and finetune/…/: the model depends only on (seed, number of classes), so every
#: source with C classes shares it. Its files exist once per seed (and target), and each
#: source's ``step0`` tables are copies with the source's name (SPEC §6.1's step-0 baseline).
INITIAL_MODEL = INITIAL_SOURCE + "/classes{classes}"


def run_folder(config: dict, track_name: str, source_name: str, step: str) -> str:
    """The folder of a CNN source's run at ``step``: the source's own name, or at
    :data:`INITIAL_STEP` the shared untrained model's (:data:`INITIAL_MODEL`)."""
    if step != INITIAL_STEP:
        return source_name
    dataset = source(config, track_name, source_name)["dataset"]
    if dataset not in KNOWN_NUM_CLASSES:
        raise ConfigError(
            f"tracks.{track_name}.sources.{source_name}.dataset: unknown dataset {dataset!r}; "
            f"known datasets: {list(KNOWN_DATASETS)}"
        )
    return INITIAL_MODEL.format(classes=KNOWN_NUM_CLASSES[dataset])


def checkpoint_path(config: dict, track_name: str, source_name: str, seed: int, step: str) -> str:
    """The workflow's checkpoint of a CNN source's run at ``step`` (relative to the working
    directory); at :data:`INITIAL_STEP` the shared untrained model's."""
    folder = run_folder(config, track_name, source_name, step)
    return f"results/{track_name}/checkpoints/{folder}/seed{seed}/step{step}.pt"


def checkpoint_labels(config: dict, track_name: str, stage: str) -> list[str]:
    """Checkpoint labels of ``stage`` (``pretrain`` or ``finetune``) in training order."""
    return sort_labels(list(track(config, track_name)[stage]["checkpoints"]))


#: Figures of a track drawn from its tables (transferability.report.plots.FIGURES draws them).
TRACK_FIGURES: tuple[str, ...] = (
    "leaderboard",
    "pretrain_accuracy",
    "metrics_per_layer",
    "metric_vs_logauc",
    "finetune_curves",
    "finetune_delta",
    "correlations",
    "correlations_source",
    "correlations_pretrain_step",
    "correlations_finetune_step",
)
#: Not drawn for loaded models (VGG track): no pre-training curve, and one model per source
#: (groups by source or pre-training checkpoint hold a single model).
SINGLE_CHECKPOINT_SKIPS: tuple[str, ...] = (
    "pretrain_accuracy",
    "correlations_source",
    "correlations_pretrain_step",
)


# --- studies (SPEC §6.3) ------------------------------------------------------------------------

STUDIES: tuple[str, ...] = ("quanta", "layer_transfer", "random_tasks")
#: Tables each study writes under results/<track>/tables/.
STUDY_TABLES: dict[str, tuple[str, ...]] = {
    "quanta": ("quanta", "quanta_scores"),
    "layer_transfer": ("layer_transfer",),
    "random_tasks": (
        "random_tasks",
        "random_tasks_pearson",
        "random_tasks_levels",
        "random_tasks_convergence",
    ),
}
#: Figures each study draws (transferability.report.plots_studies.STUDY_FIGURES draws them).
STUDY_FIGURES: dict[str, tuple[str, ...]] = {
    "quanta": ("quanta_lambda", "quanta_epochs"),
    "layer_transfer": ("layer_transfer",),
    "random_tasks": ("random_tasks_pearson", "random_tasks_levels", "random_tasks_convergence"),
}


def study(config: dict, track_name: str, name: str) -> dict | None:
    """A study's settings (schema defaults filled), or None when the track does not run it."""
    return track(config, track_name).get("studies", {}).get(name)


def _study_members(config: dict, track_name: str, name: str, kind: str) -> list[str]:
    chosen = (study(config, track_name, name) or {}).get(kind)
    return list(chosen) if chosen else list(track(config, track_name)[kind])


def study_sources(config: dict, track_name: str, name: str) -> list[str]:
    return _study_members(config, track_name, name, "sources")


def study_targets(config: dict, track_name: str, name: str) -> list[str]:
    return _study_members(config, track_name, name, "targets")


def study_seeds(config: dict, track_name: str, name: str) -> list[int]:
    return list(
        (study(config, track_name, name) or {}).get("seeds") or track(config, track_name)["seeds"]
    )


def study_pretrain_step(config: dict, track_name: str, name: str) -> str:
    """The pre-training checkpoint whose weights the study uses (default: the last one)."""
    step = (study(config, track_name, name) or {}).get("pretrain_step")
    return step or checkpoint_labels(config, track_name, "pretrain")[-1]


def base_role(config: dict, track_name: str, source_name: str, target_name: str) -> str:
    """Layer transfer's base: ``"B"`` for a source trained on the target's own dataset (the
    paper's modelB), ``"A"`` for any other source."""
    same = (
        source(config, track_name, source_name)["dataset"]
        == target(config, track_name, target_name)["dataset"]
    )
    return "B" if same else "A"


def layer_transfer_protocol(config: dict, track_name: str, target_name: str) -> dict[str, Any]:
    """The study's training protocol: its own ``finetune`` block, else the track's fine-tuning
    (with the target's overrides)."""
    own = (study(config, track_name, "layer_transfer") or {}).get("finetune")
    return dict(own) if own else finetune_protocol(config, track_name, target_name)


def quanta_protocol(config: dict, track_name: str) -> dict[str, Any]:
    settings = study(config, track_name, "quanta") or {}
    keys = ("epochs", "last_epochs", "lr", "batch_size", "train_samples", "eval_samples",
            "eval_every")  # fmt: skip
    return {key: settings[key] for key in keys}


def random_tasks_protocol(config: dict, track_name: str) -> dict[str, Any]:
    train = dict(study(config, track_name, "random_tasks")["train"])
    train.setdefault("reference_checkpoints", train["checkpoints"])
    return train


def random_tasks_metrics(config: dict, track_name: str) -> list[str]:
    """Metrics computed per random task: the study's list, else the track's minus aggregates
    (which compare models, not tasks) and ``features`` metrics (whole layers in memory)."""
    from transferability.metrics import METRICS

    chosen = study(config, track_name, "random_tasks").get("metrics")
    names = chosen if chosen is not None else track(config, track_name)["metrics"]
    return [m for m in names if METRICS[m].kind not in ("aggregate", "features")]


def task_family(config: dict, track_name: str, family: str) -> dict[str, Any]:
    families = study(config, track_name, "random_tasks")["families"]
    if family not in families:
        raise ConfigError(
            f"unknown task family {family!r} in tracks.{track_name}.studies.random_tasks.families; "
            f"known: {sorted(families)}"
        )
    return dict(families[family])


def family_tasks(config: dict, track_name: str, family: str) -> list:
    """The family's tasks (:class:`transferability.studies.tasks.TaskSpec`), drawn from its seed."""
    from transferability.studies.tasks import family_tasks as draw

    return draw(family, task_family(config, track_name, family))


def family_setting(config: dict, track_name: str, family: str) -> str:
    """A family's description for tables ("small, balanced"), derived when not configured."""
    settings = task_family(config, track_name, family)
    if settings.get("setting"):
        return settings["setting"]
    classes = f"{settings['min_classes']}-{settings['max_classes']} classes"
    balance = "imbalanced" if settings.get("imbalance_ratio") else "balanced"
    return f"{settings['dataset']}, {classes}, {settings['per_class']}/class, {balance}"


VGG_TRACK = "vgg"
#: Tracks of image-folder targets and sources from weight files or trained here (one model per
#: source and seed, step "final"): the thesis's VGG track and the model zoo.
IMAGE_TRACKS: tuple[str, ...] = (VGG_TRACK, "zoo")
#: Fine-tuning policy of an image track unless the track or target names one (thesis VGG rule).
DEFAULT_IMAGE_POLICY = "last_conv"


def baselines(config: dict, track_name: str) -> list[str]:
    """The track's trivial baselines (``baselines:``; null = all that apply to its kind,
    :data:`transferability.evaluation.baselines.DEFAULTS`)."""
    from transferability.evaluation.baselines import DEFAULTS

    chosen = track(config, track_name).get("baselines")
    if chosen is None:
        chosen = DEFAULTS["image" if track_name in IMAGE_TRACKS else "cnn"]
    return list(chosen)


def image_weights(config: dict, track_name: str, source_name: str) -> str:
    """Where a source's weights come from: a file path, a torchvision weight name, "random",
    or (``pretrain_on``) the file the workflow trains for it."""
    settings = track(config, track_name)["sources"][source_name]
    if settings.get("pretrain_on"):
        return f"results/{track_name}/weights/{source_name}.pt"
    return settings["weights"]


#: What a target may override in the track's fine-tuning protocol (thesis §2.3.1: batch
#: sizes per target; custom3D and Oxford Pet drop the 100b and 300b checkpoints).
IMAGE_TARGET_FINETUNE_KEYS = ("batch_size", "checkpoints")


def image_finetune_protocol(config: dict, track_name: str, target_name: str) -> dict[str, Any]:
    """The track's fine-tuning protocol with the target's batch size and checkpoint grid."""
    protocol = dict(track(config, track_name)["finetune"])
    settings = target(config, track_name, target_name)
    protocol.update({k: settings[k] for k in IMAGE_TARGET_FINETUNE_KEYS if k in settings})
    return protocol


def image_policy(config: dict, track_name: str, target_name: str) -> str:
    """The fine-tuning policy of a target: its own, else the track's, else ``last_conv``."""
    settings = track(config, track_name)
    own = target(config, track_name, target_name).get("policy")
    return own or settings.get("policy") or DEFAULT_IMAGE_POLICY


#: Input size of the thesis's CIFAR-10 VGG-19 (its classifier takes 512 = 512 × 1 × 1 features).
CIFAR_TRANSFORMS = {"resize": 32, "crop": 32}


#: Resize and crop of a track that names none (ImageNet's 256 → 224), for torchvision sources.
DEFAULT_TRANSFORMS = {"resize": 256, "crop": 224}


def image_transforms(config: dict, track_name: str, source_name: str) -> dict[str, int]:
    """Resize and crop of the images a source sees: its own ``transforms``, else 32 × 32 for a
    CIFAR-variant source, else its ``image_size``, else the track's ``transforms``, else — a
    timm source — none (the job takes the model's own pretrained config), else
    :data:`DEFAULT_TRANSFORMS`. ``scratch`` (the from-scratch baseline) gets the track's."""
    settings = track(config, track_name)
    own = settings["sources"].get(source_name, {})
    base = settings.get("transforms")
    if own.get("cifar"):
        base = CIFAR_TRANSFORMS
    elif own.get("image_size"):
        base = {"resize": own["image_size"], "crop": own["image_size"]}
    arch = settings.get("scratch") if source_name == "scratch" else own.get("arch", "")
    if base is None:
        base = {} if str(arch).startswith("timm/") else DEFAULT_TRANSFORMS
    return {**base, **own.get("transforms", {})}


def is_baseline(config: dict, track_name: str, source_name: str) -> bool:
    """The from-scratch model and sources with random weights: baselines, trained over the
    track's ``baseline_seeds`` (thesis Fig. 3.20: 95 % bands over several seeds)."""
    if source_name == "scratch":
        return True
    return track(config, track_name)["sources"][source_name].get("weights") == "random"


def image_seeds(config: dict, track_name: str, source_name: str) -> list[int]:
    """Seeds of one source: ``baseline_seeds`` for baselines (default: ``seeds``), else
    ``seeds``. A loaded model is one model; its seed only seeds the new head and data order."""
    settings = track(config, track_name)
    if is_baseline(config, track_name, source_name) and settings.get("baseline_seeds"):
        return list(settings["baseline_seeds"])
    return list(settings.get("seeds", [0]))


def missing_image_inputs(config: dict) -> list[str]:
    """User-provided weight files and target folders that do not exist (yet): reported at
    start-up, so that a dry-run of a config with placeholder paths says what to provide."""
    missing = []
    for track_name in [t for t in IMAGE_TRACKS if t in config["tracks"]]:
        settings = config["tracks"][track_name]
        for name, source_settings in settings["sources"].items():
            weights = image_weights(config, track_name, name)
            looks_like_file = weights.endswith((".pt", ".pth")) or "/" in weights
            if (
                not source_settings.get("pretrain_on")
                and looks_like_file
                and not Path(weights).exists()
            ):
                missing.append(f"tracks.{track_name}.sources.{name}.weights: {weights}")
        for name, target_settings in settings["targets"].items():
            if not target_settings.get("make_from") and not Path(target_settings["root"]).is_dir():
                missing.append(
                    f"tracks.{track_name}.targets.{name}.root: {target_settings['root']}"
                )
    return missing


def _check_metrics(prefix: str, names: list[str]) -> None:
    from transferability.metrics import METRICS  # scipy import, still cheap at parse time

    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ConfigError(
            f"{prefix}.metrics: unknown metric(s) {unknown}; known: {sorted(METRICS)}"
        )
    for name in names:
        missing = [m for m in METRICS[name].inputs if m not in names]
        if missing:
            raise ConfigError(f"{prefix}.metrics: {name!r} combines {missing}; list them too")


def _check_labels(prefix: str, labels: list[str]) -> None:
    for label in labels:
        try:
            parse_label(label)
        except ValueError as err:
            raise ConfigError(f"{prefix}: {err}") from None
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{prefix}: duplicate labels in {labels}")


#: Layer names of a VGG: the thesis's, the friendly ones, and torchvision's node-name patterns.
VGG_LAYER_NAMES = ("pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7", "fc8")
_VGG_NODE = re.compile(r"(features|classifier)\.\d+|avgpool|flatten|penultimate|logits")


def _check_vgg_layers(prefix: str, name: str, source: dict, track_layers: list) -> None:
    """VGG layer names are known without building the model; other architectures' node names
    are checked by the first job that builds it (the error lists the valid names)."""
    if not source["arch"].startswith("vgg"):
        return
    layers = source.get("layers") or track_layers
    unknown = [x for x in layers if x not in VGG_LAYER_NAMES and not _VGG_NODE.fullmatch(x)]
    if unknown:
        where = f"{prefix}.sources.{name}.layers" if source.get("layers") else f"{prefix}.layers"
        raise ConfigError(
            f"{where}: unknown VGG layer(s) {unknown} for source {name!r}; known: "
            f"{list(VGG_LAYER_NAMES)}, penultimate, or node names features.<i>, classifier.<i>"
        )


def _check_image_track(config: dict, track_name: str) -> None:
    from transferability.models.layers import POLICIES, TESTED_ARCHITECTURES

    settings = config["tracks"][track_name]
    prefix = f"tracks.{track_name}"
    for name, target_settings in settings["targets"].items():
        policy = target_settings.get("policy") or settings.get("policy")
        if policy and policy not in POLICIES:
            raise ConfigError(
                f"{prefix}.targets.{name}.policy: unknown {policy!r}; known: {list(POLICIES)}"
            )
    for name, source_settings in settings["sources"].items():
        _check_vgg_layers(prefix, name, source_settings, settings["layers"])
        if source_settings["arch"] in TESTED_ARCHITECTURES:
            continue
        from transferability.models import ModelError, family_of  # imports torch: rare names

        try:
            family_of(source_settings["arch"])
        except ModelError as err:
            raise ConfigError(f"{prefix}.sources.{name}.arch: {err}") from None
    _check_metrics(prefix, settings["metrics"])
    _check_labels(f"{prefix}.finetune.checkpoints", settings["finetune"]["checkpoints"])
    for name, target_settings in settings["targets"].items():
        if "checkpoints" in target_settings:
            _check_labels(f"{prefix}.targets.{name}.checkpoints", target_settings["checkpoints"])
    for name, source_settings in settings["sources"].items():
        key = f"{prefix}.sources.{name}"
        has_weights, pretrain_on = "weights" in source_settings, source_settings.get("pretrain_on")
        if has_weights == bool(pretrain_on):
            raise ConfigError(f"{key}: give exactly one of 'weights' or 'pretrain_on'")
        if pretrain_on and pretrain_on not in KNOWN_DATASETS:
            raise ConfigError(
                f"{key}.pretrain_on: unknown dataset {pretrain_on!r}; known: {list(KNOWN_DATASETS)}"
            )
        encoder = source_settings.get("encoder") or source_settings["arch"] == "vgg16_features"
        if encoder and source_settings.get("cifar"):
            raise ConfigError(f"{key}: the CIFAR variant needs a classifier (not an encoder)")
        if source_settings.get("cifar") and not source_settings["arch"].startswith("vgg"):
            raise ConfigError(
                f"{key}.cifar: a VGG variant; {source_settings['arch']} takes image_size"
            )
    if "scratch" in settings["sources"]:
        raise ConfigError(f"{prefix}.sources.scratch: 'scratch' names the from-scratch baseline")
    for name, target_settings in settings["targets"].items():
        make_from = target_settings.get("make_from")
        if make_from and make_from not in KNOWN_DATASETS:
            raise ConfigError(
                f"{prefix}.targets.{name}.make_from: unknown dataset {make_from!r}; "
                f"known: {list(KNOWN_DATASETS)}"
            )


def metric_plugins(config: dict) -> list:
    """Import the config's ``metric_plugins`` (:mod:`transferability.metrics.plugins`), so that
    their
    names are known metrics; :class:`ConfigError` names the plugin and the problem."""
    from transferability.metrics.plugins import PluginError, load_plugins

    try:
        return load_plugins(config.get("metric_plugins"))
    except PluginError as err:
        raise ConfigError(f"metric_plugins: {err}") from None


def metric_plugin_files(config: dict, names: list[str]) -> list[str]:
    """The plugin files that define metrics among ``names`` (inputs of the jobs computing them,
    so that editing a plugin re-runs exactly those jobs)."""
    from transferability.metrics.plugins import plugin_of

    return sorted({plugin_of(name) for name in names} - {None})


#: The largest layer a ``features`` metric may hold in memory unless ``features_max_gib`` says.
FEATURES_MAX_GIB = 2.0
FEATURES_MAX_BYTES = int(FEATURES_MAX_GIB * 2**30)


def features_max_bytes(config: dict) -> int:
    """``features_max_gib`` in bytes: the bound on one layer's activations (float32) that a
    ``features`` metric receives in memory."""
    return int(float(config.get("features_max_gib", FEATURES_MAX_GIB)) * 2**30)


def check(config: dict) -> None:
    """Semantic checks after schema validation; raises :class:`ConfigError` naming the key."""
    try:
        job_resources.check_overrides(config.get("job_resources"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    metric_plugins(config)
    for track_name, settings in config["tracks"].items():
        _check_features_bound(config, track_name)
        if track_name in IMAGE_TRACKS:
            _check_image_track(config, track_name)
            continue
        prefix = f"tracks.{track_name}"
        if INITIAL_SOURCE in settings["sources"]:
            raise ConfigError(
                f"{prefix}.sources.{INITIAL_SOURCE}: the name is reserved for the untrained "
                f"model's folder ({INITIAL_MODEL}); rename the source"
            )
        for kind in ("sources", "targets"):
            for name in settings[kind]:
                dataset = _member(config, track_name, kind, name)["dataset"]
                if dataset not in KNOWN_DATASETS:
                    raise ConfigError(
                        f"{prefix}.{kind}.{name}.dataset: unknown dataset {dataset!r}; "
                        f"known datasets: {list(KNOWN_DATASETS)}"
                    )
        unknown = [layer for layer in settings["layers"] if layer not in CNN_LAYERS]
        if unknown:
            raise ConfigError(
                f"{prefix}.layers: unknown layer(s) {unknown}; known: {list(CNN_LAYERS)}"
            )
        _check_metrics(prefix, settings["metrics"])
        for stage in ("pretrain", "finetune"):
            _check_labels(f"{prefix}.{stage}.checkpoints", settings[stage]["checkpoints"])
        if "0" not in settings["pretrain"]["checkpoints"]:
            raise ConfigError(
                f"{prefix}.pretrain.checkpoints must include '0' (the untrained baseline)"
            )
        _check_studies(config, track_name)


def _target_classes(config: dict, track_name: str, target_name: str) -> int | None:
    """Classes of a target where the config tells them (None: only the data will)."""
    if track_name not in IMAGE_TRACKS:
        return KNOWN_NUM_CLASSES.get(_member(config, track_name, "targets", target_name)["dataset"])
    settings = track(config, track_name)["targets"][target_name]
    if settings.get("make_from"):
        return KNOWN_NUM_CLASSES.get(settings["make_from"])
    root = Path(settings["root"])
    if settings.get("format", "imagefolder") == "imagefolder" and root.is_dir():
        return sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return None


def _layer_features(config: dict, track_name: str, source_name: str) -> dict[str, int]:
    """Features per sample of each configured layer of a source (one forward pass of a fresh
    model on one blank image)."""
    import torch

    from transferability.models import (
        ModelSpec,
        build_model,
        family_of,
        forward_layers,
        input_spec,
    )

    settings = track(config, track_name)
    layers = settings["layers"]
    if track_name not in IMAGE_TRACKS:
        spec, size, channels = ModelSpec("thesis_cnn", 10), 28, 1
    else:
        own = settings["sources"][source_name]
        layers = own.get("layers") or layers
        spec = ModelSpec.create(
            own["arch"], None if own.get("encoder") else 1000,
            cifar=bool(own.get("cifar")), image_size=own.get("image_size"),
        )  # fmt: skip
        crop = image_transforms(config, track_name, source_name).get("crop")
        size, channels = crop or input_spec(spec).crop, 3
    model = build_model(spec, seed=0).eval()
    resolved = family_of(model).check_layers(model, layers)
    with torch.no_grad():
        out = forward_layers(model, torch.zeros(1, channels, size, size), resolved)
    return {name: int(out[r][0].numel()) for name, r in zip(layers, resolved, strict=True)}


def _check_features_bound(config: dict, track_name: str) -> None:
    """Refuse, before any job, a layer too large for the track's ``features`` metrics."""
    from transferability.metrics import METRICS

    settings = config["tracks"][track_name]
    wanted = [m for m in settings["metrics"] if getattr(METRICS.get(m), "kind", "") == "features"]
    if not wanted:
        return
    bound = features_max_bytes(config)
    extract = settings.get("extract") or {}
    widths = {}  # source → features per sample of each layer: one forward pass per source
    for target_name, target_settings in settings["targets"].items():
        per_class = (target_settings or {}).get("per_class") or extract.get("per_class")
        classes = _target_classes(config, track_name, target_name)
        if per_class is None or classes is None:
            continue  # the metric job checks the file itself
        for source_name in settings["sources"]:
            if source_name not in widths:
                widths[source_name] = _layer_features(config, track_name, source_name)
            for layer, features in widths[source_name].items():
                size = per_class * classes * features * 4
                if size > bound:
                    raise ConfigError(
                        f"tracks.{track_name}.metrics: {wanted} receive whole layers in memory, "
                        f"but layer {layer!r} of source {source_name!r} on target "
                        f"{target_name!r} holds {per_class * classes} × {features} float32 = "
                        f"{size / 2**30:.2f} GiB > features_max_gib "
                        f"({bound / 2**30:g} GiB); raise features_max_gib, choose smaller "
                        "layers or fewer extraction samples"
                    )


def _check_subset(key: str, chosen: list | None, known: list) -> None:
    unknown = [name for name in chosen or [] if name not in known]
    if unknown:
        raise ConfigError(f"{key}: unknown name(s) {unknown}; known: {sorted(known)}")


def _check_studies(config: dict, track_name: str) -> None:
    """Study settings that a JSON schema cannot check: names that must exist in the track,
    feasible task families, labels."""
    settings = config["tracks"][track_name]
    pretrain_labels = settings["pretrain"]["checkpoints"]
    for name, study_settings in settings.get("studies", {}).items():
        if study_settings is None:  # switched off
            continue
        prefix = f"tracks.{track_name}.studies.{name}"
        for kind in ("sources", "targets"):
            _check_subset(f"{prefix}.{kind}", study_settings.get(kind), list(settings[kind]))
        step = study_settings.get("pretrain_step")
        if step is not None and step not in pretrain_labels:
            raise ConfigError(
                f"{prefix}.pretrain_step: {step!r} is not a pre-training checkpoint; "
                f"known: {pretrain_labels}"
            )
        _check_subset(f"{prefix}.seeds", study_settings.get("seeds"), settings["seeds"])
        if "finetune" in study_settings:
            _check_labels(
                f"{prefix}.finetune.checkpoints", study_settings["finetune"]["checkpoints"]
            )
    quanta = settings.get("studies", {}).get("quanta")
    if quanta and quanta["score_lambda_init"] not in quanta["lambda_inits"]:
        raise ConfigError(
            f"tracks.{track_name}.studies.quanta.score_lambda_init: "
            f"{quanta['score_lambda_init']} is not among lambda_inits {quanta['lambda_inits']}"
        )
    tasks = settings.get("studies", {}).get("random_tasks")
    if tasks:
        _check_random_tasks(config, track_name, tasks)


def _check_random_tasks(config: dict, track_name: str, tasks: dict) -> None:
    from transferability.metrics import METRICS

    prefix = f"tracks.{track_name}.studies.random_tasks"
    unknown = [layer for layer in tasks["layers"] if layer not in CNN_LAYERS]
    if unknown:
        raise ConfigError(f"{prefix}.layers: unknown layer(s) {unknown}; known: {list(CNN_LAYERS)}")
    if tasks.get("metrics") is not None:
        # features metrics hold a whole layer: the metric jobs check its size, the study does not
        per_task = [m for m in METRICS if METRICS[m].kind not in ("aggregate", "features")]
        _check_subset(f"{prefix}.metrics", tasks["metrics"], per_task)
    metrics = random_tasks_metrics(config, track_name)
    if tasks["levels_metric"] not in metrics:
        raise ConfigError(
            f"{prefix}.levels_metric: "
            f"{tasks['levels_metric']!r} is not computed (metrics: {metrics})"
        )
    for key in ("checkpoints", "reference_checkpoints"):
        if key in tasks["train"]:
            _check_labels(f"{prefix}.train.{key}", tasks["train"][key])
    for family, family_settings in tasks["families"].items():
        key = f"{prefix}.families.{family}"
        if family_settings["dataset"] not in KNOWN_DATASETS:
            raise ConfigError(
                f"{key}.dataset: unknown dataset {family_settings['dataset']!r}; "
                f"known: {list(KNOWN_DATASETS)}"
            )
        try:
            family_tasks(config, track_name, family)
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from None


def levels_layer(config: dict, track_name: str) -> str:
    """The layer of the random-task study's ``levels_metric``: ``logits`` for a prediction
    metric (LEEP, NCE), else the study's last layer."""
    from transferability.metrics import metric_names

    settings = study(config, track_name, "random_tasks")
    if settings["levels_metric"] in metric_names("prediction"):
        return "logits"
    return settings["layers"][-1]


# --- the checkpoints of a configuration (transferability rank --config) ------------------


@dataclass(frozen=True)
class ConfigSelection:
    """Checkpoints of a workflow config's sources and the config's extraction settings."""

    paths: tuple[Path, ...]
    names: tuple[str, ...]
    data_dir: str | None
    per_class: int | None
    seed: int | None
    resize: int | None
    crop: int | None


def config_checkpoints(
    config_path: str | os.PathLike,
    sources: Sequence[str] | None = None,
    *,
    track: str | None = None,
    run_seed: int | None = None,
    step: str | None = None,
    workdir: str | os.PathLike = ".",
) -> ConfigSelection:
    """The workflow's checkpoint paths for ``sources`` (default: all) of a config's track.

    CNN tracks: ``results/<track>/checkpoints/<source>/seed<run_seed>/step<step>.pt`` with
    ``step`` default the last pre-training checkpoint (step 0: the shared untrained model,
    :func:`checkpoint_path`); the vgg track:
    ``results/vgg/checkpoints/<source>/seed<run_seed>/final.pt``. ``run_seed`` defaults to the
    track's first seed; paths are relative to ``workdir`` (where Snakemake runs). ``track``
    defaults to the only track holding the sources. Also returns the config's ``data_dir``,
    ``extract.per_class``/``seed`` and (vgg) ``transforms``, for the caller's defaults.

    Raises :class:`ConfigError`: unreadable config, unknown track/source/step/seed, or a missing
    checkpoint (the message gives the Snakemake command that makes it).
    """
    import yaml

    config_path = Path(config_path)
    try:
        config = yaml.safe_load(config_path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {config_path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config {config_path} is not valid YAML: {err}") from err
    tracks = (config or {}).get("tracks") if isinstance(config, dict) else None
    if not isinstance(tracks, dict) or not tracks:
        raise ConfigError(f"config {config_path} has no 'tracks'")
    if track is None:
        holding = [
            t
            for t, s in tracks.items()
            if all(n in ((s or {}).get("sources") or {}) for n in sources or ())
        ]
        if len(holding) != 1:
            where = (
                f"sources {list(sources)} are in tracks {holding or 'none'} of {sorted(tracks)}"
                if sources
                else f"tracks {sorted(tracks)}"
            )
            raise ConfigError(f"config {config_path} has {where}; choose one with --track")
        track = holding[0]
    if track not in tracks:
        raise ConfigError(f"config {config_path}: no track {track!r}; tracks: {sorted(tracks)}")
    settings = tracks[track] or {}
    known = list(settings.get("sources") or {})
    names = list(sources) if sources else known
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"config {config_path}: unknown source(s) {unknown} in tracks.{track}.sources; "
            f"known: {known}"
        )
    seeds = list(settings.get("seeds") or [0])
    if run_seed is None:
        run_seed = int(seeds[0])
    elif run_seed not in seeds:
        raise ConfigError(
            f"config {config_path}: --run-seed {run_seed} not in tracks.{track}.seeds {seeds}"
        )
    vgg = track in IMAGE_TRACKS
    if vgg:
        if step not in (None, "final"):
            raise ConfigError(
                f"the {track} track has one checkpoint per source ('final'), not {step!r}"
            )
        step = "final"
    else:
        labels = sort_labels(list((settings.get("pretrain") or {}).get("checkpoints") or []))
        if step is None:
            if not labels:
                raise ConfigError(
                    f"config {config_path}: tracks.{track}.pretrain.checkpoints empty"
                )
            step = labels[-1]
        elif step not in labels:
            raise ConfigError(
                f"config {config_path}: --step {step!r} not in tracks.{track}.pretrain.checkpoints "
                f"{labels}"
            )
    workdir = Path(workdir)
    paths = []
    for name in names:
        rel = (
            f"results/{track}/checkpoints/{name}/seed{run_seed}/final.pt"
            if vgg
            else checkpoint_path(config, track, name, run_seed, step)
        )
        path = workdir / rel
        if not path.is_file():
            raise ConfigError(
                f"checkpoint {path} of source {name!r} does not exist; the workflow makes it: "
                f"snakemake --cores all --configfile {config_path} {rel} "
                f"(run in {workdir.resolve()})"
            )
        paths.append(path)
    extract = settings.get("extract") or {}
    transforms = settings.get("transforms") or {}
    return ConfigSelection(
        paths=tuple(paths),
        names=tuple(names),
        data_dir=config.get("data_dir"),
        per_class=extract.get("per_class"),
        seed=extract.get("seed"),
        resize=transforms.get("resize") if vgg else None,
        crop=transforms.get("crop") if vgg else None,
    )
