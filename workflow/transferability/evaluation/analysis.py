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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from transferability.evaluation.baselines import PREFIX as BASELINE_PREFIX

#: Position of checkpoint 0 relative to the first non-zero checkpoint (one half-decade step).
ZERO_OFFSET = 10**-0.5

#: Percentile bootstrap intervals over models (:func:`bootstrap_intervals`).
BOOTSTRAP_COLUMNS = ["rho_boot_low", "rho_boot_high", "wtau_boot_low", "wtau_boot_high"]
#: Each metric against the strongest trivial baseline of its group (:func:`paired_not_better`).
BASELINE_COLUMNS = ["best_baseline", "delta_rho_vs_baseline", "p_not_better"]
#: Stability over sub-sampled source pools, grouping ``all`` (:func:`source_pool_stability`).
POOL_COLUMNS = ["rho_pool_p05", "rho_pool_p95", "top1_stable"]
CORRELATION_COLUMNS = ["track", "target", "layer", "metric", "grouping", "group", "n", "rho",
                       "pvalue", "ci_low", "ci_high", "significant", "rho_oriented",
                       "kendall_tau", "weighted_tau", "pearson", "top1_regret", "relative_top1",
                       "best_in_top3", *BOOTSTRAP_COLUMNS, *BASELINE_COLUMNS,
                       *POOL_COLUMNS, "note"]  # fmt: skip
GROUPINGS = ("all", "source", "pretrain_step", "finetune_step")


@dataclass(frozen=True)
class Bootstrap:
    """Settings of the bootstrap over models: ``resamples`` draws of the n models with
    replacement from a generator seeded by ``(seed, n)`` — the same draws for every row with n
    models, so tables are deterministic and two metrics over the same models are resampled in
    pairs — and a ``confidence`` percentile interval."""

    resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"bootstrap resamples must be >= 1, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"bootstrap confidence must be in (0, 1), got {self.confidence}")

    def indices(self, n: int) -> np.ndarray:
        """(resamples, n) model indices drawn with replacement."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, n]))
        return rng.integers(0, n, size=(self.resamples, n))


def resampled_ranks(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x[idx], axis=1)`` (average ranks for ties), from one sort of
    ``x``: within a resample, a value's average rank is the count of smaller values drawn plus
    (its own count + 1) / 2 — per-row counts of each distinct value are one ``bincount``."""
    values, code = np.unique(x, return_inverse=True)
    b, u = len(idx), len(values)
    drawn = code.reshape(-1)[idx]
    counts = np.bincount((drawn + u * np.arange(b)[:, None]).ravel(), minlength=b * u)
    counts = counts.reshape(b, u).astype(np.float64)
    average = np.cumsum(counts, axis=1) - (counts - 1.0) / 2.0
    return np.take_along_axis(average, drawn, axis=1)


def spearman_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman ρ of ``x[i], y[i]`` for every row ``i`` of ``idx`` (average ranks for ties, as
    :func:`scipy.stats.spearmanr`); NaN where a resample is constant in x or y."""
    rx = resampled_ranks(x, idx)
    ry = resampled_ranks(y, idx)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def _hyperbolic_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``1/(r+1)`` per entry, r = rank in decreasing lexicographic order of (x, y) per row."""
    b, n = x.shape
    order = np.lexsort((y, x), axis=-1)[:, ::-1]
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n), (b, n)), axis=1)
    return 1.0 / (rank + 1.0)


