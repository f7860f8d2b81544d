import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferability.evaluation.analysis import (
    ZERO_OFFSET,
    aggregate_metrics,
    correlate,
    correlation_table,
    fisher_interval,
    log_auc,
    log_auc_table,
)


def test_log_auc_constant_curve_is_that_constant():
    assert log_auc([0, 1, 3, 10, 100], [0.7] * 5) == pytest.approx(0.7)


def test_log_auc_hand_computed():
    # points at 1, 10, 100: two equal-width log intervals; trapezoids (0.2+0.6)/2 and (0.6+1)/2
    assert log_auc([1, 10, 100], [0.2, 0.6, 1.0]) == pytest.approx((0.4 + 0.8) / 2)
    # unit of progress does not matter after normalisation
    assert log_auc([64, 640, 6400], [0.2, 0.6, 1.0]) == pytest.approx(0.6)


def test_log_auc_places_zero_half_a_decade_early():
    # 0 → 10 * 10^-0.5; log widths 0.5 and 1
    got = log_auc([0, 10, 100], [0.0, 1.0, 1.0])
    assert ZERO_OFFSET == pytest.approx(10**-0.5)
    assert got == pytest.approx((0.5 * 0.5 + 1.0 * 1.0) / 1.5)


@pytest.mark.parametrize(
    "progress, accuracy, match",
    [
        ([1], [0.5], "at least two"),
        ([1, 1], [0.5, 0.6], "strictly increasing"),
        ([1, 2], [0.5, np.nan], "NaN"),
        ([1, 2, 3], [0.5, 0.6], "equal length"),
    ],
)
def test_log_auc_bad_input(progress, accuracy, match):
    with pytest.raises(ValueError, match=match):
        log_auc(progress, accuracy)


def test_fisher_interval_values():
    low, high = fisher_interval(6)
    assert high == pytest.approx(math.tanh(1.96 / math.sqrt(3)))
    assert round(high, 1) == 0.8 and low == pytest.approx(-high)
    assert fisher_interval(72)[1] == pytest.approx(math.tanh(1.96 / math.sqrt(69)))
    assert all(math.isnan(v) for v in fisher_interval(3))


def test_correlate_matches_scipy_and_flags_significance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + 0.3 * rng.normal(size=30)
    got = correlate(x, y)
    rho, p = stats.spearmanr(x, y)
    assert got["rho"] == pytest.approx(rho) and got["pvalue"] == pytest.approx(p)
    assert got["significant"] and got["n"] == 30 and got["note"] == ""


def test_correlate_degenerate_cases_give_nan_and_reason():
    assert "constant" in correlate([1, 1, 1, 1, 1], [1, 2, 3, 4, 5])["note"]
    assert math.isnan(correlate([1, 1, 1, 1, 1], [1, 2, 3, 4, 5])["rho"])
    few = correlate([1, 2, 3], [3, 2, 1])
    assert math.isnan(few["rho"]) and "need >= 4" in few["note"]
    nan_dropped = correlate([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5])
    assert nan_dropped["n"] == 4 and nan_dropped["rho"] == pytest.approx(1.0)


def _fake_tables():
    """2 sources × 5 steps × 2 seeds, metric 'good' tracks log-AUC, 'flat' is constant."""
    rows_m, rows_f = [], []
    for s_i, source in enumerate(["a", "b"]):
        for k, step in enumerate(["0", "1b", "3b", "10b", "30b"]):
            for seed in (0, 1):
                quality = 0.5 + 0.1 * k + 0.03 * s_i + 0.001 * seed
                for layer in ("l1", "l2"):
                    rows_m.append(
                        dict(
                            track="cnn",
                            target="t",
                            source=source,
                            seed=seed,
                            step=step,
                            layer=layer,
                            metric="good",
                            value=quality,
                        )
                    )
                    rows_m.append(
                        dict(
                            track="cnn",
                            target="t",
                            source=source,
                            seed=seed,
                            step=step,
                            layer=layer,
                            metric="flat",
                            value=1.0,
                        )
                    )
                for f_step, samples in (("0", 0), ("1b", 10), ("3b", 30)):
                    acc = min(1.0, quality * (1 + samples / 30))
                    rows_f.append(
                        dict(
                            target="t",
                            source=source,
                            seed=seed,
                            pretrain_step=step,
                            finetune_step=f_step,
                            samples=samples,
                            test_accuracy=acc,
                        )
                    )
    return pd.DataFrame(rows_m), pd.DataFrame(rows_f)


