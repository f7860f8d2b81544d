"""Condensing fine-tuning curves into log-AUC and correlating metrics with it (thesis §3.3).

log-AUC
    Area under test accuracy plotted against log10(training progress), trapezoid rule over the
    checkpoints, divided by the width of the log axis: a mean accuracy in [0, 1] that weighs
    every log-spaced checkpoint alike. Checkpoint 0 has no place on a log axis; it is placed one
    grid step (half a decade, the spacing of the thesis grid 1, 3, 10, 30, …) before the first
    non-zero checkpoint, i.e. at ``x1 / sqrt(10)``. The unit of progress (samples, batches,
    epochs) does not change the normalised value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

#: Position of checkpoint 0 relative to the first non-zero checkpoint (one half-decade step).
ZERO_OFFSET = 10**-0.5

CORRELATION_COLUMNS = ["track", "target", "layer", "metric", "grouping", "group", "n", "rho",
                       "pvalue", "ci_low", "ci_high", "significant", "rho_oriented",
                       "kendall_tau", "weighted_tau", "pearson", "top1_regret", "relative_top1",
                       "best_in_top3", "note"]  # fmt: skip
GROUPINGS = ("all", "source", "pretrain_step", "finetune_step")


def log_auc(progress: Sequence[float], accuracy: Sequence[float]) -> float:
    """Normalised area under ``accuracy`` over log10(``progress``).

    ``progress`` must be strictly increasing and non-negative; only the first entry may be 0
    (placed at ``progress[1] * ZERO_OFFSET``). Returns a mean accuracy in [min, max] of the
    curve. Raises ``ValueError`` for fewer than two points or non-increasing progress.
    """
    x = np.asarray(progress, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"progress and accuracy must be 1-D of equal length, got {x.shape}, {y.shape}"
        )
    if len(x) < 2:
        raise ValueError("log-AUC needs at least two checkpoints")
    if np.any(np.diff(x) <= 0) or x[0] < 0:
        raise ValueError(f"progress must be non-negative and strictly increasing, got {x.tolist()}")
    if not np.isfinite(y).all():
        raise ValueError("accuracy contains NaN/Inf")
    if x[0] == 0:
        x = x.copy()
        x[0] = x[1] * ZERO_OFFSET
    logx = np.log10(x)
    return float(np.trapezoid(y, logx) / (logx[-1] - logx[0]))


def fisher_interval(n: int, rho0: float = 0.0, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of a correlation under H0: ρ = ``rho0`` via the Fisher transformation,
    ``tanh(atanh(rho0) ± z / sqrt(n - 3))`` (thesis listing A.4). NaNs for n ≤ 3."""
    if n <= 3:
        return math.nan, math.nan
    delta = z / math.sqrt(n - 3)
    centre = math.atanh(rho0)
    return math.tanh(centre - delta), math.tanh(centre + delta)


def snap_ties(values: np.ndarray, digits: int = 10) -> np.ndarray:
    """Round to ``digits`` significant digits of the largest magnitude, so that values equal up
    to floating-point noise (e.g. an H-score saturated at K − 1 = 8.999999999999 vs 9.0) tie
    instead of producing a spurious ranking."""
    scale = np.max(np.abs(values)) if len(values) else 0.0
    if not np.isfinite(scale) or scale == 0.0:
        return values
    unit = 10.0 ** (np.floor(np.log10(scale)) - digits + 1)
    return np.round(values / unit) * unit


