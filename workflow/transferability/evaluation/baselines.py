"""Trivial predictors of transfer, reported next to the metrics (SPEC §14).

A metric is only useful if it ranks models better than what is known without it: how long the
source was trained, how good it is on its own task, how large it is (Singh et al., ICLR 2026;
Chaves et al. 2024), and chance. Each baseline here is one value per model (target, source,
seed, pre-training step), computed in the tables step from the track's ``pretrain`` table, and
enters ``metrics.csv`` as metric ``baseline_<name>`` at layer ``model`` — so it gets every
grouping, column and figure a metric gets.

=============================  ======================================================  ======
name                           value                                                   better
=============================  ======================================================  ======
``baseline_pretrain_samples``  samples the source had seen at that checkpoint           higher
                               (CNN: ``samples``; image sources trained here:
                               ``pretrain_samples``; loaded weights: NaN)
``baseline_source_accuracy``   the source's test accuracy on its own task at that      higher
                               checkpoint (CNN: ``test_accuracy``; image tracks:
                               ``source_accuracy``)
``baseline_param_count``       the model's number of parameters (image tracks)          higher
``baseline_random``            uniform scores seeded by (target, source, seed, step):   higher
                               the null, whose ρ scatters around 0
=============================  ======================================================  ======
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from transferability.metrics._base import RESERVED_PREFIX

#: Row names of the baselines (reserved by the metric registry: no metric may take them).
PREFIX = RESERVED_PREFIX
#: Baseline name (config, without the prefix) → the ``pretrain`` table's columns it reads, in
#: order of preference (``None``: computed, not read).
SOURCES: dict[str, tuple[str, ...] | None] = {
    "pretrain_samples": ("samples", "pretrain_samples"),
    "source_accuracy": ("test_accuracy", "source_accuracy"),
    "param_count": ("param_count",),
    "random": None,
}
NAMES = tuple(SOURCES)
#: Every baseline is oriented so that a higher value predicts better transfer.
HIGHER_IS_BETTER = True
#: Defaults per track kind: what applies to it. The CNN track's models share one architecture,
#: so their parameter count is constant (its ρ is undefined).
DEFAULTS = {
    "cnn": ("pretrain_samples", "source_accuracy", "random"),
    "image": ("pretrain_samples", "source_accuracy", "param_count", "random"),
}
MODEL_KEYS = ["track", "target", "source", "seed", "step"]
COLUMNS = MODEL_KEYS + ["layer", "metric", "value", "note"]


def metric_name(name: str) -> str:
    """``random`` → ``baseline_random``."""
    return PREFIX + name


def check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {list(NAMES)}")


def random_scores(keys: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """One uniform [0, 1) score per row of ``keys`` (columns target, source, seed, step), from a
    generator seeded by that row's values and ``seed``: the same model gets the same score in
    every run, whatever else the run contains."""
    out = np.empty(len(keys))
    for i, row in enumerate(keys[["target", "source", "seed", "step"]].itertuples(index=False)):
        words = [seed, *(zlib.crc32(str(v).encode()) for v in row)]
        out[i] = np.random.default_rng(np.random.SeedSequence(words)).random()
    return out


def baseline_rows(
    track: str,
    pretrain: pd.DataFrame,
    targets: Sequence[str],
    names: Sequence[str],
    random_seed: int = 0,
) -> pd.DataFrame:
    """Rows (track, target, source, seed, step, layer ``model``, metric, value, note) of the
    baselines ``names`` for every model of ``pretrain`` (one row per source, seed and step, as
    the track's ``pretrain`` table has them) on every target. A value the table does not record
    is NaN with the reason in ``note``."""
    check_names(names)
    if pretrain.empty or not names or not len(targets):
        return pd.DataFrame(columns=COLUMNS)
    models = pretrain.drop_duplicates(["source", "seed", "step"]).reset_index(drop=True)
    models = models.astype({"step": str})  # labels as text, as the correlation table reads them
    frames = []
    for target in targets:
        keys = models[["source", "seed", "step"]].assign(track=track, target=target)
        for name in names:
            columns = SOURCES[name]
            note = ""
            if columns is None:
                values = random_scores(keys, random_seed)
            else:
                values = np.full(len(models), np.nan)
                for column in reversed(columns):  # the preferred column wins where both exist
                    if column in models:
                        recorded = pd.to_numeric(models[column], errors="coerce").to_numpy(float)
                        values = np.where(np.isfinite(recorded), recorded, values)
                if not np.isfinite(values).all():
                    note = f"not recorded for this source (pretrain table columns {list(columns)})"
            notes = np.where(np.isfinite(values), "", note)
            frames.append(keys.assign(layer="model", metric=metric_name(name), value=values,
                                      note=notes))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[COLUMNS]