def test_log_auc_table_one_row_per_curve():
    _, finetune = _fake_tables()
    table = log_auc_table(finetune)
    assert len(table) == 2 * 5 * 2
    assert table["logauc"].between(0, 1).all()


def test_correlation_table_groupings():
    metrics, finetune = _fake_tables()
    table = correlation_table("cnn", metrics, finetune, {"good": True, "flat": False})
    good = table[(table.metric == "good") & (table.layer == "l1")]
    everything = good[good.grouping == "all"].iloc[0]
    assert everything["n"] == 10 and everything["rho"] == pytest.approx(1.0)
    assert set(good[good.grouping == "source"]["group"]) == {"a", "b"}
    assert (good[good.grouping == "source"]["n"] == 5).all()
    assert set(good[good.grouping == "pretrain_step"]["group"]) == {"0", "1b", "3b", "10b", "30b"}
    # two sources per checkpoint: too few for a rank correlation → NaN with a note, no crash
    assert good[good.grouping == "pretrain_step"]["rho"].isna().all()
    assert set(good[good.grouping == "finetune_step"]["group"]) == {"0", "1b", "3b"}
    flat = table[(table.metric == "flat") & (table.grouping == "all")]
    assert flat["rho"].isna().all() and flat["note"].str.contains("constant").all()
    assert (good["rho_oriented"].dropna() == good["rho"].dropna()).all()
    assert list(table.columns[:12]) == [
        "track",
        "target",
        "layer",
        "metric",
        "grouping",
        "group",
        "n",
        "rho",
        "pvalue",
        "ci_low",
        "ci_high",
        "significant",
    ]


def test_correlate_literature_measures():
    truth = np.array([0.9, 0.7, 0.8, 0.5, 0.6])
    metric = np.array([5.0, 3.0, 4.0, 1.0, 2.0])  # ranks the models exactly like the truth
    up = correlate(metric, truth, higher_is_better=True)
    assert up["rho"] == pytest.approx(1.0) and up["rho_oriented"] == pytest.approx(1.0)
    assert up["kendall_tau"] == pytest.approx(1.0) and up["weighted_tau"] == pytest.approx(1.0)
    assert up["pearson"] == pytest.approx(stats.pearsonr(metric, truth).statistic)
    assert up["top1_regret"] == 0.0
    # a lower-is-better metric with the same numbers ranks the models backwards
    down = correlate(metric, truth, higher_is_better=False)
    assert down["rho"] == pytest.approx(1.0) and down["rho_oriented"] == pytest.approx(-1.0)
    assert down["weighted_tau"] == pytest.approx(stats.weightedtau(-metric, truth).statistic)
    assert down["top1_regret"] == pytest.approx(1 - 0.5 / 0.9)  # picks the worst model
    noisy = np.array([4.0, 5.0, 3.0, 1.0, 2.0])  # top pick is the 0.7 model
    got = correlate(noisy, truth)
    assert got["top1_regret"] == pytest.approx(1 - 0.7 / 0.9)
    assert got["kendall_tau"] == pytest.approx(stats.kendalltau(noisy, truth).statistic)
    # model selection (Agostinelli et al. 2022): relative top-1 accuracy and best-in-top-3
    assert up["relative_top1"] == 1.0 and up["best_in_top3"] == 1.0
    assert got["relative_top1"] == pytest.approx(0.7 / 0.9) and got["best_in_top3"] == 1.0
    assert down["relative_top1"] == pytest.approx(0.5 / 0.9) and down["best_in_top3"] == 0.0
    fourth = np.array([1.0, 5.0, 4.0, 3.0, 2.0])  # the best model ranked 5th, then 4th
    assert correlate(fourth, truth)["best_in_top3"] == 0.0
    assert correlate([2.0, 5.0, 4.0, 3.0, 1.0], truth)["best_in_top3"] == 0.0
    assert correlate([3.0, 5.0, 4.0, 1.0, 2.0], truth)["best_in_top3"] == 1.0
    undefined = correlate([1.0, 1.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4])
    assert math.isnan(undefined["relative_top1"]) and math.isnan(undefined["best_in_top3"])


