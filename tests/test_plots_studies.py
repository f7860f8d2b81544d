"""Study figures (transferability.report.plots_studies) drawn from small synthetic tidy tables."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from transferability.report.plots import _require  # noqa: E402
from transferability.report.plots_studies import STUDY_FIGURES  # noqa: E402

TARGETS = ("fashion", "mnist")
OTHERS = {"mnist": ("fashion", "kmnist"), "fashion": ("kmnist", "mnist")}
LAYERS = ("conv1", "conv2", "fc1", "fc2")
INITS = (0.9, 0.75, 0.5)
SEEDS = (0, 1)
STEPS = {"0": 0, "1b": 64, "30b": 1920, "3e": 180_000}


def quanta_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for target, seed, layer, init, run in itertools.product(TARGETS, SEEDS, LAYERS, INITS, (0, 1)):
        for source in OTHERS[target]:
            drift = rng.normal(0, 0.3) - 0.1 * LAYERS.index(layer)
            for epoch in range(13):
                lam = float(np.clip(init + drift * (1 - np.exp(-epoch / 4)), 0, 1))
                rows.append({
                    "track": "cnn", "target": target, "source": source, "seed": seed,
                    "pretrain_step": "3e", "layer": layer, "lambda_init": init, "run": run,
                    "epoch": epoch, "lambda_s": lam, "lambda_t": 1 - lam,
                    "train_loss": np.nan if epoch == 0 else 1 / (epoch + 1),
                    "test_loss": 1 / (epoch + 1), "test_accuracy": 0.5 + 0.03 * epoch,
                })  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[5, "lambda_s"] = np.nan
    return table


def quanta_scores_table(quanta: pd.DataFrame) -> pd.DataFrame:
    keys = ["track", "target", "source", "seed", "pretrain_step", "layer", "lambda_init"]
    last = quanta[quanta["epoch"] > quanta["epoch"].max() - 10]
    per_run = last.groupby([*keys, "run"], as_index=False)["lambda_s"].mean()
    scores = per_run.groupby(keys, as_index=False).agg(
        runs=("run", "nunique"), score=("lambda_s", "mean"), score_std=("lambda_s", "std")
    )
    scores.loc[3, "score"] = np.nan
    return scores


def layer_transfer_table(several_bases: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for target, seed, n in itertools.product(TARGETS, SEEDS, range(1, 5)):
        bases = OTHERS[target] if several_bases else OTHERS[target][:1]
        curves = [("A", base, v) for base in bases for v in ("AnB_frozen", "AnB_ft")]
        curves += [("B", target, v) for v in ("BnB_frozen", "BnB_ft")]
        for role, base, variant in curves:
            final = 0.97 - (0.04 * n if variant == "AnB_frozen" else 0.005 * n)
            final += rng.normal(0, 0.004)
            for step, samples in STEPS.items():
                frac = samples / max(STEPS.values())
                rows.append({
                    "track": "cnn", "target": target, "base": base, "role": role,
                    "variant": variant, "n": n, "seed": seed, "finetune_step": step,
                    "samples": samples, "epochs": samples / 60_000,
                    "train_loss": 2.3 * (1 - frac) + 0.05,
                    "test_accuracy": 0.1 + (final - 0.1) * frac ** 0.2,
                })  # fmt: skip
    return pd.DataFrame(rows)


FAMILIES = {"A": "small, balanced", "B": "large, imbalanced"}
SOURCES = ("cifar_cnn", "imagenet_vgg")
PEARSON_ROWS = (("leep", "logits"), ("nce", "logits"), ("hscore", "fc1"),
                ("hscore", "conv2"), ("logme", "fc1"))  # fmt: skip


def pearson_table() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for family, source, (metric, layer), gt in itertools.product(
        FAMILIES, SOURCES, PEARSON_ROWS, ("head", "finetune")
    ):
        r = float(np.clip(rng.normal(0.5, 0.4), -0.99, 0.99))
        rows.append({
            "track": "random", "family": family, "setting": FAMILIES[family], "source": source,
            "layer": layer, "metric": metric, "ground_truth": gt, "n": 50, "r": r,
            "pvalue": 0.001 if abs(r) > 0.3 else 0.4, "note": "",
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[2, ["r", "pvalue", "note"]] = [np.nan, np.nan, "constant metric"]
    return table


def levels_table(metrics: tuple[str, ...] = ("leep", "nce")) -> pd.DataFrame:
    rows = []
    for family, source, metric, gt, level in itertools.product(
        FAMILIES, SOURCES, metrics, ("head", "finetune"), range(1, 6)
    ):
        rows.append({
            "track": "random", "family": family, "setting": FAMILIES[family], "source": source,
            "layer": "logits", "metric": metric, "ground_truth": gt, "level": level,
            "low": -3 + 0.5 * level, "high": -2.5 + 0.5 * level, "n": 10 + level,
            "mean_accuracy": 0.3 + 0.12 * level + (0.03 if gt == "finetune" else 0),
            "note": "",
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[1, ["n", "mean_accuracy", "note"]] = [0, np.nan, "empty bin"]
    return table


def convergence_table() -> pd.DataFrame:
    rows = []
    for family, source, level, (step, samples) in itertools.product(
        FAMILIES, SOURCES, range(1, 6), STEPS.items()
    ):
        gap = (0.05 * level - 0.1) * np.exp(-samples / 50_000) + 0.01 * level
        rows.append({
            "track": "random", "family": family, "setting": FAMILIES[family], "source": source,
            "metric": "leep", "level": level, "finetune_step": step, "samples": samples,
            "n": 10, "accuracy_difference": gap,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table.loc[6, "accuracy_difference"] = np.nan
    return table


def make_tables() -> dict[str, pd.DataFrame]:
    quanta = quanta_table()
    return {
        "quanta": quanta,
        "quanta_scores": quanta_scores_table(quanta),
        "layer_transfer": layer_transfer_table(),
        "random_tasks_pearson": pearson_table(),
        "random_tasks_levels": levels_table(),
        "random_tasks_convergence": convergence_table(),
    }


#: Panels of each figure drawn from ``make_tables()``: rows × columns.
EXPECTED_PANELS = {
    "quanta_lambda": len(TARGETS) * len(INITS),
    "quanta_epochs": len(TARGETS) * 3,  # sources fashion, kmnist, mnist (no source = target)
    "layer_transfer": len(TARGETS),
    "random_tasks_pearson": len(FAMILIES) * len(SOURCES),
    "random_tasks_levels": len(FAMILIES) * len(SOURCES),
    "random_tasks_convergence": len(FAMILIES) * len(SOURCES),
}
#: A column each figure needs, removed to check the error message.
REQUIRED = {
    "quanta_lambda": "score",
    "quanta_epochs": "lambda_s",
    "layer_transfer": "test_accuracy",
    "random_tasks_pearson": "pvalue",
    "random_tasks_levels": "mean_accuracy",
    "random_tasks_convergence": "accuracy_difference",
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_tables()


@pytest.fixture(autouse=True)
def _theme_and_close():
    sns.set_theme(style="whitegrid", context="notebook")
    yield
    plt.close("all")


def _draw(name: str, tables: dict[str, pd.DataFrame]) -> plt.Figure:
    function, needed = STUDY_FIGURES[name]
    return function({key: tables[key] for key in needed})


def _texts(fig: plt.Figure) -> list[str]:
    """Every visible string: legends, suptitle, titles, tick labels, axis labels, annotations."""
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    texts += [legend.get_title().get_text() for legend in fig.legends]
    texts += [fig.get_suptitle()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        texts += [t.get_text() for t in ax.texts]
    return texts


def _legend_texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_registry_names_functions_and_tables():
    assert set(STUDY_FIGURES) == set(EXPECTED_PANELS)
    for name, (function, needed) in STUDY_FIGURES.items():
        assert callable(function) and function.__doc__
        assert needed and all(key in make_tables() for key in needed), name


@pytest.mark.parametrize("name", sorted(STUDY_FIGURES))
def test_figure_renders_to_png_and_pdf(name, tables, tmp_path):
    fig = _draw(name, tables)
    assert len(fig.axes) == EXPECTED_PANELS[name]
    assert fig.legends and fig.get_suptitle()
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    for path in (png, pdf):
        fig.savefig(path, dpi=80, bbox_inches="tight")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert png.stat().st_size > 5_000
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", sorted(STUDY_FIGURES))
def test_missing_column_raises_naming_it(name, tables):
    function, needed = STUDY_FIGURES[name]
    broken = {key: tables[key] for key in needed}
    broken[needed[0]] = broken[needed[0]].drop(columns=REQUIRED[name])
    with pytest.raises(ValueError, match=REQUIRED[name]):
        function(broken)


@pytest.mark.parametrize("name", sorted(STUDY_FIGURES))
def test_missing_or_empty_table_raises(name, tables):
    function, needed = STUDY_FIGURES[name]
    with pytest.raises(ValueError, match=needed[0]):
        function({})
    with pytest.raises(ValueError, match="no rows"):
        function({needed[0]: tables[needed[0]].iloc[:0]})


def test_require_lists_every_missing_column():
    table = pd.DataFrame({"a": [1]})
    assert _require(table, "t", ["a"]) is table
    with pytest.raises(ValueError, match=r"table 't' lacks column\(s\) \['b', 'c'\]"):
        _require(table, "t", ["a", "b", "c"])


def _error_bars(fig: plt.Figure) -> int:
    return sum(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)


def test_quanta_lambda_reads_well_and_drops_error_bars_for_a_single_seed(tables):
    fig = _draw("quanta_lambda", tables)
    assert _legend_texts(fig) == ["fashion", "kmnist", "mnist", "λ init"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYERS)
    assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 1
    assert "target fashion · λ init 0.9" in _texts(fig)
    assert _error_bars(fig) > 0
    single = tables["quanta_scores"][tables["quanta_scores"]["seed"] == 0]
    one_target = single[single["target"] == "mnist"]
    fig = STUDY_FIGURES["quanta_lambda"][0]({"quanta_scores": one_target})
    assert len(fig.axes) == len(INITS)
    assert _error_bars(fig) == 0
    assert "1 seed(s)" in fig.get_suptitle()


def test_quanta_epochs_uses_the_largest_lambda_init(tables):
    fig = _draw("quanta_epochs", tables)
    assert "λ init = 0.9" in fig.get_suptitle()
    assert _legend_texts(fig) == [*LAYERS, "λ init"]
    texts = _texts(fig)
    assert "no data" in texts  # target = source panels
    assert "target mnist\nsource kmnist" in texts
    dashed = [line.get_ydata()[0] for ax in fig.axes for line in ax.lines
              if line.get_linestyle() == "--"]  # fmt: skip
    assert dashed and set(dashed) == {0.9}
    one = tables["quanta"][(tables["quanta"]["seed"] == 0) & (tables["quanta"]["run"] == 0)]
    fig = STUDY_FIGURES["quanta_epochs"][0]({"quanta": one})  # single run: no band
    assert not any(ax.collections for ax in fig.axes)


def test_layer_transfer_labels_role_a_bases_when_several(tables):
    fig = _draw("layer_transfer", tables)
    labels = _legend_texts(fig)
    assert "AnB_ft [mnist]" in labels and "AnB_frozen [kmnist]" in labels
    assert "BnB_ft" in labels and not any("BnB" in label and "[" in label for label in labels)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert 0 <= ax.get_ylim()[0] and ax.get_ylim()[1] <= 1.01
    assert _error_bars(fig) > 0
    fig = STUDY_FIGURES["layer_transfer"][0]({"layer_transfer": layer_transfer_table(False)})
    assert _legend_texts(fig) == ["AnB_frozen", "AnB_ft", "BnB_frozen", "BnB_ft"]


def test_layer_transfer_uses_the_last_checkpoint_of_each_curve():
    table = layer_transfer_table(False)
    table = table[(table["target"] == "mnist") & (table["seed"] == 0)]
    fig = STUDY_FIGURES["layer_transfer"][0](
        {"layer_transfer": table.sample(frac=1, random_state=0)}
    )
    assert len(fig.axes) == 1 and _error_bars(fig) == 0
    final = table[table["samples"] == table["samples"].max()]
    expected = final[final["variant"] == "BnB_ft"].sort_values("n")["test_accuracy"].to_numpy()
    line = next(line for line in fig.axes[0].lines if line.get_label() == "BnB_ft")
    np.testing.assert_allclose(line.get_ydata(), expected)


def test_random_tasks_pearson_bars_stars_and_labels(tables):
    fig = _draw("random_tasks_pearson", tables)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "leep", "nce", "hscore @ fc1", "hscore @ conv2", "logme @ fc1",
    ]  # fmt: skip
    assert ax.get_xlim() == (-1, 1)
    texts = _texts(fig)
    assert "*" in texts and "n/a" in texts
    assert "family A (small, balanced)\nsource cifar_cnn" in texts
    assert _legend_texts(fig) == ["head", "finetune"]
    significant = (tables["random_tasks_pearson"]["pvalue"] < 0.05).sum()
    assert texts.count("*") == significant


def test_random_tasks_levels_picks_leep_and_leaves_empty_bins_empty(tables):
    fig = _draw("random_tasks_levels", tables)
    assert "leep" in fig.get_suptitle()
    heights = [p.get_height() for ax in fig.axes for p in ax.patches]
    assert len(heights) == 2 * 2 * 2 * 5 and sum(np.isnan(heights)) == 1
    counts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(counts) == 2 * 2 * 2 * 5 - 1 and "15" in counts
    assert fig.axes[0].get_ylim() == (0, 1.1)
    fig = STUDY_FIGURES["random_tasks_levels"][0](
        {"random_tasks_levels": levels_table(("nce", "hscore"))}
    )
    assert "nce" in fig.get_suptitle()


def test_random_tasks_convergence_levels_darken_and_zero_line(tables):
    fig = _draw("random_tasks_convergence", tables)
    assert _legend_texts(fig) == [f"level {k}" for k in range(1, 6)]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = [line for line in ax.lines if line.get_label().startswith("level")]
    lightness = [sum(to_rgb(line.get_color())) for line in lines]
    assert lightness == sorted(lightness, reverse=True)  # level 5 darkest
    assert any(line.get_linestyle() == "--" for line in ax.lines)
    assert min(lines[0].get_xdata()) > 0  # samples 0 moved onto the log axis


@pytest.mark.parametrize("name", sorted(STUDY_FIGURES))
def test_figures_draw_from_csv_round_trips(name, tables, tmp_path):
    function, needed = STUDY_FIGURES[name]
    read = {}
    for key in needed:
        tables[key].to_csv(tmp_path / f"{key}.csv", index=False)
        read[key] = pd.read_csv(tmp_path / f"{key}.csv")
    fig = function(read)
    assert len(fig.axes) == EXPECTED_PANELS[name]


def test_quanta_figures_keep_the_last_pretrain_checkpoint(tables):
    early = tables["quanta_scores"].assign(pretrain_step="1b", score=0.0)
    scores = pd.concat([early, tables["quanta_scores"]], ignore_index=True)
    fig = STUDY_FIGURES["quanta_lambda"][0]({"quanta_scores": scores})
    assert "pre-training checkpoint 3e" in fig.get_suptitle()
    means = np.concatenate([line.get_ydata() for ax in fig.axes for line in ax.lines
                            if line.get_linestyle() == "-"])  # fmt: skip
    assert np.nanmin(means) > 0  # the all-zero early checkpoint is not drawn


def test_layer_transfer_single_target_and_empty_layers(tables):
    table = tables["layer_transfer"]
    fig = STUDY_FIGURES["layer_transfer"][0]({"layer_transfer": table[table["target"] == "mnist"]})
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "target mnist"
    levels = levels_table().assign(layer=np.nan)
    fig = STUDY_FIGURES["random_tasks_levels"][0]({"random_tasks_levels": levels})
    assert len(fig.axes) == EXPECTED_PANELS["random_tasks_levels"]
    pearson = pearson_table().assign(r=np.nan, pvalue=np.nan)
    fig = STUDY_FIGURES["random_tasks_pearson"][0]({"random_tasks_pearson": pearson})
    assert "*" not in _texts(fig) and "n/a" in _texts(fig)


def test_random_tasks_pearson_marks_only_rows_that_exist():
    table = pearson_table()
    table = table[~((table["metric"] == "logme") & (table["ground_truth"] == "finetune"))]
    table = table.assign(r=0.1, pvalue=0.5)
    table.loc[table.index[0], ["r", "pvalue"]] = [np.nan, np.nan]
    fig = STUDY_FIGURES["random_tasks_pearson"][0]({"random_tasks_pearson": table})
    assert _texts(fig).count("n/a") == 1  # the absent logme/finetune rows are not "n/a"
    assert "logme @ fc1" in _texts(fig)


def test_level_bounds_get_the_decimals_that_tell_them_apart():
    from transferability.report.plots_studies import _distinguishing_digits

    assert _distinguishing_digits(np.array([-1.41, -1.43, -1.45, np.nan])) == 2
    assert _distinguishing_digits(np.array([0.1, 0.5, 0.9])) == 1
    assert _distinguishing_digits(np.array([1.00001, 1.00002])) == 4  # capped