def correlate(
    metric: Sequence[float], truth: Sequence[float], higher_is_better: bool = True
) -> dict:
    """How well one metric ranks models by their ground truth (transfer performance).

    Returns Spearman ``rho`` with its ``pvalue`` and the Fisher band ``ci_low``/``ci_high`` for
    ρ = 0; ``significant`` means |ρ| lies outside that band (the thesis's criterion, Figures
    3.21–3.32). Also ``kendall_tau``, ``pearson`` (raw signs, like ``rho``) and, with the metric's
    direction applied (negated when lower is better): ``rho_oriented`` (positive = the metric
    ranks well), ``weighted_tau`` (``scipy.stats.weightedtau(oriented metric, truth)``, defaults:
    hyperbolic weights emphasising the top) and the model-selection view: ``top1_regret`` =
    1 − truth of the metric's top-ranked model / best truth, ``relative_top1`` = truth of the
    metric's top-ranked model / best truth (Agostinelli et al. 2022, "relative top-1 accuracy")
    and ``best_in_top3`` = 1.0 if the best model is among the metric's three top-ranked ones
    (ties in the metric broken by model order), else 0.0.

    Metric values are compared to 10 significant digits (:func:`snap_ties`). Undefined cases give
    NaN and a ``note`` instead of an exception: fewer than 4 finite pairs, or a constant column.
    """
    x = np.asarray(metric, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = snap_ties(x[keep]), y[keep]
    n = int(len(x))
    low, high = fisher_interval(n)
    nan = math.nan
    result = {"n": n, "rho": nan, "pvalue": nan, "ci_low": low, "ci_high": high,
              "significant": False, "rho_oriented": nan, "kendall_tau": nan,
              "weighted_tau": nan, "pearson": nan, "top1_regret": nan, "relative_top1": nan,
              "best_in_top3": nan, "note": ""}  # fmt: skip
    if n < 4:
        result["note"] = f"only {n} finite (metric, ground truth) pairs; need >= 4"
        return result
    if np.ptp(x) == 0:
        result["note"] = "metric is constant across models; correlations undefined"
        return result
    if np.ptp(y) == 0:
        result["note"] = "ground truth is constant across models; correlations undefined"
        return result
    oriented = x if higher_is_better else -x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, pvalue = stats.spearmanr(x, y)
        best = y.max()
        result.update(
            rho=float(rho), pvalue=float(pvalue), significant=bool(abs(rho) > high),
            rho_oriented=float(rho if higher_is_better else -rho),
            kendall_tau=float(stats.kendalltau(x, y).statistic),
            weighted_tau=float(stats.weightedtau(oriented, y).statistic),
            pearson=float(stats.pearsonr(x, y).statistic),
            top1_regret=float(1.0 - y[np.argmax(oriented)] / best) if best > 0 else nan,
            relative_top1=float(y[np.argmax(oriented)] / best) if best > 0 else nan,
            best_in_top3=float(np.argmax(y) in np.argsort(-oriented, kind="stable")[:3]),
        )  # fmt: skip
    return result


def log_auc_table(finetune: pd.DataFrame) -> pd.DataFrame:
    """One log-AUC per fine-tuning curve (target, source, seed, pretrain_step) over samples."""
    keys = ["target", "source", "seed", "pretrain_step"]
    rows = []
    for key, curve in finetune.groupby(keys, sort=True):
        curve = curve.sort_values("samples")
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "logauc": log_auc(curve["samples"], curve["test_accuracy"]),
                "final_accuracy": float(curve["test_accuracy"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows)


def aggregate_metrics(metrics: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Rows of aggregate metrics (e.g. ``c56``), which combine per-model metrics scaled over the
    compared models: here every model (source, seed, checkpoint) of one (target, layer)."""
    from transferability.metrics import METRICS

    keys = ["track", "target", "source", "seed", "step", "layer"]
    frames = []
    for name in names:
        inputs = METRICS[name].inputs
        wide = metrics[metrics["metric"].isin(inputs)].pivot_table(
            index=keys, columns="metric", values="value", dropna=False
        )
        if wide.empty:
            continue
        wide = wide.reset_index()
        for _, part in wide.groupby(["target", "layer"]):
            values = METRICS[name](*(part[m].to_numpy() for m in inputs))
            frames.append(part[keys].assign(metric=name, value=values, note=""))
    columns = keys + ["metric", "value", "note"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


def correlation_table(
    track: str,
    metrics: pd.DataFrame,
    finetune: pd.DataFrame,
    directions: dict[str, bool],
) -> pd.DataFrame:
    """Correlations (:func:`correlate`) between every metric and transfer performance per
    (target, layer, metric), for the four groupings of thesis §3.3; ``directions`` maps each
    metric to ``higher_is_better``. Models are (source, pretrain_step) pairs; values are
    averaged over seeds first.

    - ``all``: every model, metric vs log-AUC;
    - ``source``: one group per source, over its pre-training checkpoints;
    - ``pretrain_step``: one group per pre-training checkpoint, over the sources;
    - ``finetune_step``: one group per fine-tuning checkpoint, metric vs accuracy there.
    """
    model = ["target", "source", "pretrain_step"]
    logauc = log_auc_table(finetune).groupby(model, as_index=False)["logauc"].mean()
    accuracy = finetune.groupby(model + ["finetune_step"], as_index=False)["test_accuracy"].mean()
    values = (
        metrics.rename(columns={"step": "pretrain_step"})
        .groupby(model + ["layer", "metric"], as_index=False)["value"]
        .mean()
    )
    with_auc = values.merge(logauc, on=model, how="inner")
    with_acc = values.merge(accuracy, on=model, how="inner")
    rows = []

    def add(frame, truth, grouping, group_col):
        keys = ["target", "layer", "metric"] + ([group_col] if group_col else [])
        for key, part in frame.groupby(keys, sort=True):
            key = dict(zip(keys, key, strict=True))
            group = str(key.pop(group_col)) if group_col else "all"
            rows.append(
                {
                    "track": track,
                    **key,
                    "grouping": grouping,
                    "group": group,
                    **correlate(part["value"], part[truth], directions[key["metric"]]),
                }
            )

    add(with_auc, "logauc", "all", None)
    add(with_auc, "logauc", "source", "source")
    add(with_auc, "logauc", "pretrain_step", "pretrain_step")
    add(with_acc, "test_accuracy", "finetune_step", "finetune_step")
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