#: TLlib's model-selection README (thuml/Transfer-Learning-Library examples/model_selection,
#: commit 56ccfd7), "Model Ranking Benchmark on CIFAR10": fine-tuned accuracy and the scores
#: of ten ImageNet models (GoogleNet, Inception V3, ResNet50/101/152, DenseNet121/169/201,
#: MobileNet V2, MNasNet), and the weighted τ it publishes for each score.
TLLIB_CIFAR10 = {
    "accuracy": [96.2, 97.5, 96.8, 97.7, 97.9, 97.2, 97.4, 97.4, 95.7, 96.8],
    "hscore": [5.911, 6.363, 6.567, 6.901, 6.945, 6.210, 6.547, 6.706, 5.928, 6.018],
    "leep": [-1.385, -1.259, -1.010, -0.829, -0.838, -1.035, -0.934, -0.888, -1.100, -1.066],
    "logme": [0.293, 0.349, 0.388, 0.463, 0.469, 0.302, 0.343, 0.369, 0.291, 0.304],
    "nce": [-1.139, -1.060, -1.007, -0.838, -0.851, -1.006, -0.946, -0.866, -1.089, -1.086],
}
TLLIB_CIFAR10_WEIGHTED_TAU = {"hscore": 0.800, "leep": 0.638, "logme": 0.785, "nce": 0.714}


@pytest.mark.parametrize("metric", sorted(TLLIB_CIFAR10_WEIGHTED_TAU))
def test_weighted_tau_reproduces_tllib_published_values(metric):
    got = correlate(TLLIB_CIFAR10[metric], TLLIB_CIFAR10["accuracy"])
    assert round(got["weighted_tau"], 3) == TLLIB_CIFAR10_WEIGHTED_TAU[metric]


def test_aggregate_c56_scales_over_models():
    rows = []
    for source, s5, s6 in (("a", 0.2, 1.0), ("b", 0.5, 3.0), ("c", 0.8, 5.0)):
        for metric, value in (("s5", s5), ("s6", s6)):
            rows.append(dict(track="cnn", target="t", source=source, seed=0, step="1b",
                             layer="l", metric=metric, value=value, note=""))  # fmt: skip
    out = aggregate_metrics(pd.DataFrame(rows), ["c56"]).set_index("source")["value"]
    assert out["a"] == pytest.approx(1.0) and out["c"] == pytest.approx(-1.0)
    assert out["b"] == pytest.approx(0.0)


