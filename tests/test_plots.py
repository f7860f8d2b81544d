"""Figures of the main track (transferability.report.plots) drawn from small synthetic tidy tables,
and the model figure (transferability.report.plots_model) from a random thesis CNN."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from transferability.evaluation.analysis import CORRELATION_COLUMNS, fisher_interval, log_auc_table  # noqa: E402
from transferability.report.figures import draw_figure  # noqa: E402
from transferability.report.plots import FIGURE_TABLES, FIGURES, _layer_order  # noqa: E402

TARGETS = ("fashion", "mnist")
SOURCES = ("fashion", "kmnist", "mnist")
STEPS = ("0", "1b", "10b", "3e")  # "0": not pre-trained, the from-scratch baseline
FINETUNE = {"0": 0, "2b": 64, "5b": 160, "20b": 640, "1e": 3000}
LAYERS = ("conv1", "pool2", "fc1")
METRICS = ("id", "ss", "rsa")
#: Group sizes of the synthetic correlation table per grouping.
GROUP_N = {"all": 12, "source": 4, "pretrain_step": 5, "finetune_step": 12}
NEW_FIGURES = (
    "finetune_curves",
    "finetune_delta",
    "correlations",
    "correlations_source",
    "correlations_pretrain_step",
    "correlations_finetune_step",
    "metric_vs_logauc",
)


def finetune_table(seeds=(0, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for target, source, seed, step in itertools.product(TARGETS, SOURCES, seeds, STEPS):
        # the un-pre-trained model depends on the seed only: the same under every source
        boost = 0.0 if step == "0" else 0.05 * STEPS.index(step) + 0.02 * SOURCES.index(source)
        noise = np.random.default_rng([seed, TARGETS.index(target)]) if step == "0" else rng
        for label, samples in FINETUNE.items():
            frac = np.log1p(samples) / np.log1p(max(FINETUNE.values()))
            accuracy = 0.1 + (0.8 + boost * (1 - frac)) * frac + noise.normal(0, 0.01)
            rows.append({
                "target": target, "source": source, "seed": seed, "pretrain_step": step,
                "finetune_step": label, "batches": samples // 32, "samples": samples,
                "epochs": samples / 3000, "train_loss": np.nan if samples == 0 else 1.0,
                "test_loss": 1.0, "test_accuracy": min(accuracy, 1.0),
            })  # fmt: skip
    return pd.DataFrame(rows)


def metrics_table(seeds=(0, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [
        {"track": "cnn", "target": target, "source": source, "seed": seed, "step": step,
         "layer": layer, "metric": metric, "value": rng.normal(STEPS.index(step), 1.0),
         "note": ""}
        for target, source, seed, step, layer, metric in itertools.product(
            TARGETS, SOURCES, seeds, STEPS, LAYERS, METRICS)
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[7, "value"] = np.nan
    return table


def correlations_table() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    groups = {"all": ["all"], "source": list(SOURCES), "pretrain_step": list(STEPS),
              "finetune_step": list(FINETUNE)}  # fmt: skip
    rows = []
    for target, layer, metric in itertools.product(TARGETS, LAYERS, METRICS):
        for grouping, names in groups.items():
            n = GROUP_N[grouping]
            low, high = fisher_interval(n)
            for group in names:
                rho = float(rng.uniform(-1, 1))
                rows.append({
                    "track": "cnn", "target": target, "layer": layer, "metric": metric,
                    "grouping": grouping, "group": group, "n": n, "rho": rho,
                    "pvalue": 0.01, "ci_low": low, "ci_high": high,
                    "significant": abs(rho) > high, "rho_oriented": rho, "kendall_tau": rho,
                    "weighted_tau": rho, "pearson": rho, "top1_regret": 0.0, "note": "",
                })  # fmt: skip
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    undefined = table.index[(table["grouping"] == "source")][0]
    table.loc[undefined, ["rho", "note"]] = [np.nan, "metric is constant across models"]
    return table


def make_tables(seeds=(0, 1)) -> dict[str, pd.DataFrame]:
    finetune = finetune_table(seeds)
    logauc = log_auc_table(finetune)
    finetune.loc[11, "test_accuracy"] = np.nan  # one missing evaluation
    return {"finetune": finetune, "metrics": metrics_table(seeds), "logauc": logauc,
            "correlations": correlations_table()}  # fmt: skip


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, pd.DataFrame]]:
    return {"2 seeds": make_tables((0, 1)), "1 seed": make_tables((0,))}


#: (visible panels, legend entries that must appear) per figure of the synthetic tables.
EXPECTED = {
    "finetune_curves": (2 * len(TARGETS), SOURCES),
    "finetune_delta": (len(TARGETS), SOURCES),
    "correlations": (len(METRICS), TARGETS),
    "correlations_source": (len(TARGETS) * len(METRICS), SOURCES),
    "correlations_pretrain_step": (len(TARGETS) * len(METRICS), STEPS),
    "correlations_finetune_step": (len(TARGETS) * len(METRICS), tuple(FINETUNE)),
    "metric_vs_logauc": (len(TARGETS) * len(METRICS), SOURCES),
}
CASES = [(name, "2 seeds") for name in NEW_FIGURES] + [
    (name, "1 seed") for name in ("finetune_curves", "finetune_delta", "metric_vs_logauc")
]


def test_legend_names_differing_last_checkpoints(tables):
    finetune = tables["2 seeds"]["finetune"]
    fewer = finetune[~((finetune["source"] == "kmnist") & (finetune["pretrain_step"] == "3e"))]
    fig = FIGURES["finetune_delta"]({"finetune": fewer})
    try:
        assert "kmnist (checkpoint 10b)" in _legend_texts(fig)
        assert "mnist (checkpoint 3e)" in _legend_texts(fig)
    finally:
        plt.close(fig)


def _legend_texts(fig: plt.Figure) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_figure_renders(name, variant, tables, tmp_path):
    fig = FIGURES[name](tables[variant])
    try:
        panels, entries = EXPECTED[name]
        assert len([ax for ax in fig.axes if ax.get_visible()]) == panels
        legend = " | ".join(_legend_texts(fig))
        for entry in entries:
            assert entry in legend, (entry, legend)
        fig.savefig(tmp_path / "f.png", dpi=120)
        fig.savefig(tmp_path / "f.pdf")
    finally:
        plt.close(fig)
    png = (tmp_path / "f.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")


def test_every_figure_lists_its_tables():
    assert set(FIGURE_TABLES) == set(FIGURES)
    assert set(NEW_FIGURES) <= set(FIGURES)


@pytest.mark.parametrize("name", ["finetune_delta", "metric_vs_logauc"])
def test_draw_figure_from_csv(name, tables, tmp_path):
    """Through CSV files, where labels such as pre-training checkpoint "0" come back as
    numbers unless the figure treats them as labels."""
    paths = {}
    for key in FIGURE_TABLES[name]:
        paths[key] = tmp_path / f"{key}.csv"
        tables["2 seeds"][key].to_csv(paths[key], index=False)
    draw_figure(name, paths, tmp_path / "out" / "f.png", tmp_path / "out" / "f.pdf")
    assert (tmp_path / "out" / "f.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "f.pdf").read_bytes().startswith(b"%PDF")
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_finetune_curves_detail_row_and_zero_tick(tables):
    fig = FIGURES["finetune_curves"](tables["2 seeds"])
    try:
        top, detail = fig.axes[0], fig.axes[len(TARGETS)]
        assert "detail" in detail.get_title() and "detail" not in top.get_title()
        assert [t.get_text() for t in top.get_xticklabels()][0] == "0"
        # detail: the later checkpoints only, and one ±2 std band per source + baseline
        assert [t.get_text() for t in detail.get_xticklabels()] == ["160", "640", "3k"]
        assert len(detail.collections) == len(SOURCES) + 1
    finally:
        plt.close(fig)


def test_finetune_delta_values(tables):
    data = tables["2 seeds"]["finetune"]
    fig = FIGURES["finetune_delta"](tables["2 seeds"])
    try:
        ax = fig.axes[TARGETS.index("mnist")]
        last = data[(data["target"] == "mnist") & (data["finetune_step"] == "1e")]
        base = last[last["pretrain_step"] == "0"].groupby("seed")["test_accuracy"].mean()
        model = last[(last["source"] == "kmnist") & (last["pretrain_step"] == "3e")]
        expected = model["test_accuracy"].mean() - base.mean()
        line = ax.get_lines()[1 + SOURCES.index("kmnist")]  # after the zero line
        assert line.get_ydata()[-1] == pytest.approx(expected)
        baseline = data[(data["target"] == "mnist") & (data["pretrain_step"] == "0")]
        per_seed = baseline.groupby(["finetune_step", "seed"])["test_accuracy"].mean()
        band = next(c for c in ax.collections if c.get_gid() == "baseline_band")
        top = band.get_paths()[0].vertices[:, 1].max()
        assert top == pytest.approx(2 * per_seed.groupby("finetune_step").std().max())
    finally:
        plt.close(fig)


def test_finetune_delta_needs_baseline(tables):
    finetune = tables["2 seeds"]["finetune"]
    without = finetune[finetune["pretrain_step"] != "0"]
    with pytest.raises(ValueError, match="baseline.*pretrain_step '0'.*source 'scratch'"):
        FIGURES["finetune_delta"]({"finetune": without})


def test_finetune_delta_vgg_baseline(tables):
    """VGG track: the baseline is source "scratch" at pre-training step "final"."""
    finetune = tables["2 seeds"]["finetune"]
    vgg = finetune[finetune["pretrain_step"].isin(["0", "3e"])].copy()
    vgg.loc[vgg["pretrain_step"] == "0", "source"] = "scratch"
    vgg["pretrain_step"] = "final"
    fig = FIGURES["finetune_delta"]({"finetune": vgg.drop_duplicates()})
    try:
        legend = _legend_texts(fig)
        assert legend[: len(SOURCES)] == list(SOURCES)  # the pre-trained sources, not scratch
        assert "from scratch (source 'scratch')" in legend
        assert "checkpoint final" in fig.legends[0].get_title().get_text()
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", ["correlations", "correlations_source"])
def test_correlation_band_is_fisher_interval(name, tables):
    grouping = "all" if name == "correlations" else "source"
    fig = FIGURES[name](tables["2 seeds"])
    try:
        band = next(c for c in fig.axes[0].collections if c.get_gid() == "fisher_band")
        y = band.get_paths()[0].vertices[:, 1]
        low, high = fisher_interval(GROUP_N[grouping])
        assert np.nanmin(y) == pytest.approx(low) and np.nanmax(y) == pytest.approx(high)
        assert f"n = {GROUP_N[grouping]}" in " ".join(_legend_texts(fig))
    finally:
        plt.close(fig)


def test_correlation_markers_show_significance(tables):
    fig = FIGURES["correlations_finetune_step"](tables["2 seeds"])
    try:
        ax = fig.axes[0]  # fashion · id
        filled = sum(len(c.get_offsets()) for c in ax.collections[1::2])
        open_ = sum(len(c.get_offsets()) for c in ax.collections[2::2])
        rows = tables["2 seeds"]["correlations"]
        rows = rows[(rows["grouping"] == "finetune_step") & (rows["target"] == "fashion")
                    & (rows["metric"] == "id")]  # fmt: skip
        assert filled == rows["significant"].sum() and open_ == (~rows["significant"]).sum()
    finally:
        plt.close(fig)


def test_correlations_none_defined(tables):
    table = tables["2 seeds"]["correlations"].copy()
    source = table["grouping"] == "source"
    table.loc[source, ["n", "rho"]] = [3, np.nan]
    table.loc[source, "note"] = "only 3 finite (metric, ground truth) pairs; need >= 4"
    fig = FIGURES["correlations_source"]({"correlations": table})
    try:
        texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert "No Spearman ρ is defined" in texts and "only 3 finite" in texts
    finally:
        plt.close(fig)


def test_correlations_missing_grouping_and_columns(tables):
    table = tables["2 seeds"]["correlations"]
    with pytest.raises(ValueError, match="no rows of grouping 'pretrain_step'"):
        FIGURES["correlations_pretrain_step"](
            {"correlations": table[table["grouping"] != "pretrain_step"]}
        )
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['significant'\]"):
        FIGURES["correlations"]({"correlations": table.drop(columns="significant")})


def test_metric_vs_logauc_titles_name_the_layer(tables):
    fig = FIGURES["metric_vs_logauc"](tables["2 seeds"])
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    finally:
        plt.close(fig)
    rows = tables["2 seeds"]["correlations"]
    rows = rows[rows["grouping"] == "all"]
    for target, metric in itertools.product(TARGETS, METRICS):
        part = rows[(rows["target"] == target) & (rows["metric"] == metric)]
        best = part.loc[part["rho"].abs().idxmax()]
        expected = f"{target} · {metric} @ {best['layer']}\nρ = {best['rho']:+.2f}"
        assert any(title.startswith(expected) for title in titles), (expected, titles)


def test_layer_order_covers_both_tracks():
    assert _layer_order(["fc1", "logits", "input", "pool2", "conv1"]) == [
        "input", "conv1", "pool2", "fc1", "logits"]  # fmt: skip
    vgg = ["fc8", "pool5", "fc6", "pool1", "pool3", "fc7", "pool2", "pool4", "zeta"]
    assert _layer_order(vgg) == ["pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "fc7",
                                 "fc8", "zeta"]  # fmt: skip


# --------------------------------------------------------------------------- model figure


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from transferability.artifacts import save_checkpoint
    from transferability.data.arrays import ImageDataset, save_dataset
    from transferability.models.thesis_cnn import build_cnn

    root = tmp_path_factory.mktemp("model")
    model = build_cnn(10, 0)
    save_checkpoint(root / "model.pt", model.state_dict(),
                    {"source": "x", "seed": 0, "step": "0", "num_classes": 10})  # fmt: skip
    rng = np.random.default_rng(0)
    images = (rng.random((15, 28, 28)) * 80).astype(np.uint8)
    images[:, 8:20, 10:18] += 150
    labels = rng.integers(0, 3, 15).astype(np.int64)
    save_dataset(ImageDataset(images[:10], labels[:10], images[10:], labels[10:], 3, "toy"),
                 root / "data.npz")  # fmt: skip
    return root / "model.pt", root / "data.npz"


def test_model_figure(model_files, tmp_path):
    from transferability.report.plots_model import draw_model_figure, model_figure

    checkpoint, dataset = model_files
    draw_model_figure(checkpoint, dataset, tmp_path / "m.png", tmp_path / "m.pdf", sample=4)
    png = (tmp_path / "m.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 50_000
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    image = plt.imread(tmp_path / "m.png")
    assert image.shape[0] > 1000 and image.shape[1] > 1500 and image[..., :3].std() > 0.05

    fig = model_figure(checkpoint, dataset, sample=0, title="my title")
    try:
        sections = [sub._suptitle.get_text() for sub in fig.subfigs[0].subfigs]
        sections += [s._suptitle.get_text() for sub in fig.subfigs[1:] for s in sub.subfigs]
        assert fig._suptitle.get_text() == "my title"
        text = " | ".join(sections)
        for part in ("input", "conv1 filters (32", "fc1", "softmax over 10 classes",
                     "conv1 feature maps (all 32", "pool1", "conv2 feature maps (first 32 of 64",
                     "pool2 feature maps (first 32 of 64"):  # fmt: skip
            assert part in text, (part, text)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("sample", [5, -1])
def test_model_figure_sample_out_of_range(model_files, sample):
    from transferability.report.plots_model import model_figure

    with pytest.raises(ValueError, match=rf"sample index {sample} .* has 5 images"):
        model_figure(*model_files, sample=sample)


def test_plotting_modules_import_without_torch():
    code = ("import sys, transferability.report.plots, transferability.report.plots_model, "
            "transferability.report.plots_studies; assert 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metrics_per_layer_wraps_metrics_and_shows_each_metrics_own_layers():
    """Many metrics wrap into lines of at most MAX_COLUMNS panels (it was one very wide row),
    and a layer metric's panel has no tick for the `logits` of the prediction metrics."""
    from transferability.report.plots import MAX_COLUMNS

    golden = pd.read_csv(Path(__file__).parent / "golden" / "training" / "cnn" / "metrics.csv")
    fig = FIGURES["metrics_per_layer"]({"metrics": golden})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == golden["target"].nunique() * golden["metric"].nunique()
    width, _ = fig.get_size_inches()
    assert width <= 3.0 * MAX_COLUMNS + 1e-9
    rsa = next(ax for ax in visible if ax.get_title().startswith("rsa · "))
    assert [t.get_text() for t in rsa.get_xticklabels()] == ["input", "conv1", "pool2", "fc1"]
    leep = next(ax for ax in visible if ax.get_title().startswith("leep · "))
    assert [t.get_text() for t in leep.get_xticklabels()] == ["logits"]
    plt.close(fig)


def test_leaderboard_figure(tmp_path):
    from transferability.evaluation.analysis import Bootstrap, correlation_table, leaderboard_table

    tables = make_tables()
    metrics = tables["metrics"]
    rng = np.random.default_rng(3)
    baseline = metrics[(metrics.metric == "ss") & (metrics.layer == "fc1")].assign(
        layer="model", metric="baseline_random", value=lambda d: rng.random(len(d))
    )
    correlations = correlation_table(
        "cnn", pd.concat([metrics, baseline]), finetune_table(),
        {"id": False, "ss": False, "rsa": True, "baseline_random": True}, Bootstrap(resamples=200),
    )  # fmt: skip
    board = leaderboard_table(correlations)
    fig = FIGURES["leaderboard"]({"leaderboard": board})
    try:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == len(TARGETS)
        labels = [t.get_text() for t in axes[0].get_yticklabels()]
        assert "baseline_random" in labels and any(label.startswith("rsa @ ") for label in labels)
        assert any(line.get_linestyle() == "--" for line in axes[0].get_lines())
        fig.savefig(tmp_path / "f.png", dpi=120)
    finally:
        plt.close(fig)
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
