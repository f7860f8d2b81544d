"""Figures drawn from the tidy tables only (never from raw activations), PNG + PDF.

Each figure function takes the tables by name (``pretrain``, ``metrics``, ``finetune``,
``logauc``, ``correlations``) and returns a figure;
:func:`transferability.report.figures.draw_figure`
sets the seaborn theme and saves it. ``FIGURES`` maps each figure name to its function,
``FIGURE_TABLES`` to the tables it reads. Fine-tuning progress is drawn on a log axis with
checkpoint 0 moved to the log-AUC convention's place (:func:`log_position`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from transferability.evaluation.analysis import ZERO_OFFSET, fisher_interval  # noqa: E402
from transferability.training.schedule import sort_labels  # noqa: E402

#: Network order of every recorded layer name of both tracks: the thesis CNN (input, conv1,
#: pool1, conv2, pool2, fc1, fc2), the VGGs (pool1..pool5, fc6..fc8) and ``logits`` (the
#: prediction-based metrics) last. Unknown names follow, sorted.
LAYER_ORDER: tuple[str, ...] = (
    "input", "conv1", "pool1", "conv2", "pool2", "pool3", "pool4", "pool5",
    "fc1", "fc2", "fc6", "fc7", "fc8", "logits",
)  # fmt: skip
#: Panels per row block when a figure has one panel per metric.
MAX_COLUMNS = 5
#: The pre-training label of the un-pre-trained CNN (its fine-tuning is the from-scratch
#: baseline) and the source name of the VGG track's from-scratch baseline.
BASELINE_STEP = "0"
BASELINE_SOURCE = "scratch"
_BAND_COLOR = "0.86"
_BASELINE_COLOR = "0.35"


def log_position(progress: pd.Series) -> pd.Series:
    """Progress with 0 moved to the log-AUC convention's place (first non-zero × 10^-0.5)."""
    positive = progress[progress > 0]
    zero_at = positive.min() * ZERO_OFFSET if len(positive) else 1.0
    return progress.where(progress > 0, zero_at)


def _layer_order(layers) -> list[str]:
    present = set(layers)
    known = [layer for layer in LAYER_ORDER if layer in present]
    return known + sorted(present - set(known))


def _source_palette(sources) -> dict[str, tuple]:
    return dict(zip(sources, sns.color_palette("tab10", len(sources)), strict=False))


# --------------------------------------------------------------------------- shared helpers


def _require(table: pd.DataFrame, name: str, columns: Iterable[str]) -> pd.DataFrame:
    """``table`` itself; a ``ValueError`` naming table ``name`` and every missing column if
    ``table`` lacks any of ``columns``."""
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"table {name!r} lacks column(s) {missing}; it has {list(table.columns)}")
    return table


def _table(tables: Mapping[str, pd.DataFrame], name: str, columns: Sequence[str]) -> pd.DataFrame:
    """A copy of ``tables[name]``, checked for the ``columns`` and for having rows; the label
    columns among ``target``, ``source``, ``layer``, ``metric``, ``group``, ``step``,
    ``pretrain_step`` and ``finetune_step`` as strings (CSV readers make "0" a number)."""
    if name not in tables:
        raise ValueError(f"figure needs table {name!r}; got tables {sorted(tables)}")
    table = _require(tables[name], name, columns)
    if table.empty:
        raise ValueError(f"table {name!r} has no rows")
    table = table.copy()
    labels = ("target", "source", "layer", "metric", "grouping", "group", "step",
              "pretrain_step", "finetune_step")  # fmt: skip
    for column in labels:
        if column in table:
            table[column] = table[column].astype(str)
    return table


def _panels(
    nrows: int, ncols: int, width: float, height: float, **kwargs
) -> tuple[plt.Figure, np.ndarray]:
    """A constrained-layout panel grid sized to its panel count (``width``/``height`` per
    panel, at least 7 × 4.5 inches in all); ``axes`` is always 2-D."""
    figsize = (max(7.0, width * ncols), max(4.5, height * nrows))
    return plt.subplots(
        nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", **kwargs
    )