def test_values_equal_up_to_rounding_noise_count_as_constant():
    saturated = 9.0 + np.array([0.0, 1e-13, -2e-13, 3e-14, 1e-13, -1e-13])
    got = correlate(saturated, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert math.isnan(got["rho"]) and "constant" in got["note"]
    # real differences well above the noise level still rank
    assert correlate(9.0 + 1e-6 * np.arange(6), np.arange(6.0))["rho"] == pytest.approx(1.0)


# ------------------------------------------------------------------ bootstrap and baselines


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_resampled_correlations_equal_scipy_per_resample():
    from transferability.evaluation.analysis import (
        Bootstrap,
        spearman_resampled,
        weighted_tau_resampled,
    )

    rng = np.random.default_rng(1)
    for n, ties in ((5, True), (12, True), (36, False)):
        x = rng.integers(0, 4, n).astype(float) if ties else rng.random(n)
        y = rng.random(n)
        idx = Bootstrap(resamples=200, seed=3).indices(n)
        rho = spearman_resampled(x, y, idx)
        wtau = weighted_tau_resampled(x, y, idx, chunk_pairs=500)  # several chunks
        for i in range(len(idx)):
            want = stats.spearmanr(x[idx[i]], y[idx[i]]).statistic
            assert rho[i] == pytest.approx(want, abs=1e-12, nan_ok=True)
            want = stats.weightedtau(x[idx[i]], y[idx[i]]).statistic
            assert wtau[i] == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_bootstrap_interval_contains_the_estimate_and_matches_scipy():
    from transferability.evaluation.analysis import Bootstrap, correlate

    rng = np.random.default_rng(7)
    truth = rng.random(30)
    metric = truth + rng.normal(0, 0.15, 30)
    row = correlate(metric, truth, True, Bootstrap())
    assert row["rho_boot_low"] < row["rho"] < row["rho_boot_high"]
    assert row["wtau_boot_low"] < row["weighted_tau"] < row["wtau_boot_high"]
    # the same percentile interval from scipy's resampler (other draws): within Monte Carlo error
    ref = stats.bootstrap((metric, truth), lambda a, b: stats.spearmanr(a, b).statistic,
                          paired=True, vectorized=False, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval  # fmt: skip
    assert row["rho_boot_low"] == pytest.approx(ref.low, abs=0.03)
    assert row["rho_boot_high"] == pytest.approx(ref.high, abs=0.03)
    # deterministic: the same seed gives the same interval, another seed another one
    assert correlate(metric, truth, True, Bootstrap())["rho_boot_low"] == row["rho_boot_low"]
    assert correlate(metric, truth, True, Bootstrap(seed=1))["rho_boot_low"] != row["rho_boot_low"]


def test_bootstrap_of_a_perfectly_monotone_metric_is_degenerate():
    from transferability.evaluation.analysis import Bootstrap, correlate

    truth = np.linspace(0.1, 0.9, 12)
    row = correlate(-np.exp(truth), truth, False, Bootstrap(resamples=500))
    assert row["rho"] == -1.0 and row["rho_boot_low"] == row["rho_boot_high"] == -1.0
    assert row["weighted_tau"] == 1.0 and row["wtau_boot_low"] == row["wtau_boot_high"] == 1.0


def test_paired_not_better():
    from transferability.evaluation.analysis import Bootstrap, paired_not_better

    rng = np.random.default_rng(2)
    truth = rng.random(36)
    good = truth + rng.normal(0, 1e-3, 36)
    noisy = truth + rng.normal(0, 0.5, 36)
    assert paired_not_better(good, noisy, truth, Bootstrap()) < 0.01
    assert paired_not_better(noisy, good, truth, Bootstrap()) > 0.99
    assert paired_not_better(noisy, noisy.copy(), truth, Bootstrap()) == 0.5


def test_bootstrap_settings_are_checked():
    from transferability.evaluation.analysis import Bootstrap

    with pytest.raises(ValueError, match="resamples must be >= 1"):
        Bootstrap(resamples=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        Bootstrap(confidence=1.0)


def test_correlation_table_compares_every_metric_with_the_best_baseline():
    from transferability.evaluation.analysis import Bootstrap, correlation_table

    rng = np.random.default_rng(5)
    models = [(s, step) for s in ("a", "b", "c", "d") for step in ("0", "10b", "1e")]
    truth = {m: rng.random() for m in models}
    finetune = pd.DataFrame([
        {"target": "t", "source": s, "seed": 0, "pretrain_step": step, "finetune_step": f,
         "samples": samples, "test_accuracy": truth[(s, step)] * (1 + samples / 100)}
        for (s, step) in models for f, samples in (("0", 0), ("5b", 160))
    ])  # fmt: skip
    # each curve's log-AUC is proportional to truth: the models' order is truth's
    metric_values = {
        "good": {m: truth[m] + rng.normal(0, 1e-3) for m in models},
        "baseline_random": {m: rng.random() for m in models},
        "baseline_weak": {m: truth[m] + rng.normal(0, 0.3) for m in models},
    }
    metrics = pd.DataFrame([
        {"track": "cnn", "target": "t", "source": s, "seed": 0, "step": step,
         "layer": "model" if name.startswith("baseline_") else "fc1", "metric": name,
         "value": values[(s, step)], "note": ""}
        for name, values in metric_values.items() for (s, step) in models
    ])  # fmt: skip
    directions = dict.fromkeys(metric_values, True)
    table = correlation_table("cnn", metrics, finetune, directions, Bootstrap(resamples=500))
    row = table[(table.metric == "good") & (table.grouping == "all")].iloc[0]
    baselines = table[table.metric.str.startswith("baseline_") & (table.grouping == "all")]
    best = baselines.loc[baselines["rho_oriented"].idxmax()]
    assert row["best_baseline"] == best["metric"]
    assert row["delta_rho_vs_baseline"] == pytest.approx(row["rho_oriented"] - best["rho_oriented"])
    assert 0.0 <= row["p_not_better"] < 0.05
    assert row["rho_boot_low"] <= row["rho"] <= row["rho_boot_high"]
    assert (baselines["best_baseline"] == "").all() and baselines["p_not_better"].isna().all()
    again = correlation_table("cnn", metrics, finetune, directions, Bootstrap(resamples=500))
    pd.testing.assert_frame_equal(table, again)
    # a metric on some models only (like a study's): compared on the models both rank
    few = metrics[(metrics.metric != "good") | metrics.source.isin(["a", "b"])]
    table = correlation_table("cnn", few, finetune, directions, Bootstrap(resamples=500))
    row = table[(table.metric == "good") & (table.grouping == "all")].iloc[0]
    assert row["n"] == 6
    kept = few[few.source.isin(["a", "b"])].pivot_table(index=["source", "step"], columns="metric",
                                                       values="value")  # fmt: skip
    auc = log_auc_table(finetune).set_index(["source", "pretrain_step"])["logauc"]
    truth = auc.loc[kept.index].to_numpy()
    want = (stats.spearmanr(kept["good"], truth).statistic
            - stats.spearmanr(kept[row["best_baseline"]], truth).statistic)  # fmt: skip
    assert row["delta_rho_vs_baseline"] == pytest.approx(want)


def test_source_pools():
    from transferability.evaluation.analysis import MAX_POOLS, source_pools

    six = source_pools([f"s{i}" for i in range(6)])
    assert len(six) == 6 and all(len(p) == 5 for p in six) and len(set(six)) == 6
    assert source_pools(["a", "b"]) == []
    many = source_pools([f"s{i:02d}" for i in range(30)], seed=1)
    assert len(many) == MAX_POOLS and all(len(p) == 27 for p in many)
    assert many == source_pools([f"s{i:02d}" for i in range(30)], seed=1)


def test_source_pool_stability():
    from transferability.evaluation.analysis import source_pool_stability

    index = pd.MultiIndex.from_tuples(
        [(s, step) for s in "abcdef" for step in ("0", "1e")], names=["source", "pretrain_step"]
    )
    truth = np.arange(12, dtype=float)
    perfect = pd.DataFrame({"value": truth * 2, "truth": truth}, index=index)
    row = source_pool_stability(perfect)
    assert row == pytest.approx({"rho_pool_p05": 1.0, "rho_pool_p95": 1.0, "top1_stable": 1.0})
    # source f's models (the two best) ranked last: perfect only in the pool without f
    swapped = perfect.copy()
    swapped.loc["f", "value"] = [-2.0, -1.0]
    row = source_pool_stability(swapped)
    with_f = stats.spearmanr([0, 2, 4, 6, 8, 10, 12, 14, -2, -1], range(10)).statistic
    low, high = np.percentile([1.0] + [with_f] * 5, [5, 95])
    assert row["rho_pool_p05"] == pytest.approx(low) and row["rho_pool_p95"] == pytest.approx(high)
    assert row["top1_stable"] == pytest.approx(1 / 6)


def test_leaderboard_takes_each_metrics_best_layer_and_ranks_with_the_baselines():
    from transferability.evaluation.analysis import CORRELATION_COLUMNS, leaderboard_table

    def row(target, layer, metric, rho, oriented, low, high):
        values = dict.fromkeys(CORRELATION_COLUMNS, np.nan)
        values.update(track="cnn", target=target, layer=layer, metric=metric, grouping="all",
                      group="all", n=12, rho=rho, rho_oriented=oriented, rho_boot_low=low,
                      rho_boot_high=high, note="")  # fmt: skip
        return values

    table = pd.DataFrame([
        row("t", "conv1", "ss", -0.2, 0.2, -0.6, 0.3),
        row("t", "pool2", "ss", -0.7, 0.7, -0.9, -0.4),  # lower is better: oriented = −ρ
        row("t", "pool2", "rsa", 0.5, 0.5, 0.1, 0.8),
        row("t", "model", "baseline_pretrain_samples", 0.6, 0.6, 0.3, 0.8),
        row("t", "pool2", "etran", np.nan, np.nan, np.nan, np.nan),
        row("u", "pool2", "ss", 0.1, -0.1, -0.3, 0.5),
    ] + [{**row("t", "pool2", "rsa", 0.9, 0.9, 0.8, 1.0), "grouping": "source"}])  # fmt: skip
    board = leaderboard_table(table)
    t = board[board.target == "t"]
    assert t["metric"].tolist() == ["ss", "baseline_pretrain_samples", "rsa", "etran"]
    assert t["rank"].tolist()[:3] == [1.0, 2.0, 3.0] and np.isnan(t["rank"].iloc[3])
    assert t["kind"].tolist() == ["metric", "baseline", "metric", "metric"]
    ss = t.iloc[0]
    assert ss["layer"] == "pool2" and ss["rho_oriented"] == 0.7
    assert (ss["rho_oriented_low"], ss["rho_oriented_high"]) == (0.4, 0.9)  # flipped interval
    rsa = t.iloc[2]
    assert (rsa["rho_oriented_low"], rsa["rho_oriented_high"]) == (0.1, 0.8)
    assert board[board.target == "u"]["rho_oriented"].tolist() == [-0.1]


def test_resampled_ranks_equal_scipy_rankdata_with_ties():
    from transferability.evaluation.analysis import Bootstrap, resampled_ranks

    rng = np.random.default_rng(5)
    for n in (1, 4, 30):
        x = rng.integers(0, 4, size=n).astype(float)  # many ties
        idx = Bootstrap(resamples=300).indices(n)
        np.testing.assert_array_equal(resampled_ranks(x, idx), stats.rankdata(x[idx], axis=1))
