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


def check(config: dict) -> None:
    """Semantic checks after schema validation; raises :class:`ConfigError` naming the key."""
    from transferability.metrics import METRICS  # scipy import, still cheap at parse time

    for track_name, settings in config["tracks"].items():
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
        unknown = [m for m in settings["metrics"] if m not in METRICS]
        if unknown:
            raise ConfigError(
                f"{prefix}.metrics: unknown metric(s) {unknown}; known: {sorted(METRICS)}"
            )
        for name in settings["metrics"]:
            missing = [m for m in METRICS[name].inputs if m not in settings["metrics"]]
            if missing:
                raise ConfigError(f"{prefix}.metrics: {name!r} combines {missing}; list them too")
        for stage in ("pretrain", "finetune"):
            labels = settings[stage]["checkpoints"]
            for label in labels:
                try:
                    parse_label(label)
                except ValueError as err:
                    raise ConfigError(f"{prefix}.{stage}.checkpoints: {err}") from None
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{prefix}.{stage}.checkpoints: duplicate labels in {labels}")
        if "0" not in settings["pretrain"]["checkpoints"]:
            raise ConfigError(
                f"{prefix}.pretrain.checkpoints must include '0' (the untrained baseline)"
            )
