"""Figures of the three studies (QUANTA, layer transfer, random tasks), drawn from the tidy
tables only (never from raw data).

Each function takes the tables by name and returns a figure; the caller sets the seaborn theme
and saves it (as ``transferability.report.figures.draw_figure`` does). ``STUDY_FIGURES`` maps each
figure name to its function and the names of the tables it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from transferability.report.plots import (  # noqa: E402
    _layer_order,
    _legend_below,
    _no_data,
    _panels,
    _source_palette,
    _table,
    log_position,
)
from transferability.training.schedule import sort_labels  # noqa: E402

#: Colours of the layer-transfer variants (Yosinski et al.: A red/orange, B blue/cyan).
VARIANT_COLORS: dict[str, str] = {
    "AnB_frozen": "C3",
    "AnB_ft": "C1",
    "BnB_frozen": "C0",
    "BnB_ft": "C9",
}
#: Ground truths of the random-tasks study, in display order (others follow, sorted).
GROUND_TRUTHS: tuple[str, ...] = ("head", "finetune")
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
_SIG_LEVEL = 0.05


# --------------------------------------------------------------------------- shared helpers


def _last_pretrain_step(data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows of the last pre-training checkpoint when there are several, and a title note."""
    if "pretrain_step" not in data or data["pretrain_step"].nunique(dropna=False) <= 1:
        return data, ""
    labels = data["pretrain_step"].astype(str)
    try:
        last = sort_labels(labels.unique().tolist())[-1]
    except ValueError:
        last = sorted(labels.unique())[-1]
    return data[labels == last], f"; pre-training checkpoint {last}"


def _facet(data: pd.DataFrame, column: str) -> pd.Series:
    """Panel labels from ``column``, prefixed by the track when the table has several."""
    labels = data[column].astype(str)
    if "track" in data and data["track"].nunique() > 1:
        labels = data["track"].astype(str) + " · " + labels
    return labels


def _family_facet(data: pd.DataFrame) -> pd.Series:
    """Panel labels "family (setting)" (setting only where given), track-prefixed if needed."""
    labels = "family " + data["family"].astype(str)
    if "setting" in data:
        setting = data["setting"].fillna("").astype(str).str.strip()
        labels = labels.where(setting == "", labels + " (" + setting + ")")
    if "track" in data and data["track"].nunique() > 1:
        labels = data["track"].astype(str) + " · " + labels
    return labels


def _ordered(values: Iterable, preferred: Sequence = ()) -> list:
    """Unique ``values``: those in ``preferred`` first (in its order), then the rest sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _mean_std(data: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, sd (NaN for a single value) and count of ``value`` per ``keys`` (NaNs skipped)."""
    return data.groupby(keys, dropna=False)[value].agg(["mean", "std", "count"]).reset_index()


def _errorbar_line(ax: plt.Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, **style) -> None:
    """Line with markers; ±``std`` error bars only where the sd is defined (> 1 value)."""
    (line,) = ax.plot(x, mean, lw=1.6, ms=5, **style)
    ok = np.isfinite(mean) & np.isfinite(std)
    if ok.any():
        ax.errorbar(x[ok], mean[ok], yerr=std[ok], fmt="none", ecolor=line.get_color(),
                    elinewidth=1, capsize=3)  # fmt: skip


def _dodge(i: int, count: int, step: float) -> float:
    """Offset of series ``i`` of ``count`` so that error bars at one x do not overlap."""
    return (i - (count - 1) / 2) * step


def _shared_labels(fig: plt.Figure, axes: np.ndarray, xlabel: str, ylabel: str) -> None:
    """The x label under each bottom-row panel, one y label for the whole grid (left)."""
    for (row, _), ax in np.ndenumerate(axes):
        ax.set_xlabel(xlabel if row == axes.shape[0] - 1 else "")
        ax.set_ylabel("")
    if ylabel:
        fig.supylabel(ylabel, fontsize="medium")


# --------------------------------------------------------------------------- QUANTA