def _blocks(
    rows: Sequence[str], cols: Sequence[str], width: float, height: float
) -> tuple[plt.Figure, dict[tuple[str, str], plt.Axes]]:
    """Panels for every (row, col) pair, each row a block of at most ``MAX_COLUMNS`` panels
    per line (so that many metrics wrap); unused slots are hidden."""
    ncols = max(1, min(MAX_COLUMNS, len(cols)))
    lines = -(-len(cols) // ncols)
    fig, axes = _panels(len(rows) * lines, ncols, width, height)
    placed = {}
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            placed[row, col] = axes[r * lines + c // ncols, c % ncols]
    used = {id(ax) for ax in placed.values()}
    for ax in axes.flat:
        if id(ax) not in used:
            ax.set_visible(False)
    return fig, placed


def _no_data(ax: plt.Axes, title: str, text: str = "no data") -> None:
    """Mark an empty panel."""
    ax.set_title(title, fontsize="medium")
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.5", transform=ax.transAxes)


def _legend_below(
    fig: plt.Figure, handles: Sequence, labels: Sequence[str], title: str | None = None
) -> None:
    """One legend for the whole figure, below the panels (outside the data)."""
    fig.legend(
        handles, labels, loc="outside lower center", ncol=max(1, min(len(labels), 6)),
        title=title, frameon=False, fontsize="small", title_fontsize="small",
    )  # fmt: skip


def _in_order(labels: Iterable) -> list[str]:
    """Unique checkpoint labels in training order (sorted as text if they are not labels)."""
    unique = list(dict.fromkeys(str(label) for label in labels))
    try:
        return sort_labels(unique)
    except ValueError:
        return sorted(unique)


def _shade(color, i: int, count: int, lightest: float = 0.75) -> tuple:
    """``color`` mixed with white: checkpoint ``i`` of ``count`` (the last one unmixed)."""
    base = np.array(to_rgb(color))
    return tuple(base + (1 - base) * lightest * (1 - (i + 1) / count))


def _compact(value: float) -> str:
    """A tick label of two significant digits: ``1920`` → ``"1.9k"``, ``180000`` →
    ``"180k"``, ``6e6`` → ``"6M"``, ``0`` → ``"0"``."""
    if value == 0 or not np.isfinite(value):
        return f"{value:g}"
    rounded = float(f"{value:.2g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(rounded) >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


def _checkpoint_axis(ax: plt.Axes, ticks: pd.DataFrame, max_labels: int = 8) -> None:
    """Log x axis with ticks at the checkpoints (``ticks``: their ``samples`` and positions
    ``x``), labelled with the sample counts (0 at its moved place); every k-th when there are
    more than ``max_labels``."""
    ticks = ticks.drop_duplicates("x").sort_values("x")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    if ticks.empty:
        return
    step = -(-len(ticks) // max_labels)
    shown = ticks.iloc[::step]
    ax.set_xticks(shown["x"].to_numpy(float), [_compact(v) for v in shown["samples"]])


def _baseline_mask(data: pd.DataFrame) -> tuple[pd.Series, str]:
    """Rows of the from-scratch baseline: pre-training checkpoint ``0`` (CNN track), else the
    source ``scratch`` (VGG track); and a label for the legend."""
    mask = data["pretrain_step"] == BASELINE_STEP
    if mask.any():
        return mask, f"from scratch (pre-training checkpoint {BASELINE_STEP})"
    return data["source"] == BASELINE_SOURCE, f"from scratch (source {BASELINE_SOURCE!r})"


def _last_steps(data: pd.DataFrame) -> pd.DataFrame:
    """The rows of each source's last pre-training checkpoint."""
    last = {
        source: _in_order(part["pretrain_step"])[-1]
        for source, part in data.groupby("source", sort=False)
    }
    return data[data["pretrain_step"] == data["source"].map(last)]


def _last_step_labels(models: pd.DataFrame, sources: Sequence[str]) -> tuple[list[str], str]:
    """Legend labels of ``sources`` and a note for the legend title: the last pre-training
    checkpoint in the note when all sources share it, else after each source."""
    last = dict(zip(models["source"], models["pretrain_step"], strict=False))
    steps = {last[s] for s in sources if s in last}
    if len(steps) == 1:
        return list(sources), f"last pre-training checkpoint {steps.pop()}"
    labels = [f"{s} (checkpoint {last[s]})" if s in last else s for s in sources]
    return labels, "last pre-training checkpoint"


def _seed_stats(data: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, sd (NaN for one seed) and seed count of ``value`` per ``keys``, after averaging
    each seed's duplicate rows (e.g. the identical un-pre-trained models of every source)."""
    per_seed = data.groupby([*keys, "seed"], as_index=False)[value].mean()
    return (
        per_seed.groupby(keys)[value]
        .agg(mean="mean", std="std", seeds="count")
        .reset_index()
        .sort_values(keys)
    )


def _fine_tuning_frame(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    columns = ("target", "source", "seed", "pretrain_step", "finetune_step", "samples",
               "test_accuracy")  # fmt: skip
    data = _table(tables, "finetune", columns)
    data["x"] = log_position(data["samples"].astype(float))
    return data


# --------------------------------------------------------------------------- pre-training


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
    seeds, one line per source; one block of panels per target, at most ``MAX_COLUMNS``
    metrics a line, each panel with the layers its metric is defined on."""
    metrics = tables["metrics"]
    last = sort_labels(metrics["step"].astype(str).unique().tolist())[-1]
    data = metrics[metrics["step"].astype(str) == last]
    targets = sorted(data["target"].unique())
    names = sorted(data["metric"].unique())
    sources = sorted(data["source"].unique())
    palette = _source_palette(sources)
    fig, axes = _blocks(targets, names, 3.0, 2.4)
    for (target, name), ax in axes.items():
        rows = data[(data["target"] == target) & (data["metric"] == name)]
        stats = rows.groupby(["source", "layer"])["value"].agg(["mean", "std"]).reset_index()
        order = _layer_order(stats.loc[stats["mean"].notna(), "layer"].unique())
        ax.set_title(f"{name} · {target}", fontsize="medium")
        if not order:
            _no_data(ax, f"{name} · {target}", "undefined")
            continue
        position = {layer: i for i, layer in enumerate(order)}
        for source in sources:
            line = stats[(stats["source"] == source) & stats["layer"].isin(order)]
            line = line.assign(x=line["layer"].map(position)).sort_values("x")
            spread = 2 * line["std"].fillna(0)
            ax.plot(line["x"], line["mean"], marker="o", color=palette[source], lw=1.2, ms=3)
            ax.fill_between(line["x"], line["mean"] - spread, line["mean"] + spread,
                            color=palette[source], alpha=0.15, lw=0)  # fmt: skip
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize="small")
        ax.tick_params(axis="y", labelsize="small")
    handles = [Line2D([], [], color=palette[s], marker="o", lw=1.2, ms=3) for s in sources]
    _legend_below(fig, handles, sources, title="source (mean ± 2 std over seeds)")
    fig.suptitle(f"Metrics per layer at pre-training checkpoint {last}")
    return fig


# --------------------------------------------------------------------------- fine-tuning


_SAMPLES_LABEL = "fine-tuning samples (log scale)"


def finetune_curves(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Fine-tuning test accuracy over log samples, one column per target (thesis Figs. 3.5,
    3.7, 3.19).

    Top row: every model, mean over seeds; colour = source, lightness = pre-training
    checkpoint (light = early, full colour and thicker = last). Bottom row ("detail"): only
    each source's last pre-training checkpoint over the later fine-tuning checkpoints (the
    last half, at least three), mean ± 2 std over seeds (no band with one seed), with the
    from-scratch baseline (pre-training checkpoint 0) dashed in grey where the table has one,
    so that the best-pre-trained models can be told apart.
    """
    data = _fine_tuning_frame(tables)
    targets = sorted(data["target"].unique())
    sources = sorted(data["source"].unique())
    palette = _source_palette(sources)
    steps = _in_order(data["pretrain_step"])
    mean = data.groupby(["target", "source", "pretrain_step", "x"], as_index=False)[
        "test_accuracy"
    ].mean()
    fig, axes = _panels(2, len(targets), 5.4, 4.0)
    for ax, target in zip(axes[0], targets, strict=True):
        part = mean[mean["target"] == target]
        for source in sources:
            for i, step in enumerate(steps):
                curve = part[(part["source"] == source) & (part["pretrain_step"] == step)]
                if curve.empty:
                    continue
                last = i == len(steps) - 1
                ax.plot(curve["x"], curve["test_accuracy"], lw=1.8 if last else 1.0,
                        color=_shade(palette[source], i, len(steps)), zorder=2 + i)  # fmt: skip
        _checkpoint_axis(ax, data.loc[data["target"] == target, ["samples", "x"]])
        ax.set_title(f"target {target}: all pre-training checkpoints", fontsize="medium")
        ax.set(xlabel=_SAMPLES_LABEL, ylabel="test accuracy")

    is_base, base_label = _baseline_mask(data)
    has_step_baseline = bool((data["pretrain_step"] == BASELINE_STEP).any())
    pretrained = data[data["pretrain_step"] != BASELINE_STEP] if has_step_baseline else data
    models = _last_steps(pretrained)
    keys = ["target", "source", "pretrain_step", "x", "samples"]
    stats = _seed_stats(models, keys, "test_accuracy")
    base = _seed_stats(data[is_base], ["target", "x", "samples"], "test_accuracy")
    for ax, target in zip(axes[1], targets, strict=True):
        ticks = data.loc[data["target"] == target, ["samples", "x"]].drop_duplicates("x")
        ticks = ticks.sort_values("x")
        start = ticks["x"].iloc[min(len(ticks) // 2, max(0, len(ticks) - 3))]
        part = stats[(stats["target"] == target) & (stats["x"] >= start)]
        title = f"target {target}: detail, last pre-training checkpoint"
        if part.empty:
            _no_data(ax, title)
            continue
        for source in sources:
            curve = part[part["source"] == source]
            if not curve.empty:
                _band_line(ax, curve, color=palette[source], lw=1.8)
        if has_step_baseline:
            line = base[(base["target"] == target) & (base["x"] >= start)]
            _band_line(ax, line, color=_BASELINE_COLOR, ls="--", lw=1.4)
        _checkpoint_axis(ax, ticks[ticks["x"] >= start])
        ax.set_title(title, fontsize="medium")
        ax.set(xlabel=_SAMPLES_LABEL, ylabel="test accuracy")

    labels, note = _last_step_labels(models, sources)
    handles = [Line2D([], [], color=palette[s], lw=2) for s in sources]
    if has_step_baseline:
        handles.append(Line2D([], [], color=_BASELINE_COLOR, ls="--", lw=1.4))
        labels.append(base_label)
    title = f"source (top row: lighter = earlier checkpoint; bottom row: {note})"
    _legend_below(fig, handles, labels, title=title)
    seeds = data["seed"].nunique()
    spread = "bottom: mean ± 2 std" if seeds > 1 else "one seed: no band"
    fig.suptitle(
        f"Fine-tuning accuracy per source and pre-training checkpoint\n(mean over {seeds} "
        f"seed(s); {spread})"
    )
    return fig


def _band_line(ax: plt.Axes, stats: pd.DataFrame, **style) -> None:
    """``stats``' mean over x with a ±2 std band where the sd is defined."""
    stats = stats.sort_values("x")
    x, mean, std = (stats[c].to_numpy(float) for c in ("x", "mean", "std"))
    (line,) = ax.plot(x, mean, marker="o", ms=3, **style)
    ok = np.isfinite(std) & np.isfinite(mean)
    if ok.any():
        ax.fill_between(x[ok], mean[ok] - 2 * std[ok], mean[ok] + 2 * std[ok],
                        color=line.get_color(), alpha=0.15, lw=0)  # fmt: skip


def finetune_delta(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Fine-tuning test accuracy minus the from-scratch baseline over log samples, one panel
    per target (thesis Figs. 3.6, 3.8, 3.20).

    One line per source at its last pre-training checkpoint (mean over seeds). The baseline is
    the mean, at the same fine-tuning checkpoint, of the models fine-tuned without
    pre-training: pre-training checkpoint 0 on the CNN track (each seed's copies under every
    source averaged first), source ``scratch`` on the VGG track. The grey band is ± 2 std of
    the baseline over seeds around the dashed zero line: lines inside it are not told apart
    from training from scratch.
    """
    data = _fine_tuning_frame(tables)
    is_base, base_label = _baseline_mask(data)
    if not is_base.any():
        raise ValueError(
            "finetune_delta needs the from-scratch baseline in table 'finetune': rows with "
            f"pretrain_step {BASELINE_STEP!r} (CNN track) or source {BASELINE_SOURCE!r} (VGG "
            f"track); it has pretrain_step {_in_order(data['pretrain_step'])} and source "
            f"{sorted(data['source'].unique())}"
        )
    keys = ["target", "finetune_step"]
    base = _seed_stats(data[is_base], [*keys, "x", "samples"], "test_accuracy")
    models = _last_steps(data[~is_base])
    lines = models.groupby(["target", "source", "pretrain_step", *keys[1:]], as_index=False).agg(
        x=("x", "first"), accuracy=("test_accuracy", "mean")
    )
    lines = lines.merge(base[[*keys, "mean"]], on=keys, how="inner")
    lines["delta"] = lines["accuracy"] - lines["mean"]
    targets = sorted(data["target"].unique())
    sources = sorted(data["source"].unique())
    palette = _source_palette(sources)
    drawn = [s for s in sources if s in set(lines["source"])]
    fig, axes = _panels(1, len(targets), 5.0, 4.0, sharey=True)
    for ax, target in zip(axes[0], targets, strict=True):
        title = f"target {target}"
        band = base[base["target"] == target].sort_values("x")
        part = lines[lines["target"] == target]
        if band.empty or part.empty:
            _no_data(ax, title, "no baseline" if band.empty else "no pre-trained models")
            continue
        std = band["std"].to_numpy(float)
        ok = np.isfinite(std)
        ax.fill_between(band["x"].to_numpy(float)[ok], -2 * std[ok], 2 * std[ok],
                        color=_BAND_COLOR, lw=0, zorder=0, gid="baseline_band")  # fmt: skip
        ax.axhline(0, color=_BASELINE_COLOR, ls="--", lw=1.2, zorder=1)
        for source in drawn:
            line = part[part["source"] == source].sort_values("x")
            ax.plot(line["x"], line["delta"], color=palette[source], marker="o", ms=3, lw=1.6)
        _checkpoint_axis(ax, data.loc[data["target"] == target, ["samples", "x"]])
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(_SAMPLES_LABEL)
    axes[0][0].set_ylabel("accuracy − baseline accuracy")
    labels, note = _last_step_labels(lines, drawn)
    handles = [Line2D([], [], color=palette[s], marker="o", ms=3) for s in drawn]
    seeds = data.loc[is_base, "seed"].nunique()
    handles += [Line2D([], [], color=_BASELINE_COLOR, ls="--"), Patch(color=_BAND_COLOR)]
    labels += [base_label, "baseline ± 2 std over seeds" + (" (none: 1 seed)" if seeds < 2
                                                                 else "")]  # fmt: skip
    _legend_below(fig, handles, labels, title=f"source ({note})")
    fig.suptitle(
        "Fine-tuning accuracy minus the from-scratch baseline (mean over "
        f"{data['seed'].nunique()} seed(s))"
    )
    return fig


# --------------------------------------------------------------------------- correlations

_CORRELATION_COLUMNS = ("target", "layer", "metric", "grouping", "group", "n", "rho",
                        "significant")  # fmt: skip
_GROUPINGS = {  # grouping -> (what one line is, legend title, truth the metric is ranked by)
    "all": ("target", "target", "log-AUC"),
    "source": ("source", "source (over its pre-training checkpoints)", "log-AUC"),
    "pretrain_step": ("pre-training checkpoint", "pre-training checkpoint (over the sources)",
                      "log-AUC"),
    "finetune_step": ("fine-tuning checkpoint", "fine-tuning checkpoint (over all models)",
                      "the accuracy there"),
}  # fmt: skip


def _correlation_rows(tables: Mapping[str, pd.DataFrame], grouping: str) -> pd.DataFrame:
    data = _table(tables, "correlations", _CORRELATION_COLUMNS)
    rows = data[data["grouping"] == grouping].copy()
    if rows.empty:
        raise ValueError(
            f"table 'correlations' has no rows of grouping {grouping!r}; it has groupings "
            f"{sorted(data['grouping'].unique())}"
        )
    rows["rho"] = rows["rho"].astype(float)
    rows["n"] = pd.to_numeric(rows["n"], errors="coerce")
    rows["significant"] = rows["significant"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return rows


def _defined_layers(data: pd.DataFrame) -> dict[str, list[str]]:
    """Per metric, the layers (network order) with a defined ρ somewhere; layers where every
    model gives the same value (e.g. ``input``) have none and are left out."""
    defined = data[data["rho"].notna()]
    return {
        metric: _layer_order(defined.loc[defined["metric"] == metric, "layer"].unique())
        for metric in data["metric"].unique()
    }


def _why_undefined(part: pd.DataFrame, width: int = 32) -> str:
    """The most common ``note`` of undefined correlations, wrapped (empty if none)."""
    if "note" not in part:
        return ""
    notes = part.loc[part["rho"].isna(), "note"].dropna().astype(str)
    notes = notes[notes.str.strip() != ""]
    if notes.empty:
        return ""
    return textwrap.fill(notes.mode().iloc[0].replace(">= ", ">=\u00a0"), width)


def _undefined_panel(ax: plt.Axes, part: pd.DataFrame, title: str) -> None:
    ax.set_title(title, fontsize="medium")
    ax.set_xticks([])
    ax.set_ylim(-1.05, 1.05)
    ax.text(0.5, 0.5, "ρ undefined\n" + _why_undefined(part), ha="center", va="center",
            color="0.45", fontsize="small", transform=ax.transAxes)  # fmt: skip


def _rho_panel(
    ax: plt.Axes, part: pd.DataFrame, by: str, lines: Sequence[str], colors: Mapping,
    layers: Sequence[str], title: str,
) -> None:  # fmt: skip
    """One panel of Spearman ρ per layer: the grey Fisher 95 % band for ρ = 0 of the group
    size n (the most common n at each layer; ``analysis.fisher_interval``), one line per value
    of column ``by`` in ``lines``, filled markers where significant, open ones where not."""
    if not layers or part["rho"].notna().sum() == 0:
        _undefined_panel(ax, part, title)
        return
    x = np.arange(len(layers), dtype=float)
    n = part.dropna(subset=["n"]).groupby("layer")["n"].agg(lambda s: s.mode().max())
    band = np.array([fisher_interval(int(k)) if pd.notna(k) else (np.nan, np.nan)
                     for k in n.reindex(layers)])  # fmt: skip
    # each layer's band spans ±0.5 around it (also visible for a single layer)
    xb = np.r_[x[0] - 0.5, x, x[-1] + 0.5]
    low = np.r_[band[0, 0], band[:, 0], band[-1, 0]]
    high = np.r_[band[0, 1], band[:, 1], band[-1, 1]]
    ax.fill_between(xb, low, high, step="mid", color=_BAND_COLOR, lw=0, zorder=0,
                    gid="fisher_band")  # fmt: skip
    ax.axhline(0, color="0.5", lw=0.8, zorder=1)
    for key in lines:
        line = part[part[by] == key].drop_duplicates("layer").set_index("layer").reindex(layers)
        rho = line["rho"].to_numpy(float)
        finite = np.isfinite(rho)
        if not finite.any():
            continue
        sig = line["significant"].fillna(False).astype(bool).to_numpy() & finite
        ax.plot(x, rho, color=colors[key], lw=1.4, zorder=2)
        ax.scatter(x[sig], rho[sig], color=colors[key], s=24, zorder=3)
        ax.scatter(x[~sig & finite], rho[~sig & finite], facecolor="white",
                   edgecolor=colors[key], s=24, zorder=3)  # fmt: skip
    ax.set_xticks(x, layers, rotation=45 if len(layers) > 3 else 0)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title, fontsize="medium")


def _model_counts(data: pd.DataFrame) -> str:
    n = data["n"].dropna().astype(int)
    if n.empty:
        return "n unknown"
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}–{n.max()}"


def _correlation_legend(
    fig: plt.Figure, lines: Sequence[str], colors: Mapping, title: str, counts: str
) -> None:
    handles = [Line2D([], [], color=colors[key], marker="o", lw=1.4) for key in lines]
    handles += [
        Patch(color=_BAND_COLOR),
        Line2D([], [], ls="", marker="o", color="0.3"),
        Line2D([], [], ls="", marker="o", markerfacecolor="white", markeredgecolor="0.3"),
    ]
    labels = [*lines, f"Fisher 95 % band for ρ = 0 ({counts})", "significant",
              "not significant"]  # fmt: skip
    _legend_below(fig, handles, labels, title=title)


def _nothing_defined(data: pd.DataFrame, grouping: str) -> plt.Figure:
    """A one-panel figure saying why no correlation of ``grouping`` is defined."""
    fig, axes = _panels(1, 1, 7.0, 4.5)
    ax = axes[0, 0]
    ax.set_axis_off()
    counts = _model_counts(data)
    ax.text(0.5, 0.5, f"No Spearman ρ is defined for grouping {grouping!r} ({counts} models "
            f"per group).\nMost common reason:\n{_why_undefined(data, 60)}", ha="center",
            va="center", color="0.3", wrap=True, transform=ax.transAxes)  # fmt: skip
    fig.suptitle(f"Rank correlations per {_GROUPINGS[grouping][0]}: none defined")
    return fig


def correlations(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Spearman ρ (all models, metric vs log-AUC) per layer, one panel per metric, one line per
    target, with the Fisher 95 % band for ρ = 0; filled markers are significant (thesis Figs.
    3.21, 3.24, 3.27). The thesis expects negative ρ for lower-is-better metrics (ID, SS) and
    positive ρ otherwise."""
    return _correlation_figure(tables, "all")


def _correlation_figure(tables: Mapping[str, pd.DataFrame], grouping: str) -> plt.Figure:
    """ρ per layer for one grouping, one line per group. ``all``: one panel per metric, one
    line per target; other groupings: a block of panels per target (one per metric), one line
    per group. At most ``MAX_COLUMNS`` panels a line."""
    data = _correlation_rows(tables, grouping)
    if data["rho"].notna().sum() == 0:
        return _nothing_defined(data, grouping)
    what, legend_title, truth = _GROUPINGS[grouping]
    by = "target" if grouping == "all" else "group"
    if grouping == "all":
        lines = sorted(data["target"].unique())
        colors = {target: f"C{i}" for i, target in enumerate(lines)}
    elif grouping == "source":
        lines = sorted(data["group"].unique())
        colors = _source_palette(lines)
    else:  # checkpoints: light = early, dark = late
        lines = _in_order(data["group"])
        cmap = "crest" if grouping == "pretrain_step" else "flare"
        colors = dict(zip(lines, sns.color_palette(cmap, len(lines)), strict=True))
    metric_names = list(dict.fromkeys(data["metric"]))
    layers = _defined_layers(data)
    rows = ["all"] if grouping == "all" else sorted(data["target"].unique())
    fig, axes = _blocks(rows, metric_names, 3.3, 2.9)
    for (row, metric), ax in axes.items():
        part = data[data["metric"] == metric]
        if grouping != "all":
            part = part[part["target"] == row]
        title = metric if grouping == "all" else f"{row} · {metric}"
        _rho_panel(ax, part, by, lines, colors, layers[metric], title)
    fig.supylabel(f"Spearman ρ of metric vs {truth}", fontsize="medium")
    counts = _model_counts(data)
    _correlation_legend(fig, lines, colors, legend_title, counts)
    scope = "over all models" if grouping == "all" else f"one line per {what}"
    fig.suptitle(
        f"Rank correlation of each metric with {truth} per layer, {scope}\n({counts} models "
        "per line; filled markers = significant)"
    )
    return fig


def correlations_source(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Spearman ρ (metric vs log-AUC over one source's pre-training checkpoints) per layer,
    one line per source; panels target × metric (thesis Figs. 3.22, 3.25)."""
    return _correlation_figure(tables, "source")


def correlations_pretrain_step(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Spearman ρ (metric vs log-AUC over the sources at one pre-training checkpoint) per
    layer, one line per checkpoint (light = early); panels target × metric (thesis Figs.
    3.23, 3.26)."""
    return _correlation_figure(tables, "pretrain_step")


def correlations_finetune_step(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Spearman ρ (metric vs accuracy at one fine-tuning checkpoint, over all models) per
    layer, one line per fine-tuning checkpoint (light = early); panels target × metric
    (thesis Figs. 3.28, 3.30, 3.32)."""
    return _correlation_figure(tables, "finetune_step")


def metric_vs_logauc(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Each metric against log-AUC per model (source, pre-training checkpoint), both averaged
    over seeds, at the layer where the metric's |ρ| over all models is largest for the target
    (named with its ρ in the panel title, * = significant). Colour = source, lightness =
    pre-training checkpoint (full colour = last). A block of panels per target (at most
    ``MAX_COLUMNS`` metrics a line)."""
    columns = ("target", "source", "seed", "step", "layer", "metric", "value")
    metrics = _table(tables, "metrics", columns)
    logauc = _table(tables, "logauc", ("target", "source", "seed", "pretrain_step", "logauc"))
    rho = _correlation_rows(tables, "all")
    models = ["target", "source", "pretrain_step"]
    values = (
        metrics.rename(columns={"step": "pretrain_step"})
        .groupby([*models, "layer", "metric"], as_index=False)["value"]
        .mean()
    )
    auc = logauc.groupby(models, as_index=False)["logauc"].mean()
    points = values.merge(auc, on=models, how="inner").dropna(subset=["value", "logauc"])
    if points.empty:
        raise ValueError(
            "metric_vs_logauc: no model (target, source, pre-training checkpoint) is in both "
            "table 'metrics' and table 'logauc'"
        )
    targets = sorted(points["target"].unique())
    metric_names = list(dict.fromkeys(metrics["metric"]))
    sources = sorted(points["source"].unique())
    palette = _source_palette(sources)
    steps = _in_order(points["pretrain_step"])
    fig, axes = _blocks(targets, metric_names, 3.3, 3.0)
    for (target, metric), ax in axes.items():
        candidates = rho[(rho["target"] == target) & (rho["metric"] == metric)]
        if candidates["rho"].notna().sum() == 0:
            _undefined_panel(ax, candidates, f"{target} · {metric}")
            ax.set_yticks([])
            continue
        best = candidates.loc[candidates["rho"].abs().idxmax()]
        star = "*" if best["significant"] else ""
        title = f"{target} · {metric} @ {best['layer']}\nρ = {best['rho']:+.2f}{star}"
        part = points[(points["target"] == target) & (points["metric"] == metric)
                      & (points["layer"] == best["layer"])]  # fmt: skip
        if part.empty:
            _no_data(ax, title)
            continue
        colors = [_shade(palette[s], steps.index(k), len(steps), 0.6)
                  for s, k in zip(part["source"], part["pretrain_step"], strict=True)]  # fmt: skip
        ax.scatter(part["value"], part["logauc"], c=colors, s=30, edgecolor="0.2", lw=0.4)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("metric value", fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.tick_params(labelsize="small")
        auc_t = points.loc[points["target"] == target, "logauc"]
        pad = 0.08 * (auc_t.max() - auc_t.min()) + 0.005
        ax.set_ylim(auc_t.min() - pad, auc_t.max() + pad)  # one scale per target
    fig.supylabel("log-AUC of fine-tuning", fontsize="medium")
    handles = [Line2D([], [], ls="", marker="o", color=palette[s]) for s in sources]
    _legend_below(fig, handles, sources, title="source (lighter = earlier pre-training checkpoint)")
    fig.suptitle(
        f"Metric vs log-AUC per model (mean over {metrics['seed'].nunique()} seed(s)),\nat the "
        "layer of the largest |ρ| over all models (* = significant)"
    )
    return fig


def leaderboard(tables: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Forest plot of the leaderboard: per target, every metric (at its best layer) and every
    trivial baseline by oriented Spearman ρ with log-AUC over all models, with its bootstrap
    95 % interval; the dashed line is the best baseline's ρ. A metric left of it does not rank
    the models better than what is known without it."""
    data = _table(tables, "leaderboard", ["target", "metric", "kind", "layer", "rho_oriented",
                                          "rho_oriented_low", "rho_oriented_high"])  # fmt: skip
    data = data[data["rho_oriented"].notna()]
    targets = _in_order(data["target"].unique()) or ["(none)"]
    height = 1.2 + 0.28 * max([1, *data.groupby("target").size().tolist()])
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), height),
                             squeeze=False, layout="constrained")  # fmt: skip
    colors = {"metric": sns.color_palette()[0], "baseline": "0.45"}
    for ax, target in zip(axes[0], targets, strict=True):
        part = data[data["target"] == target].sort_values("rho_oriented")
        if part.empty:
            _no_data(ax, str(target), "ρ undefined for every metric")
            continue
        y = np.arange(len(part))
        rho = part["rho_oriented"].to_numpy()
        below = (rho - part["rho_oriented_low"].to_numpy()).clip(min=0)
        above = (part["rho_oriented_high"].to_numpy() - rho).clip(min=0)
        for kind, color in colors.items():
            rows = (part["kind"] == kind).to_numpy()
            error = np.nan_to_num([below[rows], above[rows]])  # no interval: no bar
            marker = "o" if kind == "metric" else "s"
            ax.errorbar(rho[rows], y[rows], xerr=error, fmt=marker, color=color, ms=4, capsize=2)
        baselines = part[part["kind"] == "baseline"]
        if not baselines.empty:
            ax.axvline(baselines["rho_oriented"].max(), color="0.3", ls="--", lw=1)
        ax.axvline(0, color="0.6", lw=0.8)
        labels = [
            metric if kind == "baseline" else f"{metric} @ {layer}"
            for metric, kind, layer in zip(part["metric"], part["kind"], part["layer"], strict=True)
        ]
        ax.set_yticks(y, labels, fontsize="small")
        ax.set_xlim(-1.05, 1.05)
        ax.set_title(str(target), fontsize="medium")
        ax.set_xlabel("oriented ρ", fontsize="small")
    handles = [Line2D([], [], ls="", marker="o", color=colors["metric"]),
               Line2D([], [], ls="", marker="s", color=colors["baseline"]),
               Line2D([], [], ls="--", color="0.3")]  # fmt: skip
    _legend_below(fig, handles, ["metric (best layer)", "trivial baseline", "best baseline"])
    fig.suptitle(
        "Leaderboard: does a metric beat the obvious? Oriented Spearman ρ with log-AUC\n"
        "over all models (seeds averaged), 95 % bootstrap intervals",
        fontsize="medium",
    )
    return fig


FIGURES: dict[str, Callable[[Mapping[str, pd.DataFrame]], plt.Figure]] = {
    "leaderboard": leaderboard,
    "pretrain_accuracy": pretrain_accuracy,
    "metrics_per_layer": metrics_per_layer,
    "finetune_curves": finetune_curves,
    "finetune_delta": finetune_delta,
    "correlations": correlations,
    "correlations_source": correlations_source,
    "correlations_pretrain_step": correlations_pretrain_step,
    "correlations_finetune_step": correlations_finetune_step,
    "metric_vs_logauc": metric_vs_logauc,
}

#: The tables each figure of ``FIGURES`` reads.
FIGURE_TABLES: dict[str, tuple[str, ...]] = {
    "leaderboard": ("leaderboard",),
    "pretrain_accuracy": ("pretrain",),
    "metrics_per_layer": ("metrics",),
    "finetune_curves": ("finetune",),
    "finetune_delta": ("finetune",),
    "correlations": ("correlations",),
    "correlations_source": ("correlations",),
    "correlations_pretrain_step": ("correlations",),
    "correlations_finetune_step": ("correlations",),
    "metric_vs_logauc": ("metrics", "logauc", "correlations"),
}
