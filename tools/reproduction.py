"""Evidence for docs/reproduction/ from a finished `config/reproduce.yaml` run.

    .venv/bin/python tools/reproduction.py --results results/cnn --out docs/reproduction

Copies the run's small tables (correlations, logauc, pretrain, metrics) and correlation figures
into --out and writes two generated tables the README there cites:

- ``scales.md``: pooled Spearman (grouping ``all``) of id/ss/rsa at ``pool2`` for smaller
  protocols nested in the run — fewer seeds, pre-training cut at an earlier checkpoint,
  fine-tuning curves cut at an earlier checkpoint (log-AUC over the shorter curve) — computed
  with the workflow's own ``analysis.correlation_table``;
- ``groupings.md``: the run's per-source and per-pre-training-checkpoint correlations at
  ``pool2`` (thesis Fig. 3.22/3.23/3.25/3.26) and the layers where the pooled ones are
  significant (Fig. 3.21/3.24).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from transferability.evaluation.analysis import correlation_table
from transferability.metrics import METRICS, metric_names
from transferability.training.schedule import sort_labels

THESIS_METRICS = ("id", "ss", "rsa")
PREDICTION_METRICS = frozenset(metric_names("prediction"))
EXPECTED_SIGN = {"id": -1, "ss": -1, "rsa": 1}  # thesis §3.3: ID and SS negative, RSA positive
TABLES = ("correlations", "logauc", "pretrain", "metrics", "leaderboard")
FIGURES = ("leaderboard", "correlations", "correlations_source", "correlations_pretrain_step",
           "correlations_finetune_step", "finetune_curves", "finetune_delta",
           "metric_vs_logauc", "pretrain_accuracy")  # fmt: skip


def _cell(row: pd.Series) -> str:
    if pd.isna(row["rho"]):
        return "n/a"
    mark = "**" if row["significant"] else ""
    return f"{mark}{row['rho']:+.2f}{mark}"


def pooled(
    metrics: pd.DataFrame,
    finetune: pd.DataFrame,
    *,
    seeds: list[int],
    pretrain_steps: list[str],
    finetune_last: str,
    layer: str = "pool2",
    names: Sequence[str] = THESIS_METRICS,
) -> pd.DataFrame:
    """Pooled correlations at ``layer`` of the nested protocol: ``seeds``, the pre-training
    checkpoints ``pretrain_steps``, fine-tuning curves up to ``finetune_last``."""
    labels = sort_labels(list(finetune["finetune_step"].astype(str).unique()))
    kept = labels[: labels.index(finetune_last) + 1]
    m = metrics[
        metrics["seed"].isin(seeds)
        & metrics["step"].astype(str).isin(pretrain_steps)
        & (metrics["layer"] == layer)
        & metrics["metric"].isin(names)
    ]
    f = finetune[
        finetune["seed"].isin(seeds)
        & finetune["pretrain_step"].astype(str).isin(pretrain_steps)
        & finetune["finetune_step"].astype(str).isin(kept)
    ]
    directions = {name: METRICS[name].higher_is_better for name in names}
    table = correlation_table("cnn", m.assign(step=m["step"].astype(str)), f, directions)
    return table[table["grouping"] == "all"]


def scales_table(metrics: pd.DataFrame, finetune: pd.DataFrame) -> str:
    seeds = sorted(metrics["seed"].unique())
    steps = sort_labels(list(metrics["step"].astype(str).unique()))
    ft_labels = sort_labels(list(finetune["finetune_step"].astype(str).unique()))
    protocols = []
    for last in ("300b", "1e", "3e", "10e"):  # pre-training cut
        if last in steps:
            protocols.append((seeds, steps[: steps.index(last) + 1], "300b"))
    if "1e" in ft_labels:  # the full grids: each seed alone, then the seeds averaged
        protocols += [([seed], steps, "1e") for seed in seeds]
        protocols += [(seeds[:k], steps, "1e") for k in range(2, len(seeds) + 1)]
    targets = sorted(finetune["target"].unique())
    head = "| seeds | pre-training checkpoints | fine-tuning to | n | " + " | ".join(
        f"{t} {m}" for t in targets for m in THESIS_METRICS
    )
    lines = [head + " |", "|" + "---|" * (4 + len(targets) * len(THESIS_METRICS))]
    for chosen, kept, last in protocols:
        rows = pooled(metrics, finetune, seeds=chosen, pretrain_steps=kept, finetune_last=last)
        rows = rows.set_index(["target", "metric"])
        n = int(rows["n"].iloc[0])
        cells = [_cell(rows.loc[(t, m)]) for t in targets for m in THESIS_METRICS]
        lines.append(
            f"| {' '.join(map(str, chosen))} | `{' '.join(kept)}` | {last} | {n} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def groupings_table(correlations: pd.DataFrame) -> str:
    c = correlations[correlations["metric"].isin(THESIS_METRICS)]
    out = []
    # pooled: at which layers each metric is significant with the thesis's sign
    allc = c[c["grouping"] == "all"]
    out.append("Pooled (grouping `all`): layers where ρ is significant with the thesis's sign\n")
    out.append("| target | metric | significant, expected sign | ρ per layer |")
    out.append("|---|---|---|---|")
    for (target, metric), part in allc.groupby(["target", "metric"]):
        part = part.set_index("layer")
        good = [
            layer
            for layer, row in part.iterrows()
            if row["significant"] and row["rho"] * EXPECTED_SIGN[metric] > 0
        ]
        per_layer = ", ".join(f"{layer} {_cell(row)}" for layer, row in part.iterrows())
        out.append(f"| {target} | {metric} | {' '.join(good) or '—'} | {per_layer} |")
    for grouping, title in (
        ("source", "Per source (its pre-training checkpoints), `pool2`"),
        ("pretrain_step", "Per pre-training checkpoint (the six sources), `pool2`"),
    ):
        part = c[(c["grouping"] == grouping) & (c["layer"] == "pool2")]
        groups = part["group"].astype(str).unique().tolist()
        if grouping == "pretrain_step":
            groups = sort_labels(groups)
        out.append(f"\n{title}; n per group = {sorted(part['n'].unique().tolist())}\n")
        out.append("| target | metric | " + " | ".join(groups) + " |")
        out.append("|---|---|" + "---|" * len(groups))
        for (target, metric), rows in part.groupby(["target", "metric"]):
            rows = rows.set_index(rows["group"].astype(str))
            out.append(
                f"| {target} | {metric} | "
                + " | ".join(_cell(rows.loc[g]) if g in rows.index else "" for g in groups)
                + " |"
            )
    return "\n".join(out)


def pooled_table(correlations: pd.DataFrame, layer: str = "pool2") -> str:
    """Every metric's pooled correlation (grouping ``all``) at ``layer`` (``logits`` for the
    prediction metrics), both targets: ρ, ρ oriented (positive = ranks the right way round),
    significance and relative top-1; ordered by the mean oriented ρ."""
    c = correlations[(correlations["grouping"] == "all")
                     & correlations["layer"].isin([layer, "logits"])]  # fmt: skip
    targets = sorted(c["target"].unique())
    order = c.groupby("metric")["rho_oriented"].mean().sort_values(ascending=False).index
    head = "| metric | " + " | ".join(f"{t} ρ | {t} ρ↑ | rel. top-1" for t in targets) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(targets)]
    for metric in order:
        cells = []
        for target in targets:
            row = c[(c["metric"] == metric) & (c["target"] == target)]
            if row.empty or pd.isna(row["rho"].iloc[0]):
                cells.append("n/a | | ")
                continue
            row = row.iloc[0]
            relative_top1 = 1.0 - row["top1_regret"]  # = relative_top1 (older tables lack it)
            cells.append(f"{_cell(row)} | {row['rho_oriented']:+.2f} | {relative_top1:.3f}")
        where = "logits" if (c[c["metric"] == metric]["layer"] == "logits").all() else layer
        lines.append(f"| `{metric}` @ {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finetune_cut_table(
    metrics: pd.DataFrame, finetune: pd.DataFrame, cuts: list[str], layer: str = "pool2"
) -> str:
    """Every metric's pooled ρ (all seeds and pre-training checkpoints of the run) with the
    log-AUC of fine-tuning curves cut at each of ``cuts``, side by side, and the largest |Δρ|
    between the cuts: how much the main result depends on how long fine-tuning runs."""
    seeds = sorted(int(s) for s in metrics["seed"].unique())
    steps = sort_labels(list(metrics["step"].astype(str).unique()))
    names = sorted(m for m in metrics["metric"].unique() if m in METRICS)
    per_cut = {}
    for cut in cuts:
        parts = []
        layer_names = [m for m in names if m not in PREDICTION_METRICS]
        prediction_names = [m for m in names if m in PREDICTION_METRICS]
        for where, chosen in ((layer, layer_names), ("logits", prediction_names)):
            rows = pooled(metrics, finetune, seeds=seeds, pretrain_steps=steps,
                          finetune_last=cut, layer=where, names=chosen)  # fmt: skip
            parts.append(rows.assign(where=where))
        per_cut[cut] = pd.concat(parts).set_index(["target", "metric"])
    first = per_cut[cuts[0]]
    targets = sorted(first.index.get_level_values("target").unique())
    head = "| metric | " + " | ".join(f"{t} ρ to {c}" for t in targets for c in cuts)
    lines = [head + " | max \\|Δρ\\| |", "|---|" + "---|" * (len(targets) * len(cuts) + 1)]
    worst = 0.0
    for metric in sorted(first.index.get_level_values("metric").unique()):
        cells, rhos = [], []
        for target in targets:
            for cut in cuts:
                row = per_cut[cut].loc[(target, metric)]
                cells.append(_cell(row))
                rhos.append((target, row["rho"]))
        deltas = [
            abs(a - b)
            for (ta, a), (tb, b) in zip(rhos, rhos[1:], strict=False)
            if ta == tb and pd.notna(a) and pd.notna(b)
        ]
        delta = max(deltas) if deltas else float("nan")
        worst = max(worst, delta) if pd.notna(delta) else worst
        where = first.loc[(targets[0], metric), "where"]
        lines.append(f"| `{metric}` @ {where} | " + " | ".join(cells) + f" | {delta:.3f} |")
    n = int(first["n"].iloc[0])
    lines.append("")
    lines.append(f"n = {n} models (seeds averaged); largest |Δρ| over all metrics: {worst:.3f}")
    return "\n".join(lines)


def reevaluate(folder: Path, track: str = "cnn") -> dict[str, pd.DataFrame]:
    """Today's evaluation of recorded tables, without re-training: the trivial baselines, the
    bootstrap intervals, the paired comparison with the best baseline, source-pool stability
    and the leaderboard, from ``folder``'s ``metrics``, ``pretrain`` and ``logauc`` tables (its
    ``finetune`` table when there is one). Without it the ``finetune_step`` rows of the
    recorded ``correlations.csv`` are kept as they are (the per-checkpoint accuracies were not
    recorded). Writes ``metrics``, ``correlations``, ``leaderboard`` (CSV) and
    ``leaderboard.png`` into ``folder``; running it again gives the same files."""
    from transferability.artifacts import write_csv
    from transferability.evaluation import baselines as trivial
    from transferability.jobs.tables import evaluate_tables
    from transferability.report.figures import draw_figure

    def read(name: str) -> pd.DataFrame:  # exact floats: a second run writes the same bytes
        return pd.read_csv(folder / f"{name}.csv", float_precision="round_trip")

    recorded = {name: read(name) for name in ("metrics", "pretrain", "logauc")}
    metrics = recorded["metrics"]
    metrics = metrics[~metrics["metric"].str.startswith(trivial.PREFIX)]  # added by a past run
    finetune = read("finetune") if (folder / "finetune.csv").is_file() else None
    tables = evaluate_tables(
        track, recorded["pretrain"], metrics, finetune, logauc=recorded["logauc"],
        baselines=trivial.DEFAULTS["image" if track != "cnn" else "cnn"], bootstrap={},
    )  # fmt: skip
    if finetune is None:
        correlations = read("correlations")
        kept = correlations[correlations["grouping"] == "finetune_step"]
        tables["correlations"] = pd.concat([tables["correlations"], kept], ignore_index=True)
    for name in ("metrics", "correlations", "leaderboard"):
        write_csv(tables[name], folder / f"{name}.csv")
    draw_figure("leaderboard", {"leaderboard": folder / "leaderboard.csv"},
                folder / "leaderboard.png")  # fmt: skip
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/cnn"))
    parser.add_argument("--out", type=Path, default=Path("docs/reproduction"))
    parser.add_argument(
        "--pooled", action="store_true", help="only print every metric's pooled table"
    )
    parser.add_argument(
        "--finetune-cut",
        nargs="+",
        metavar="STEP",
        help="only print every metric's pooled ρ with fine-tuning curves cut at these steps",
    )
    parser.add_argument(
        "--reevaluate",
        type=Path,
        metavar="DIR",
        help="only re-evaluate the recorded tables in DIR (e.g. docs/reproduction): baselines, "
        "bootstrap intervals, leaderboard; nothing is re-trained",
    )
    parser.add_argument("--track", default="cnn", help="the track of --reevaluate's tables")
    args = parser.parse_args()
    if args.reevaluate:
        board = reevaluate(args.reevaluate, args.track)["leaderboard"]
        columns = ["target", "rank", "metric", "layer", "rho_oriented", "rho_oriented_low",
                   "rho_oriented_high", "best_baseline", "p_not_better"]  # fmt: skip
        print(board[columns].to_string())
        return
    tables, figures = args.results / "tables", args.results / "figures"
    if args.finetune_cut:
        metrics = pd.read_csv(tables / "metrics.csv")
        finetune = pd.read_csv(tables / "finetune.csv")
        print(finetune_cut_table(metrics, finetune, args.finetune_cut))
        return
    if args.pooled:
        print(pooled_table(pd.read_csv(tables / "correlations.csv")))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copyfile(tables / f"{name}.csv", args.out / f"{name}.csv")
    for name in FIGURES:
        if (figures / f"{name}.png").is_file():
            shutil.copyfile(figures / f"{name}.png", args.out / f"{name}.png")
    metrics = pd.read_csv(tables / "metrics.csv")
    finetune = pd.read_csv(tables / "finetune.csv")
    note = "**bold** = outside the Fisher 95 % band for ρ = 0 (significant)\n\n"
    (args.out / "scales.md").write_text(
        "Pooled Spearman ρ at `pool2` of protocols nested in the run "
        "(`tools/reproduction.py`); " + note + scales_table(metrics, finetune) + "\n"
    )
    correlations = pd.read_csv(tables / "correlations.csv")
    (args.out / "groupings.md").write_text(note + groupings_table(correlations) + "\n")
    (args.out / "pooled.md").write_text(note + pooled_table(correlations) + "\n")
    print((args.out / "scales.md").read_text())
    print((args.out / "groupings.md").read_text())


if __name__ == "__main__":
    main()