def _weighted_tau_symmetric(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scipy's ``weightedtau(x, y)`` (rank=True) for each row pair of ``x``, ``y`` (B, n): the
    mean of Vigna's τ with additive hyperbolic weights ranked by (x, y) and by (y, x), scipy's
    ``_weightedrankedtau`` written out. With additive weights a sum over pairs
    Σ_{i<j} (w_i + w_j) s_ij of a symmetric s is Σ_i w_i Σ_{j≠i} s_ij, so the pairs' signs are
    summed per model once and serve both weightings."""
    sx = np.sign(x[:, :, None] - x[:, None, :]).astype(np.int8)
    sy = np.sign(y[:, :, None] - y[:, None, :]).astype(np.int8)
    concordance = np.einsum("bij,bij->bi", sx, sy, dtype=np.float64)
    untied_x = np.count_nonzero(sx, axis=2).astype(np.float64)
    untied_y = np.count_nonzero(sy, axis=2).astype(np.float64)
    tau = np.zeros(len(x))
    for w in (_hyperbolic_weights(x, y), _hyperbolic_weights(y, x)):
        with np.errstate(invalid="ignore", divide="ignore"):
            tau += np.einsum("bi,bi->b", w, concordance) / np.sqrt(
                np.einsum("bi,bi->b", w, untied_x) * np.einsum("bi,bi->b", w, untied_y)
            )
    return tau / 2


def weighted_tau_resampled(
    x: np.ndarray, y: np.ndarray, idx: np.ndarray, chunk_pairs: int = 8_000_000
) -> np.ndarray:
    """``scipy.stats.weightedtau(x[i], y[i]).statistic`` (defaults: rank=True, hyperbolic
    additive weights) for every row ``i`` of ``idx``, vectorised (equal to scipy within 1e-15,
    tests/test_analysis.py); rows are processed in chunks of about ``chunk_pairs`` ordered
    pairs (two int8 sign arrays of that size)."""
    n = idx.shape[1]
    step = max(1, chunk_pairs // max(1, n * n))
    out = np.empty(len(idx))
    for start in range(0, len(idx), step):
        rows = idx[start : start + step]
        out[start : start + step] = _weighted_tau_symmetric(x[rows], y[rows])
    return out


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    metric: np.ndarray, truth: np.ndarray, higher_is_better: bool, bootstrap: Bootstrap
) -> dict[str, float]:
    """Percentile intervals of Spearman ρ (raw sign, like ``rho``) and of weighted τ (oriented,
    like ``weighted_tau``) over ``bootstrap.resamples`` resamples of the models (finite pairs
    only; resamples where a correlation is undefined — constant — are left out)."""
    idx = bootstrap.indices(len(metric))
    oriented = metric if higher_is_better else -metric
    rho = spearman_resampled(metric, truth, idx)
    wtau = weighted_tau_resampled(oriented, truth, idx)
    rho_low, rho_high = _percentiles(rho, bootstrap.confidence)
    wtau_low, wtau_high = _percentiles(wtau, bootstrap.confidence)
    return {"rho_boot_low": rho_low, "rho_boot_high": rho_high, "wtau_boot_low": wtau_low,
            "wtau_boot_high": wtau_high}  # fmt: skip


#: Source pools of :func:`source_pools`: the fraction of sources each pool drops, and the most
#: pools drawn when there are more combinations (Agostinelli et al. 2022).
POOL_DROP_FRACTION = 0.1
MAX_POOLS = 200


def source_pools(sources: Sequence[str], seed: int = 0) -> list[tuple[str, ...]]:
    """Sub-sampled source pools: each drops ``max(1, round(0.1 · S))`` of the S sources (all of
    a dropped source's models go together). Every combination when there are at most
    :data:`MAX_POOLS`, else that many drawn with a generator seeded by ``seed``; none for fewer
    than 3 sources."""
    import itertools

    sources = sorted(sources)
    if len(sources) < 3:
        return []
    keep = len(sources) - max(1, round(POOL_DROP_FRACTION * len(sources)))
    if math.comb(len(sources), keep) <= MAX_POOLS:
        return list(itertools.combinations(sources, keep))
    rng = np.random.default_rng(np.random.SeedSequence([seed, len(sources)]))
    pools = {tuple(sorted(rng.choice(sources, keep, replace=False))) for _ in range(4 * MAX_POOLS)}
    return sorted(pools)[:MAX_POOLS]


def source_pool_stability(scores: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """How stable a metric's evaluation is over source pools (Agostinelli et al. 2022, "How
    stable are transferability metrics evaluations?"): over :func:`source_pools` of the models'
    sources, the 5th and 95th percentile of the oriented Spearman ρ (``rho_pool_p05``,
    ``rho_pool_p95``) and ``top1_stable``, the fraction of pools in which the metric's
    top-ranked model is the pool's best model. ``scores``: columns ``value`` (oriented metric)
    and ``truth``, index levels (source, pretrain_step); NaN rows are dropped first."""
    scores = scores.dropna()
    sources = scores.index.get_level_values(0)
    rhos, hits = [], []
    for pool in source_pools(sources.unique(), seed):
        part = scores[sources.isin(pool)]
        if len(part) < 4 or np.ptp(part["value"]) == 0 or np.ptp(part["truth"]) == 0:
            continue
        x, y = snap_ties(part["value"].to_numpy()), part["truth"].to_numpy()
        rhos.append(stats.spearmanr(x, y).statistic)
        hits.append(float(y[np.argmax(x)] == y.max()))
    if not rhos:
        return dict.fromkeys(POOL_COLUMNS, math.nan)
    low, high = np.percentile(rhos, [5.0, 95.0])
    return {"rho_pool_p05": float(low), "rho_pool_p95": float(high),
            "top1_stable": float(np.mean(hits))}  # fmt: skip


def paired_not_better(
    metric: np.ndarray, baseline: np.ndarray, truth: np.ndarray, bootstrap: Bootstrap
) -> float:
    """How often the (oriented) ``metric`` does not rank the models better than the (oriented)
    ``baseline``: the fraction of paired bootstrap resamples — the same resampled models for
    both — where the metric's Spearman ρ with ``truth`` is below the baseline's, ties counting
    one half (so two copies of the same scores give 0.5). Resamples where either ρ is undefined
    are left out; NaN when none is left."""
    idx = bootstrap.indices(len(truth))
    rho_m = spearman_resampled(metric, truth, idx)
    rho_b = spearman_resampled(baseline, truth, idx)
    ok = np.isfinite(rho_m) & np.isfinite(rho_b)
    if not ok.any():
        return math.nan
    below, tied = rho_m[ok] < rho_b[ok], np.isclose(rho_m[ok], rho_b[ok], rtol=0, atol=1e-12)
    return float(np.mean(np.where(tied, 0.5, below)))


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
    metric: Sequence[float],
    truth: Sequence[float],
    higher_is_better: bool = True,
    bootstrap: Bootstrap | None = None,
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
    (ties in the metric broken by model order), else 0.0. With ``bootstrap``, the percentile
    intervals of ρ and weighted τ over resampled models (:func:`bootstrap_intervals`).
    The baseline columns are filled by :func:`correlation_table`.

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
              "best_in_top3": nan, **dict.fromkeys(BOOTSTRAP_COLUMNS, nan),
              "best_baseline": "", "delta_rho_vs_baseline": nan, "p_not_better": nan,
              **dict.fromkeys(POOL_COLUMNS, nan), "note": ""}  # fmt: skip
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
        if bootstrap is not None:
            result.update(bootstrap_intervals(x, y, higher_is_better, bootstrap))
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
    finetune: pd.DataFrame | None,
    directions: dict[str, bool],
    bootstrap: Bootstrap | None = None,
    logauc: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Correlations (:func:`correlate`) between every metric and transfer performance per
    (target, layer, metric), for the four groupings of thesis §3.3; ``directions`` maps each
    metric to ``higher_is_better``. Models are (source, pretrain_step) pairs; values are
    averaged over seeds first.

    - ``all``: every model, metric vs log-AUC;
    - ``source``: one group per source, over its pre-training checkpoints;
    - ``pretrain_step``: one group per pre-training checkpoint, over the sources;
    - ``finetune_step``: one group per fine-tuning checkpoint, metric vs accuracy there.

    With ``bootstrap``: the intervals of :func:`correlate`, and for every metric the strongest
    trivial baseline (``baseline_*`` rows) of the same (target, grouping, group) by oriented ρ
    (``best_baseline``), and on the models both rank (at least 4): the metric's oriented ρ minus
    the baseline's (``delta_rho_vs_baseline``) and :func:`paired_not_better`; for
    grouping ``all`` also :func:`source_pool_stability`.

    ``logauc``: the curves' log-AUCs (:func:`log_auc_table`) when ``finetune`` is not at hand
    (None: no ``finetune_step`` grouping), e.g. recorded tables re-evaluated without re-training.
    """
    model = ["target", "source", "pretrain_step"]
    # checkpoint labels as text everywhere: a CSV holding only step "0" reads it as the integer 0
    if logauc is None:
        logauc = log_auc_table(finetune.astype({"pretrain_step": str}))
    logauc = logauc.astype({"pretrain_step": str}).groupby(model, as_index=False)["logauc"].mean()
    values = (
        metrics.rename(columns={"step": "pretrain_step"})
        .astype({"pretrain_step": str})
        .groupby(model + ["layer", "metric"], as_index=False)["value"]
        .mean()
    )
    with_auc = values.merge(logauc, on=model, how="inner")
    rows = []
    scores = {}  # row number → (oriented value, truth) per model, for the paired comparisons

    def add(frame, truth, grouping, group_col):
        keys = ["target", "layer", "metric"] + ([group_col] if group_col else [])
        for key, part in frame.groupby(keys, sort=True):
            key = dict(zip(keys, key, strict=True))
            group = str(key.pop(group_col)) if group_col else "all"
            higher = directions[key["metric"]]
            row = correlate(part["value"], part[truth], higher, bootstrap)
            rows.append({"track": track, **key, "grouping": grouping, "group": group, **row})
            oriented = part["value"] if higher else -part["value"]
            index = pd.MultiIndex.from_frame(part[["source", "pretrain_step"]])
            scores[len(rows) - 1] = pd.DataFrame(
                {"value": oriented.to_numpy(), "truth": part[truth].to_numpy()}, index=index
            )

    add(with_auc, "logauc", "all", None)
    add(with_auc, "logauc", "source", "source")
    add(with_auc, "logauc", "pretrain_step", "pretrain_step")
    if finetune is not None:
        finetune = finetune.astype({"pretrain_step": str})
        accuracy = finetune.groupby(model + ["finetune_step"], as_index=False)["test_accuracy"]
        with_acc = values.merge(accuracy.mean(), on=model, how="inner")
        add(with_acc, "test_accuracy", "finetune_step", "finetune_step")
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    if bootstrap is not None:
        _compare_with_baselines(table, scores, bootstrap)
        for i in table.index[(table["grouping"] == "all") & table["rho_oriented"].notna()]:
            for column, value in source_pool_stability(scores[i], bootstrap.seed).items():
                table.at[i, column] = value
    return table


def _compare_with_baselines(
    table: pd.DataFrame, scores: dict[int, pd.DataFrame], bootstrap: Bootstrap
) -> None:
    """Fill :data:`BASELINE_COLUMNS` of every metric row of ``table`` in place."""
    is_baseline = table["metric"].str.startswith(BASELINE_PREFIX)
    for _, group in table.groupby(["target", "grouping", "group"], sort=False):
        candidates = group[is_baseline[group.index] & group["rho_oriented"].notna()]
        if candidates.empty:
            continue
        best = candidates["rho_oriented"].idxmax()
        base = scores[best]
        for i in group.index[~is_baseline[group.index]]:
            if not np.isfinite(table.at[i, "rho_oriented"]):
                continue
            table.at[i, "best_baseline"] = table.at[best, "metric"]
            # both on the models both rank (a study metric may cover only some of them)
            if scores[i].index.equals(base.index):  # the usual case: no join needed
                both = scores[i].assign(baseline=base["value"].to_numpy()).dropna()
            else:
                both = scores[i].join(base["value"].rename("baseline"), how="inner").dropna()
            if len(both) < 4:
                continue
            metric, baseline = (snap_ties(both[c].to_numpy()) for c in ("value", "baseline"))
            truth = both["truth"].to_numpy()
            whole = np.arange(len(truth))[None]  # one "resample": the models themselves
            delta = spearman_resampled(metric, truth, whole) - spearman_resampled(
                baseline, truth, whole
            )
            table.at[i, "delta_rho_vs_baseline"] = float(delta[0])
            table.at[i, "p_not_better"] = paired_not_better(metric, baseline, truth, bootstrap)


#: Columns of the leaderboard (:func:`leaderboard_table`), after the correlation row's.
LEADERBOARD_EXTRA = ["rank", "kind", "rho_oriented_low", "rho_oriented_high"]


def leaderboard_table(correlations: pd.DataFrame) -> pd.DataFrame:
    """One row per (track, target, metric) at grouping ``all``: the metric's correlation row at
    its best layer (largest oriented ρ), baselines included (``kind`` = ``metric`` or
    ``baseline``), ranked by oriented ρ within each (track, target). ``rho_oriented_low``,
    ``rho_oriented_high``: the bootstrap interval of ρ with the metric's direction applied.
    Metrics whose ρ is undefined at every layer come last, unranked (NaN)."""
    rows = correlations[correlations["grouping"] == "all"].copy()
    flip = np.sign(rows["rho_oriented"] * rows["rho"]) < 0
    rows["rho_oriented_low"] = np.where(flip, -rows["rho_boot_high"], rows["rho_boot_low"])
    rows["rho_oriented_high"] = np.where(flip, -rows["rho_boot_low"], rows["rho_boot_high"])
    rows["kind"] = np.where(rows["metric"].str.startswith(BASELINE_PREFIX), "baseline", "metric")
    rows = rows.sort_values(["track", "target", "metric", "rho_oriented"], ascending=[
        True, True, True, False], na_position="last", kind="stable")  # fmt: skip
    best = rows.drop_duplicates(["track", "target", "metric"], keep="first")
    best = best.sort_values(["track", "target", "rho_oriented"], ascending=[True, True, False],
                            na_position="last", kind="stable")  # fmt: skip
    best["rank"] = best.groupby(["track", "target"])["rho_oriented"].rank(
        ascending=False, method="min"
    )
    columns = ["track", "target", "rank", "metric", "kind", "layer", "n", "rho_oriented",
               "rho_oriented_low", "rho_oriented_high", "rho", "pvalue", "significant",
               "weighted_tau", "wtau_boot_low", "wtau_boot_high", "relative_top1",
               *BASELINE_COLUMNS, *POOL_COLUMNS, "note"]  # fmt: skip
    return best[columns].reset_index(drop=True)
