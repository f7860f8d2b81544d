"""Trivial baselines (transferability.evaluation.baselines): values read from the pretrain table,
the
seeded random null, NaN with a note where a value is not recorded, and bad names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferability.evaluation import baselines
from transferability.evaluation.analysis import correlate


def _cnn_pretrain() -> pd.DataFrame:
    rows = []
    for source in ("mnist", "noise"):
        for step, samples, accuracy in (("0", 0, 0.1), ("10b", 640, 0.5), ("1e", 60000, 0.9)):
            rows.append({"source": source, "dataset": source, "seed": 0, "step": step,
                         "samples": samples, "test_accuracy": accuracy})  # fmt: skip
    return pd.DataFrame(rows)


def test_cnn_baselines_read_the_pretrain_table():
    table = baselines.baseline_rows("cnn", _cnn_pretrain(), ["fashion_mnist", "mnist"],
                                    ["pretrain_samples", "source_accuracy", "random"])  # fmt: skip
    assert list(table.columns) == baselines.COLUMNS
    assert len(table) == 2 * 6 * 3 and set(table["layer"]) == {"model"}
    assert set(table["metric"]) == {"baseline_pretrain_samples", "baseline_source_accuracy",
                                    "baseline_random"}  # fmt: skip
    samples = table[(table.metric == "baseline_pretrain_samples") & (table.target == "mnist")]
    assert samples["value"].tolist() == [0, 640, 60000, 0, 640, 60000]
    accuracy = table[table.metric == "baseline_source_accuracy"]
    assert accuracy["value"].tolist() == [0.1, 0.5, 0.9] * 4 and (accuracy["note"] == "").all()


def test_random_scores_are_seeded_per_model():
    table = baselines.baseline_rows("cnn", _cnn_pretrain(), ["mnist"], ["random"])
    again = baselines.baseline_rows("cnn", _cnn_pretrain().iloc[::-1], ["mnist"], ["random"])
    by_model = table.set_index(["source", "step"])["value"]
    assert by_model.equals(again.set_index(["source", "step"])["value"].loc[by_model.index])
    assert ((table["value"] >= 0) & (table["value"] < 1)).all() and table["value"].nunique() == 6
    other = baselines.baseline_rows("cnn", _cnn_pretrain(), ["mnist"], ["random"], random_seed=1)
    assert not np.allclose(other["value"], table["value"])


def test_random_baseline_is_a_null_whose_rho_scatters_around_zero():
    """Over 400 seeds, the random baseline's Spearman ρ with a fixed ground truth has mean ≈ 0
    and the spread of ρ under independence (1/√(n−1))."""
    n = 30
    pretrain = pd.DataFrame({"source": [f"s{i}" for i in range(n)], "seed": 0, "step": "final"})
    truth = np.linspace(0.2, 0.9, n)
    rhos = []
    for seed in range(400):
        scores = baselines.baseline_rows("zoo", pretrain, ["t"], ["random"], random_seed=seed)
        rhos.append(stats.spearmanr(scores["value"], truth).statistic)
    assert abs(np.mean(rhos)) < 3 / np.sqrt(n - 1) / np.sqrt(400)
    assert np.std(rhos) == pytest.approx(1 / np.sqrt(n - 1), rel=0.15)


def test_unrecorded_values_are_nan_with_a_note():
    pretrain = pd.DataFrame({"source": ["a", "b", "random"], "seed": 0, "step": "final",
                             "param_count": [10, 20, 10], "source_accuracy": [0.7, np.nan, np.nan],
                             "pretrain_samples": [np.nan, 300, 0]})  # fmt: skip
    table = baselines.baseline_rows("zoo", pretrain, ["t"], list(baselines.NAMES))
    value = table.set_index(["metric", "source"])["value"]
    assert value["baseline_param_count"].tolist() == [10, 20, 10]
    assert np.isnan(value["baseline_source_accuracy", "b"])
    note = table.set_index(["metric", "source"])["note"]
    assert "not recorded" in note["baseline_source_accuracy", "b"]
    assert note["baseline_source_accuracy", "a"] == ""
    assert value["baseline_pretrain_samples"].tolist()[1:] == [300, 0]
    # a column the table lacks entirely: every value NaN, noted
    cnn = baselines.baseline_rows("cnn", _cnn_pretrain(), ["mnist"], ["param_count"])
    assert cnn["value"].isna().all() and cnn["note"].str.contains("param_count").all()


def test_a_baseline_correlates_like_a_metric():
    pretrain = _cnn_pretrain()
    table = baselines.baseline_rows("cnn", pretrain, ["mnist"], ["pretrain_samples"])
    row = correlate(table["value"], np.log1p(table["value"]) + 0.01 * np.arange(6))
    assert row["rho"] > 0.8 and row["note"] == ""


def test_bad_baseline_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['size'\]; known: "):
        baselines.baseline_rows("cnn", _cnn_pretrain(), ["mnist"], ["size"])


def test_config_schema_offers_exactly_the_library_baselines():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (Path(__file__).parents[1] / "schemas" / "config.schema.yaml").read_text()
    )
    for track in ("cnn_track", "image_track"):
        items = schema["$defs"][track]["properties"]["baselines"]["items"]
        assert tuple(items["enum"]) == baselines.NAMES, track
    for defaults in baselines.DEFAULTS.values():
        baselines.check_names(defaults)


def test_config_resolves_the_default_baselines_per_track_kind():
    from transferability.run import config as tconfig

    config = {"tracks": {"cnn": {}, "vgg": {}, "zoo": {"baselines": ["random"]}}}
    assert tconfig.baselines(config, "cnn") == list(baselines.DEFAULTS["cnn"])
    assert tconfig.baselines(config, "vgg") == list(baselines.DEFAULTS["image"])
    assert tconfig.baselines(config, "zoo") == ["random"]


def test_baselines_meet_the_metrics_on_every_model_whatever_the_step_dtype():
    """A metric CSV holding only checkpoint "0" reads it as the integer 0, the pretrain table as
    the text "0": the correlation table still pairs every model (same n for both)."""
    from transferability.evaluation.analysis import correlation_table

    pretrain = _cnn_pretrain()
    steps = {"0": 0, "10b": "10b", "1e": "1e"}  # as pandas reads them from per-model CSVs
    models = [(s, step) for s in ("mnist", "noise") for step in steps]
    rng = np.random.default_rng(0)
    finetune = pd.DataFrame([
        {"target": "t", "source": s, "seed": 0, "pretrain_step": steps[step], "finetune_step": f,
         "samples": n, "test_accuracy": rng.random()}
        for s, step in models for f, n in (("0", 0), ("5b", 160))
    ])  # fmt: skip
    metrics = pd.DataFrame([
        {"track": "cnn", "target": "t", "source": s, "seed": 0, "step": steps[step],
         "layer": "fc1", "metric": "ss", "value": rng.random(), "note": ""} for s, step in models
    ])  # fmt: skip
    rows = baselines.baseline_rows("cnn", pretrain, ["t"], ["pretrain_samples"])
    table = correlation_table("cnn", pd.concat([metrics, rows]), finetune,
                              {"ss": False, "baseline_pretrain_samples": True})  # fmt: skip
    n = table[table.grouping == "all"].set_index("metric")["n"]
    assert n["ss"] == n["baseline_pretrain_samples"] == 6
