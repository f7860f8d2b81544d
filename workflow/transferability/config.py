"""Resolving the workflow configuration (validated by ``schemas/config.schema.yaml``) into the
settings one job needs, plus the semantic checks a JSON schema cannot express.

Imported while the Snakefile is parsed: it must not import torch.
"""

from __future__ import annotations

from typing import Any

from transferability.data import KNOWN_DATASETS
from transferability.layers import CNN_LAYERS
from transferability.schedule import parse_label, sort_labels


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


def checkpoint_labels(config: dict, track_name: str, stage: str) -> list[str]:
    """Checkpoint labels of ``stage`` (``pretrain`` or ``finetune``) in training order."""
    return sort_labels(list(track(config, track_name)[stage]["checkpoints"]))


VGG_TRACK = "vgg"


def vgg_weights(config: dict, source_name: str) -> str:
    """Where a VGG source's weights come from: a file path, a torchvision weight name, "random",
    or (``pretrain_on``) the file the workflow trains for it."""
    settings = track(config, VGG_TRACK)["sources"][source_name]
    if settings.get("pretrain_on"):
        return f"results/{VGG_TRACK}/weights/{source_name}.pt"
    return settings["weights"]


def vgg_target_root(config: dict, target_name: str) -> str:
    return target(config, VGG_TRACK, target_name)["root"]


def missing_vgg_inputs(config: dict) -> list[str]:
    """User-provided weight files and target folders that do not exist (yet): reported at
    start-up, so that a dry-run of a config with placeholder paths says what to provide."""
    if VGG_TRACK not in config["tracks"]:
        return []
    from pathlib import Path

    settings = config["tracks"][VGG_TRACK]
    missing = []
    for name, source_settings in settings["sources"].items():
        weights = vgg_weights(config, name)
        looks_like_file = weights.endswith((".pt", ".pth")) or "/" in weights
        if (
            not source_settings.get("pretrain_on")
            and looks_like_file
            and not Path(weights).exists()
        ):
            missing.append(f"tracks.{VGG_TRACK}.sources.{name}.weights: {weights}")
    for name, target_settings in settings["targets"].items():
        if not target_settings.get("make_from") and not Path(target_settings["root"]).is_dir():
            missing.append(f"tracks.{VGG_TRACK}.targets.{name}.root: {target_settings['root']}")
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


def _check_vgg(config: dict) -> None:
    settings = config["tracks"][VGG_TRACK]
    prefix = f"tracks.{VGG_TRACK}"
    _check_metrics(prefix, settings["metrics"])
    _check_labels(f"{prefix}.finetune.checkpoints", settings["finetune"]["checkpoints"])
    for name, source_settings in settings["sources"].items():
        key = f"{prefix}.sources.{name}"
        has_weights, pretrain_on = "weights" in source_settings, source_settings.get("pretrain_on")
        if has_weights == bool(pretrain_on):
            raise ConfigError(f"{key}: give exactly one of 'weights' or 'pretrain_on'")
        if pretrain_on and pretrain_on not in KNOWN_DATASETS:
            raise ConfigError(
                f"{key}.pretrain_on: unknown dataset {pretrain_on!r}; known: {list(KNOWN_DATASETS)}"
            )
        if source_settings["arch"] == "vgg16_features" and source_settings.get("cifar"):
            raise ConfigError(f"{key}: the CIFAR variant needs a classifier (not vgg16_features)")
    if "scratch" in settings["sources"]:
        raise ConfigError(f"{prefix}.sources.scratch: 'scratch' names the from-scratch baseline")
    for name, target_settings in settings["targets"].items():
        make_from = target_settings.get("make_from")
        if make_from and make_from not in KNOWN_DATASETS:
            raise ConfigError(
                f"{prefix}.targets.{name}.make_from: unknown dataset {make_from!r}; "
                f"known: {list(KNOWN_DATASETS)}"
            )


def check(config: dict) -> None:
    """Semantic checks after schema validation; raises :class:`ConfigError` naming the key."""
    for track_name, settings in config["tracks"].items():
        if track_name == VGG_TRACK:
            _check_vgg(config)
            continue
        prefix = f"tracks.{track_name}"
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