def _lambda_limits(values: Iterable[float]) -> tuple[float, float]:
    """y-limits around the λ values (and inits) drawn, inside [0, 1]: λ_S often moves by a few
    hundredths only, which a fixed 0–1 axis would hide."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not len(finite):
        return -0.03, 1.03
    low, high = finite.min(), finite.max()
    pad = 0.1 * (high - low) + 0.01
    return max(-0.03, low - pad), min(1.03, high + pad)


def quanta_lambda(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """QUANTA score (λ_S at the end of training) per mixed layer, as in the QUANTA paper's
    Figs. 4/5.

    Panels: rows = target, columns = initial λ_S. x: layers in network order; one line per
    source, mean ± 1 std over seeds (no bar with a single seed). The dashed line is the panel's
    λ init: a score above it means the target relied more on the source's layer than at the
    start, below it that the target preferred its own layer.
    """
    columns = ("target", "source", "seed", "layer", "lambda_init", "score")
    data, step_note = _last_pretrain_step(_table(tables, "quanta_scores", columns))
    data["panel"] = _facet(data, "target")
    stats = _mean_std(data, ["panel", "lambda_init", "source", "layer"], "score")
    targets = sorted(stats["panel"].unique())
    inits = sorted(stats["lambda_init"].unique(), reverse=True)
    sources = sorted(stats["source"].astype(str).unique())
    palette = _source_palette(sources)
    order = _layer_order(stats["layer"].unique())
    x = np.arange(len(order), dtype=float)
    fig, axes = _panels(len(targets), len(inits), 3.6, 3.0, sharey=True)
    spread = stats["std"].fillna(0)
    limits = _lambda_limits([*(stats["mean"] - spread), *(stats["mean"] + spread), *inits])
    for (row, col), ax in np.ndenumerate(axes):
        target, init = targets[row], inits[col]
        part = stats[(stats["panel"] == target) & (stats["lambda_init"] == init)]
        title = f"target {target} · λ init {init:g}"
        ax.set_xticks(x, order)
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_ylim(*limits)
        if part.empty:
            _no_data(ax, title)
            continue
        for i, source in enumerate(sources):
            line = part[part["source"].astype(str) == source].set_index("layer").reindex(order)
            if line["mean"].isna().all():
                continue
            _errorbar_line(ax, x + _dodge(i, len(sources), 0.06), line["mean"].to_numpy(),
                           line["std"].to_numpy(), color=palette[source], marker="o",
                           label=source)  # fmt: skip
        ax.axhline(init, color="0.35", ls="--", lw=1, label="λ init")
        ax.set_title(title, fontsize="medium")
    _shared_labels(fig, axes, "mixed layer", "QUANTA score λ_S")
    handles = [Line2D([], [], color=palette[s], marker="o") for s in sources]
    handles.append(Line2D([], [], color="0.35", ls="--"))
    _legend_below(fig, handles, [*sources, "λ init"], title="source")
    n_seeds = data["seed"].nunique()
    fig.suptitle(
        f"QUANTA score per layer: mean λ_S of the last epochs, mean ± 1 std over {n_seeds} "
        f"seed(s){step_note}\nabove the dashed λ init = the target relied more on the source layer"
    )
    return fig


def quanta_epochs(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """λ_S over QUANTA training epochs for the largest initial λ_S in the table.

    Panels: rows = target, columns = source; one line per mixed layer, mean over runs and seeds
    with an sd band where there is more than one run/seed. Epoch 0 is before training; the
    dashed line is λ init. A line rising above it means training moved weight to the source's
    layer, a falling one that the target's own layer was preferred.
    """
    columns = ("target", "source", "layer", "lambda_init", "epoch", "lambda_s")
    data, step_note = _last_pretrain_step(_table(tables, "quanta", columns))
    init = data["lambda_init"].max()
    data = data[data["lambda_init"] == init].copy()
    data["panel"] = _facet(data, "target")
    data["source"] = data["source"].astype(str)
    targets = sorted(data["panel"].unique())
    sources = sorted(data["source"].unique())
    order = _layer_order(data["layer"].unique())
    palette = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    fig, axes = _panels(len(targets), len(sources), 3.6, 3.0, sharex=True, sharey=True)
    limits = _lambda_limits([*data["lambda_s"], init])
    for (row, col), ax in np.ndenumerate(axes):
        target, source = targets[row], sources[col]
        part = data[(data["panel"] == target) & (data["source"] == source)]
        part = part.dropna(subset=["lambda_s"])
        title = f"target {target}\nsource {source}"
        ax.set_ylim(*limits)
        if part.empty:
            _no_data(ax, title)
            continue
        replicated = part.groupby(["layer", "epoch"]).size().max() > 1
        sns.lineplot(
            data=part, x="epoch", y="lambda_s", hue="layer", hue_order=order, palette=palette,
            errorbar="sd" if replicated else None, legend=False, ax=ax, lw=1.5,
            err_kws={"alpha": 0.15},
        )  # fmt: skip
        ax.axhline(init, color="0.35", ls="--", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize="medium")
    _shared_labels(fig, axes, "epoch (0 = before training)", "λ_S")
    handles = [Line2D([], [], color=palette[layer], lw=2) for layer in order]
    handles.append(Line2D([], [], color="0.35", ls="--"))
    _legend_below(fig, handles, [*order, "λ init"], title="mixed layer")
    fig.suptitle(
        f"λ_S during QUANTA training (λ init = {init:g}{step_note}); mean over runs and seeds, "
        "band = sd"
    )
    return fig


# --------------------------------------------------------------------------- layer transfer


def layer_transfer(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Final test accuracy against the number n of copied layers (Yosinski et al.; the Uppsala
    report's Fig. 3).

    One panel per target; one line per variant, mean ± std over seeds of the last checkpoint
    of each fine-tuning curve. AnB copies n layers of a model trained on another task (label
    "[base]" when a target has several), BnB of one trained on the target itself; "frozen"
    keeps the copied layers fixed, "ft" fine-tunes them. A BnB_frozen drop shows co-adapted
    layers; AnB_frozen below BnB_frozen shows that the layers were specific to the base task.
    """
    columns = ("target", "base", "role", "variant", "n", "seed", "samples", "test_accuracy")
    data = _table(tables, "layer_transfer", columns)
    curve = [c for c in ("track", "target", "base", "role", "variant", "n", "seed") if c in data]
    final = data.sort_values("samples", kind="stable", na_position="first")
    final = final.groupby(curve, dropna=False).tail(1).copy()
    final["panel"] = _facet(final, "target")
    final["base"] = final["base"].astype(str)
    role_a = final["role"].astype(str) == "A"
    several = role_a.any() and final[role_a].groupby("panel")["base"].nunique().max() > 1
    final["line"] = final["variant"].astype(str)
    if several:
        final.loc[role_a, "line"] = final["line"] + " [" + final["base"] + "]"
    variants = _ordered(final["variant"].astype(str), tuple(VARIANT_COLORS))
    extra = [v for v in variants if v not in VARIANT_COLORS]
    colors = {**VARIANT_COLORS, **dict(zip(extra, [f"C{4 + i}" for i in range(10)], strict=False))}
    bases = sorted(final.loc[role_a, "base"].unique()) if several else []
    lines = (
        final[["variant", "line", "base", "role"]]
        .drop_duplicates("line")
        .assign(order=lambda d: d["variant"].astype(str).map(variants.index))
        .sort_values(["order", "line"])
    )
    styles = {}
    for row in lines.itertuples():
        k = bases.index(row.base) if row.base in bases and str(row.role) == "A" else 0
        styles[row.line] = {"color": colors[str(row.variant)], "ls": _LINESTYLES[k % 4],
                            "marker": _MARKERS[k % len(_MARKERS)]}  # fmt: skip
    stats = _mean_std(final, ["panel", "line", "n"], "test_accuracy")
    targets = sorted(stats["panel"].unique())
    ns = sorted(int(n) for n in stats["n"].dropna().unique())
    fig, axes = _panels(1, len(targets), 4.6, 3.6)
    for ax, target in zip(axes[0], targets, strict=True):
        part = stats[stats["panel"] == target]
        present = [line for line in styles if line in set(part["line"])]
        for i, label in enumerate(present):
            line = part[part["line"] == label].sort_values("n")
            _errorbar_line(ax, line["n"].to_numpy(float) + _dodge(i, len(present), 0.05),
                           line["mean"].to_numpy(), line["std"].to_numpy(), label=label,
                           **styles[label])  # fmt: skip
        low = (part["mean"] - part["std"].fillna(0)).min()
        high = (part["mean"] + part["std"].fillna(0)).max()
        if np.isfinite(low) and np.isfinite(high):
            pad = 0.08 * (high - low) + 0.01
            ax.set_ylim(max(0.0, low - pad), min(1.01, high + pad))
        ax.set_xticks(ns)
        ax.set_title(f"target {target}", fontsize="medium")
        ax.set(xlabel="copied layers n", ylabel="final test accuracy")
    handles = [Line2D([], [], **style) for style in styles.values()]
    _legend_below(fig, handles, list(styles), title="variant")
    fig.suptitle(
        f"Layer transfer: final test accuracy vs copied layers, mean ± std over "
        f"{final['seed'].nunique()} seed(s)"
    )
    return fig


