"""Figures drawn from the tidy tables only (never from raw activations), PNG + PDF."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from transferability.analysis import ZERO_OFFSET  # noqa: E402
from transferability.artifacts import atomic_path  # noqa: E402
from transferability.layers import CNN_LAYERS  # noqa: E402
from transferability.schedule import sort_labels  # noqa: E402


def log_position(progress: pd.Series) -> pd.Series:
    """Progress with 0 moved to the log-AUC convention's place (first non-zero × 10^-0.5)."""
    positive = progress[progress > 0]
    zero_at = positive.min() * ZERO_OFFSET if len(positive) else 1.0
    return progress.where(progress > 0, zero_at)


def _layer_order(layers) -> list[str]:
    known = [layer for layer in CNN_LAYERS if layer in set(layers)]
    return known + sorted(set(layers) - set(known))


def _source_palette(sources) -> dict[str, tuple]:
    return dict(zip(sources, sns.color_palette("tab10", len(sources)), strict=False))


def pretrain_accuracy(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Test accuracy over pre-training (log epochs), mean ± 2 std over seeds, per source."""
    history = tables["pretrain"].copy()
    history["epochs (log)"] = log_position(history["epochs"])
    sources = sorted(history["source"].unique())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(
        data=history,
        x="epochs (log)",
        y="test_accuracy",
        hue="source",
        hue_order=sources,
        palette=_source_palette(sources),
        errorbar=("sd", 2),
        marker="o",
        ax=ax,
    )
    ax.set(
        xscale="log",
        xlabel="pre-training epochs (0 drawn at the left end)",
        ylabel="test accuracy",
        title="Pre-training accuracy per source",
    )
    ax.legend(title="source", fontsize="small")
    return fig


def metrics_per_layer(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Each metric per layer and target at the last pre-training checkpoint, mean ± 2 std over
    seeds, one line per source."""
    metrics = tables["metrics"]
    last = sort_labels(metrics["step"].astype(str).unique().tolist())[-1]
    data = metrics[metrics["step"].astype(str) == last].copy()
    order = _layer_order(data["layer"].unique())
    data["layer_position"] = data["layer"].map({layer: i for i, layer in enumerate(order)})
    sources = sorted(data["source"].unique())
    grid = sns.relplot(
        data=data, x="layer_position", y="value", hue="source", row="target", col="metric",
        kind="line", errorbar=("sd", 2), marker="o", height=2.8, aspect=1.3,
        facet_kws={"sharey": False}, palette=_source_palette(sources), hue_order=sources,
    )  # fmt: skip
    for ax in grid.axes.flat:
        ax.set_xticks(range(len(order)), order, rotation=45)
    grid.set_axis_labels("layer", "value")
    grid.figure.suptitle(f"Metrics per layer at pre-training checkpoint {last}", y=1.02)
    return grid.figure


def finetune_curves(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Fine-tuning accuracy (mean over seeds) over log samples: colour = source, lightness =
    pre-training checkpoint (light = early)."""
    data = tables["finetune"].copy()
    data["x"] = log_position(data["samples"].astype(float))
    mean = data.groupby(["target", "source", "pretrain_step", "x"], as_index=False)[
        "test_accuracy"
    ].mean()
    targets = sorted(mean["target"].unique())
    sources = sorted(mean["source"].unique())
    palette = _source_palette(sources)
    steps = sort_labels(mean["pretrain_step"].astype(str).unique().tolist())
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.5), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        for source in sources:
            base = np.array(to_rgb(palette[source]))
            for i, step in enumerate(steps):
                curve = mean[
                    (mean["target"] == target)
                    & (mean["source"] == source)
                    & (mean["pretrain_step"].astype(str) == step)
                ]
                shade = 0.75 * (1 - (i + 1) / len(steps))  # later checkpoints darker
                ax.plot(
                    curve["x"],
                    curve["test_accuracy"],
                    color=base + (1 - base) * shade,
                    lw=1.2,
                    label=source if i == len(steps) - 1 else None,
                )
        ax.set(
            xscale="log",
            title=f"target {target}",
            xlabel="fine-tuning samples seen (log)",
            ylabel="test accuracy",
        )
    axes[0][-1].legend(title="source (dark = late checkpoint)", fontsize="small")
    fig.tight_layout()
    return fig


def correlations(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Spearman ρ (all models, metric vs log-AUC) per layer, one panel per metric, one line per
    target, with the Fisher 95 % band for ρ = 0; filled markers are significant. The thesis
    expects negative ρ for lower-is-better metrics (ID, SS) and positive ρ otherwise."""
    data = tables["correlations"]
    data = data[data["grouping"] == "all"]
    targets = sorted(data["target"].unique())
    metric_names = list(dict.fromkeys(data["metric"]))
    ncols = min(5, len(metric_names))
    nrows = -(-len(metric_names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True,
                             figsize=(3.4 * ncols, 3.0 * nrows))  # fmt: skip
    for ax, metric in zip(axes.flat, metric_names, strict=False):
        part = data[data["metric"] == metric]
        order = _layer_order(part["layer"].unique())
        x = np.arange(len(order))
        band = part.groupby("layer")[["ci_low", "ci_high"]].first().reindex(order)
        ax.fill_between(x, band["ci_low"], band["ci_high"], color="0.88", label="Fisher 95 %")
        for i, target in enumerate(targets):
            line = part[part["target"] == target].set_index("layer").reindex(order)
            sig = line["significant"].fillna(False).astype(bool).to_numpy()
            ax.plot(x, line["rho"], color=f"C{i}", lw=1.5, label=target)
            ax.scatter(x[sig], line["rho"][sig], color=f"C{i}", zorder=3)
            ax.scatter(x[~sig], line["rho"][~sig], facecolor="white", edgecolor=f"C{i}", zorder=3)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(x, order, rotation=45)
        ax.set(ylim=(-1.05, 1.05), title=metric, ylabel="Spearman ρ vs log-AUC")
    for ax in axes.flat[len(metric_names) :]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1.0))  # fmt: skip
    return fig


FIGURES: dict[str, Callable[[Mapping[str, pd.DataFrame]], plt.Figure]] = {
    "pretrain_accuracy": pretrain_accuracy,
    "metrics_per_layer": metrics_per_layer,
    "finetune_curves": finetune_curves,
    "correlations": correlations,
}


def draw_figure(
    name: str, table_paths: Mapping[str, str | os.PathLike], *outputs: str | Path
) -> None:
    """Draw figure ``name`` from CSV tables and save it to each output (format from suffix)."""
    from transferability.plots_studies import STUDY_FIGURES

    draw = {**FIGURES, **{key: fn for key, (fn, _) in STUDY_FIGURES.items()}}
    if name not in draw:
        raise ValueError(f"unknown figure {name!r}; known: {sorted(draw)}")
    tables = {key: pd.read_csv(path) for key, path in table_paths.items()}
    sns.set_theme(style="whitegrid", context="notebook")
    fig = draw[name](tables)
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(out).suffix[1:])
    plt.close(fig)
