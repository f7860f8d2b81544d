"""The tables step: every per-model file of a track gathered into the tidy tables
(``pretrain``, ``metrics``, ``finetune``), log-AUC, the correlations of every metric with it,
the trivial baselines and the leaderboard (:func:`build_tables`, :func:`evaluate_tables`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from transferability.artifacts import write_csv

log = logging.getLogger(__name__)


def _concat(paths: Sequence[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, keep_default_na=True) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def evaluate_tables(
    track: str,
    pretrain: pd.DataFrame,
    metric_rows: pd.DataFrame,
    finetune: pd.DataFrame | None,
    *,
    logauc: pd.DataFrame | None = None,
    metrics: Sequence[str] = (),
    quanta_scores: pd.DataFrame | None = None,
    quanta_lambda_init: float = 0.9,
    baselines: Sequence[str] = (),
    bootstrap: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`build_tables` on tables in memory. Without ``finetune`` (recorded tables that
    kept only the log-AUCs, ``logauc``) there is no ``finetune`` table and no ``finetune_step``
    grouping."""
    from transferability.evaluation import baselines as trivial
    from transferability.evaluation.analysis import (
        Bootstrap,
        aggregate_metrics,
        correlation_table,
        leaderboard_table,
        log_auc_table,
    )
    from transferability.metrics import METRICS, metric_names

    tables = {"pretrain": pretrain, "metrics": metric_rows}
    if finetune is not None:
        tables["finetune"] = finetune
    aggregates = [m for m in metrics if m in metric_names("aggregate")]
    parts = [metric_rows, aggregate_metrics(metric_rows, aggregates)]
    directions = {name: bool(fn.higher_is_better) for name, fn in METRICS.items()}
    if quanta_scores is not None:
        from transferability.studies.quanta import QUANTA_HIGHER_IS_BETTER, quanta_metric_rows

        parts.append(quanta_metric_rows(quanta_scores, quanta_lambda_init))
        directions["quanta"] = QUANTA_HIGHER_IS_BETTER
    if baselines and not metric_rows.empty:
        targets = sorted(metric_rows["target"].unique())
        parts.append(trivial.baseline_rows(track, pretrain, targets, baselines))
        directions.update({trivial.metric_name(b): trivial.HIGHER_IS_BETTER for b in baselines})
    tables["metrics"] = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    tables["metrics"]["note"] = tables["metrics"]["note"].fillna("")
    tables["logauc"] = log_auc_table(finetune) if finetune is not None else logauc
    tables["correlations"] = correlation_table(
        track, tables["metrics"], finetune, directions,
        Bootstrap(**bootstrap) if bootstrap is not None else None, logauc=tables["logauc"],
    )  # fmt: skip
    tables["leaderboard"] = leaderboard_table(tables["correlations"])
    return tables


def build_tables(
    track: str,
    history_files: Sequence[str | Path],
    metric_files: Sequence[str | Path],
    finetune_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    metrics: Sequence[str] = (),
    quanta_scores: str | Path | None = None,
    quanta_lambda_init: float = 0.9,
    baselines: Sequence[str] = (),
    bootstrap: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """The track's tidy tables: pretrain, metrics, finetune, logauc, correlations, leaderboard.

    Aggregate metrics among ``metrics`` (``c56``) are computed here, over all models. With
    ``quanta_scores`` (the QUANTA study's score table) the scores of ``quanta_lambda_init`` join
    the metrics as metric ``quanta`` (higher = the target relied more on the source layer).
    ``baselines`` (:mod:`transferability.evaluation.baselines`) join them as ``baseline_<name>``
    rows at
    layer ``model``, one per model and target, from the ``pretrain`` table. ``bootstrap``:
    the settings of :class:`~transferability.evaluation.analysis.Bootstrap` (None: no intervals and
    no
    paired comparison with the baselines).
    """
    tables = evaluate_tables(
        track,
        _concat(history_files),
        _concat(metric_files),
        _concat(finetune_files),
        metrics=metrics,
        quanta_scores=None if quanta_scores is None else pd.read_csv(quanta_scores),
        quanta_lambda_init=quanta_lambda_init,
        baselines=baselines,
        bootstrap=bootstrap,
    )
    for name, frame in tables.items():
        write_csv(frame, outputs[name])
    log.info("tables: %s", {k: len(v) for k, v in tables.items()})
    return tables