# --------------------------------------------------------------------------- random tasks


def _gt_palette(ground_truths: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(ground_truths, sns.color_palette("Set2", len(ground_truths)), strict=True))


def _pick_metric(data: pd.DataFrame, preferred: str = "leep") -> str:
    metrics = list(dict.fromkeys(data["metric"].astype(str)))
    return preferred if preferred in metrics else metrics[0]


def random_tasks_pearson(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Pearson r between each metric and the ground truth over the random tasks (the LEEP
    paper's Table 1 as a chart).

    Panels: rows = task family, columns = source model. One horizontal bar per metric and
    layer ("metric @ layer"; just "metric" for logits), in the table's order, coloured by the
    ground truth (accuracy of a re-trained head or of fine-tuning). "*" marks p < 0.05; "n/a"
    an undefined r. Bars to the right: the metric ranks tasks like their accuracy.
    """
    columns = ("family", "source", "layer", "metric", "ground_truth", "r", "pvalue")
    data = _table(tables, "random_tasks_pearson", columns)
    layer = data["layer"].fillna("").astype(str).str.strip()
    data["label"] = (
        data["metric"]
        .astype(str)
        .where(layer.isin(["", "logits"]), data["metric"].astype(str) + " @ " + layer)
    )
    data["panel"] = _family_facet(data)
    data["source"] = data["source"].astype(str)
    data["ground_truth"] = data["ground_truth"].astype(str)
    labels = list(dict.fromkeys(data["label"]))
    gts = _ordered(data["ground_truth"], GROUND_TRUTHS)
    palette = _gt_palette(gts)
    families = sorted(data["panel"].unique())
    sources = sorted(data["source"].unique())
    height = 0.8 / len(gts)
    fig, axes = _panels(len(families), len(sources), 4.4, 0.22 * len(labels) * len(gts) + 1.4,
                        sharey=True)  # fmt: skip
    y = np.arange(len(labels), dtype=float)
    for (row, col), ax in np.ndenumerate(axes):
        family, source = families[row], sources[col]
        part = data[(data["panel"] == family) & (data["source"] == source)]
        title = f"{family}\nsource {source}{_f1_note(part)}"
        ax.set_yticks(y, labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first metric on top
        if part.empty:
            ax.set_title(title, fontsize="medium")
            ax.text(0, (len(labels) - 1) / 2, "no data", ha="center", va="center", color="0.5")
            ax.set_xlim(-1, 1)
            continue
        for j, gt in enumerate(gts):
            rows = part[part["ground_truth"] == gt].drop_duplicates("label")
            known = set(rows["label"])
            rows = rows.set_index("label").reindex(labels)
            yy = y + _dodge(j, len(gts), height)
            r = rows["r"].to_numpy(float)
            ax.barh(yy, np.nan_to_num(r), height=height * 0.95, color=palette[gt], label=gt)
            for label, yi, ri, pi in zip(labels, yy, r, rows["pvalue"], strict=True):
                if label not in known:
                    continue
                if not np.isfinite(ri):
                    ax.text(0.03, yi, "n/a", va="center", ha="left", fontsize=7, color="0.4")
                elif pd.notna(pi) and pi < _SIG_LEVEL:
                    inside = abs(ri) > 0.88  # keep the star inside the axes near |r| = 1
                    sign = 1 if ri >= 0 else -1
                    xs = ri - sign * 0.02 if inside else ri + sign * 0.02
                    ha = ("right" if sign > 0 else "left") if inside else (
                        "left" if sign > 0 else "right")  # fmt: skip
                    ax.text(xs, yi, "*", va="center", ha=ha, fontsize=10, fontweight="bold")
        ax.axvline(0, color="0.3", lw=0.9)
        ax.set_xlim(-1, 1)
        ax.set_title(title, fontsize="medium")
        ax.grid(axis="y", visible=False)
    _shared_labels(fig, axes, "Pearson r", "")
    handles = [Patch(color=palette[gt]) for gt in gts]
    _legend_below(fig, handles, gts, title="ground truth (* p < 0.05)")
    fig.suptitle("Pearson r of each metric with the random tasks' accuracy" + (
        " (macro F1 for imbalanced families)" if _uses_f1(data) else ""))  # fmt: skip
    return fig


def _uses_f1(data: pd.DataFrame) -> bool:
    return "performance" in data and (data["performance"] == "f1").any()


def _f1_note(part: pd.DataFrame) -> str:
    """Panel-title note for a family whose ground truth is macro F1 (imbalanced, LEEP §5.3)."""
    return " · macro F1" if _uses_f1(part) else ""


def _distinguishing_digits(bounds: np.ndarray, most: int = 4) -> int:
    """Decimals that tell every finite level bound apart (at least 1, at most ``most``)."""
    finite = np.unique(bounds[np.isfinite(bounds)])
    for digits in range(1, most + 1):
        if len(np.unique(np.round(finite, digits))) == len(finite):
            return digits
    return most


def random_tasks_levels(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Mean test accuracy of the random tasks per transferability level (the LEEP paper's
    Fig. 2).

    The tasks are binned by their LEEP score (or the table's first metric when LEEP is absent)
    into levels 1 (lowest score) .. 5; bars give the mean accuracy of the tasks in each level,
    coloured by ground truth, with the task count on top. Panels: rows = task family, columns =
    source. A good metric gives bars rising with the level; empty bins have no bar.
    """
    columns = ("family", "source", "metric", "ground_truth", "level", "mean_accuracy", "n")
    data = _table(tables, "random_tasks_levels", columns)
    metric = _pick_metric(data)
    data = data[data["metric"].astype(str) == metric].dropna(subset=["level"])
    layer_note = ""
    if "layer" in data and data["layer"].nunique() > 1:
        first = data["layer"].dropna().iloc[0]
        data = data[data["layer"] == first]
        layer_note = f" @ {first}"
    data = data.copy()
    data["panel"] = _family_facet(data)
    data["source"] = data["source"].astype(str)
    data["ground_truth"] = data["ground_truth"].astype(str)
    gts = _ordered(data["ground_truth"], GROUND_TRUTHS)
    palette = _gt_palette(gts)
    families = sorted(data["panel"].unique())
    sources = sorted(data["source"].unique())
    levels = sorted(int(level) for level in data["level"].dropna().unique())
    x = np.arange(len(levels), dtype=float)
    width = 0.8 / len(gts)
    fig, axes = _panels(len(families), len(sources), max(3.6, 0.75 * len(levels)), 3.3,
                        sharey=True)  # fmt: skip
    for (row, col), ax in np.ndenumerate(axes):
        family, source = families[row], sources[col]
        part = data[(data["panel"] == family) & (data["source"] == source)]
        title = f"{family}\nsource {source}{_f1_note(part)}"
        if part.empty:
            _no_data(ax, title)
            continue
        for j, gt in enumerate(gts):
            rows = part[part["ground_truth"] == gt].drop_duplicates("level")
            rows = rows.set_index(rows["level"].astype(int)).reindex(levels)
            xx = x + _dodge(j, len(gts), width)
            acc = rows["mean_accuracy"].to_numpy(float)
            ax.bar(xx, acc, width=width * 0.95, color=palette[gt], label=gt)
            for xi, ai, ni in zip(xx, acc, rows["n"], strict=True):
                if np.isfinite(ai) and pd.notna(ni):
                    ax.text(xi, ai + 0.015, f"{int(ni)}", ha="center", va="bottom", fontsize=7)
        ticks = [str(level) for level in levels]
        if {"low", "high"} <= set(part.columns):
            bounds = part.groupby(part["level"].astype(int))[["low", "high"]].first()
            bounds = bounds.reindex(levels)
            digits = _distinguishing_digits(bounds.to_numpy(float))
            ticks = [
                f"{level}\n{lo:.{digits}f}\n…{hi:.{digits}f}"
                if np.isfinite(lo) and np.isfinite(hi)
                else tick
                for level, tick, lo, hi in zip(
                    levels,
                    ticks,
                    bounds["low"].astype(float),
                    bounds["high"].astype(float),
                    strict=True,
                )
            ]
        ax.set_xticks(x, ticks, fontsize="x-small" if len(ticks[0]) > 2 else None)
        ax.set_ylim(0, 1.1)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(title, fontsize="medium")
        ax.grid(axis="x", visible=False)
    _shared_labels(fig, axes, f"{metric} level [score range]",
                   "mean test accuracy" + (" or macro F1" if _uses_f1(data) else ""))  # fmt: skip
    handles = [Patch(color=palette[gt]) for gt in gts]
    _legend_below(fig, handles, gts, title="ground truth (numbers on bars: tasks in the level)")
    fig.suptitle(f"Mean test accuracy per {metric}{layer_note} level (1 = lowest score)")
    return fig


def random_tasks_convergence(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Fine-tuned accuracy minus the reference model's final accuracy over fine-tuning samples,
    per transferability level (the LEEP paper's Fig. 4).

    Panels: rows = task family, columns = source; one line per LEEP level (darker = higher
    level), mean over the level's tasks. Above the dashed zero line the transferred model beats
    the task's reference model; a good metric puts higher levels higher, especially early in
    fine-tuning. Samples 0 is drawn at the left end of the log axis.
    """
    columns = ("family", "source", "level", "samples", "accuracy_difference")
    data = _table(tables, "random_tasks_convergence", columns)
    metric = ""
    if "metric" in data:
        metric = _pick_metric(data)
        data = data[data["metric"].astype(str) == metric].copy()
    data["x"] = log_position(data["samples"].astype(float))
    data["panel"] = _family_facet(data)
    data["source"] = data["source"].astype(str)
    data = data.dropna(subset=["level"])
    data["level"] = data["level"].astype(int)
    stats = data.groupby(["panel", "source", "level", "x"], as_index=False)[
        "accuracy_difference"
    ].mean()
    families = sorted(stats["panel"].unique())
    sources = sorted(stats["source"].unique())
    levels = sorted(stats["level"].unique())
    palette = dict(zip(levels, sns.color_palette("crest", len(levels)), strict=True))
    fig, axes = _panels(len(families), len(sources), 4.0, 3.1, sharex=True, sharey=True)
    for (row, col), ax in np.ndenumerate(axes):
        family, source = families[row], sources[col]
        part = stats[(stats["panel"] == family) & (stats["source"] == source)]
        title = f"{family}\nsource {source}"
        if part.empty:
            _no_data(ax, title)
            continue
        for level in levels:
            line = part[part["level"] == level].sort_values("x")
            ax.plot(line["x"], line["accuracy_difference"], color=palette[level], marker="o",
                    ms=3, lw=1.6, label=f"level {level}")  # fmt: skip
        ax.axhline(0, color="0.3", ls="--", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: no overlaps
        counts = np.sort(part["x"].dropna().unique())
        if len(counts) and counts.max() / max(counts.min(), 1e-12) < 100:  # < 2 decades
            ax.set_xticks(counts, [f"{c:g}" for c in counts], fontsize="small")
        ax.set_title(title, fontsize="medium")
    _shared_labels(
        fig, axes, "fine-tuning samples (log; 0 at left)", "accuracy − reference accuracy"
    )
    handles = [Line2D([], [], color=palette[level], marker="o", ms=3) for level in levels]
    title = f"{metric} level" if metric else "level"
    _legend_below(fig, handles, [f"level {level}" for level in levels], title=title)
    fig.suptitle(
        f"Fine-tuned minus reference accuracy per {metric or 'transferability'} level\n"
        "(mean over the level's tasks; above 0 = better than the reference model)"
    )
    return fig


STUDY_FIGURES: dict[
    str, tuple[Callable[[Mapping[str, pd.DataFrame]], plt.Figure], tuple[str, ...]]
] = {
    "quanta_lambda": (quanta_lambda, ("quanta_scores",)),
    "quanta_epochs": (quanta_epochs, ("quanta",)),
    "layer_transfer": (layer_transfer, ("layer_transfer",)),
    "random_tasks_pearson": (random_tasks_pearson, ("random_tasks_pearson",)),
    "random_tasks_levels": (random_tasks_levels, ("random_tasks_levels",)),
    "random_tasks_convergence": (random_tasks_convergence, ("random_tasks_convergence",)),
}
