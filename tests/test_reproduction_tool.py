"""tools/reproduction.py: the nested protocols of docs/reproduction are the workflow's own
correlation table on the subset of seeds, pre-training checkpoints and fine-tuning steps."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
from test_workflow import REPO

from transferability.evaluation.analysis import correlation_table
from transferability.metrics import METRICS

spec = importlib.util.spec_from_file_location("reproduction", REPO / "tools" / "reproduction.py")
reproduction = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduction)

STEPS = ["0", "10b", "1e", "3e"]
FT = [("0", 0), ("1b", 64), ("300b", 19200), ("1e", 60000)]


def _tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    metrics, finetune = [], []
    for target in ("mnist", "fashion_mnist"):
        for source in ("a", "b", "c"):
            for s in (0, 1):
                for step in STEPS:
                    for metric in ("id", "ss", "rsa", "logme"):
                        metrics.append(dict(track="cnn", target=target, source=source, seed=s,
                                            step=step, layer="pool2", metric=metric,
                                            value=rng.normal(), note=""))  # fmt: skip
                    for label, samples in FT:
                        finetune.append(dict(
                            target=target, source=source, seed=s, pretrain_step=step,
                            finetune_step=label, samples=samples, test_accuracy=rng.random(),
                        ))  # fmt: skip
    return pd.DataFrame(metrics), pd.DataFrame(finetune)


def test_full_protocol_equals_the_workflow_table():
    metrics, finetune = _tables()
    got = reproduction.pooled(metrics, finetune, seeds=[0, 1], pretrain_steps=STEPS,
                              finetune_last="1e")  # fmt: skip
    directions = {m: METRICS[m].higher_is_better for m in ("id", "ss", "rsa")}
    thesis = metrics[metrics["metric"].isin(directions)]
    full = correlation_table("cnn", thesis, finetune, directions)
    full = full[full["grouping"] == "all"].set_index(["target", "metric"])["rho"]
    assert got.set_index(["target", "metric"])["rho"].to_dict() == pytest.approx(full.to_dict())
    assert (got["n"] == 3 * len(STEPS)).all()


def test_nested_protocol_cuts_seeds_checkpoints_and_curves():
    metrics, finetune = _tables(1)
    got = reproduction.pooled(metrics, finetune, seeds=[1], pretrain_steps=["0", "10b", "1e"],
                              finetune_last="300b")  # fmt: skip
    directions = {m: METRICS[m].higher_is_better for m in ("id", "ss", "rsa")}
    m = metrics[(metrics["seed"] == 1) & metrics["step"].isin(["0", "10b", "1e"])
                & metrics["metric"].isin(directions)]  # fmt: skip
    f = finetune[(finetune["seed"] == 1) & finetune["pretrain_step"].isin(["0", "10b", "1e"])
                 & (finetune["samples"] <= 19200)]  # fmt: skip
    expected = correlation_table("cnn", m, f, directions)
    expected = expected[expected["grouping"] == "all"].set_index(["target", "metric"])["rho"]
    assert got.set_index(["target", "metric"])["rho"].to_dict() == pytest.approx(expected.to_dict())
    assert (got["n"] == 9).all()
    table = reproduction.scales_table(metrics, finetune)
    assert "| 0 1 | `0 10b 1e 3e` | 1e | 12 |" in table
    rows = table.splitlines()[2:]  # pre-training cut at 1e and 3e, seeds 0 and 1 alone, both
    assert [row.split(" | ")[0] for row in rows] == ["| 0 1", "| 0 1", "| 0", "| 1", "| 0 1"]


def test_pooled_table_orders_metrics_by_oriented_rho():
    metrics, finetune = _tables(2)
    directions = {m: METRICS[m].higher_is_better for m in ("id", "ss", "rsa", "logme")}
    table = correlation_table("cnn", metrics, finetune, directions)
    text = reproduction.pooled_table(table)
    rows = text.splitlines()[2:]
    assert len(rows) == 4 and all(row.startswith("| `") for row in rows)
    pooled = table[(table["grouping"] == "all") & (table["layer"] == "pool2")]
    order = pooled.groupby("metric")["rho_oriented"].mean().sort_values(ascending=False)
    assert [row.split("`")[1] for row in rows] == list(order.index)


def test_finetune_cut_table_lists_every_metric_at_each_cut_and_the_largest_change():
    metrics, finetune = _tables(2)
    text = reproduction.finetune_cut_table(metrics, finetune, ["300b", "1e"])
    lines = text.splitlines()
    assert lines[0].startswith("| metric | fashion_mnist ρ to 300b | fashion_mnist ρ to 1e |")
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| `")}
    assert sorted(rows) == ["| `id` @ pool2", "| `logme` @ pool2", "| `rsa` @ pool2",
                            "| `ss` @ pool2"]  # fmt: skip
    # each cell is pooled() of that cut; the last column the largest |Δρ| within a target
    deltas = []
    for metric in ("id", "ss", "rsa", "logme"):
        rho = {}
        for cut in ("300b", "1e"):
            got = reproduction.pooled(metrics, finetune, seeds=[0, 1], pretrain_steps=STEPS,
                                      finetune_last=cut, names=[metric])  # fmt: skip
            rho[cut] = got.set_index("target")["rho"]
        delta = max(abs(rho["300b"][t] - rho["1e"][t]) for t in ("mnist", "fashion_mnist"))
        assert rows[f"| `{metric}` @ pool2"].endswith(f" | {delta:.3f} |")
        deltas.append(delta)
    assert lines[-1] == (f"n = {3 * len(STEPS)} models (seeds averaged); largest |Δρ| over all "
                         f"metrics: {max(deltas):.3f}")  # fmt: skip


def test_reevaluate_adds_baselines_intervals_and_leaderboard_and_is_idempotent(tmp_path):
    """Recorded tables (docs/reproduction, cut to three metrics at pool2) re-evaluated without
    re-training: baselines join as rows at layer ``model``, every pooled row gets intervals and
    the comparison with the best baseline, the recorded finetune_step rows are kept, and a
    second run writes the same files."""
    reevaluate = reproduction.reevaluate
    source = REPO / "docs" / "reproduction"
    metrics = pd.read_csv(source / "metrics.csv")
    keep = metrics["metric"].isin(["id", "ss", "rsa"]) & (metrics["layer"] == "pool2")
    metrics[keep].to_csv(tmp_path / "metrics.csv", index=False)
    for name in ("pretrain", "logauc"):
        shutil.copyfile(source / f"{name}.csv", tmp_path / f"{name}.csv")
    recorded = pd.read_csv(source / "correlations.csv")
    fine = recorded[(recorded["grouping"] == "finetune_step") & recorded["metric"].isin(["rsa"])]
    fine.to_csv(tmp_path / "correlations.csv", index=False)

    tables = reevaluate(tmp_path)
    board = tables["leaderboard"]
    assert set(board["metric"]) == {"id", "ss", "rsa", "baseline_pretrain_samples",
                                    "baseline_source_accuracy", "baseline_random"}  # fmt: skip
    pooled = tables["correlations"].query("grouping == 'all' and layer == 'pool2'")
    assert pooled[["rho_boot_low", "p_not_better"]].notna().all().all()
    assert (pooled["best_baseline"] == "baseline_pretrain_samples").all()
    # the recorded table's pooled ρ is unchanged by the re-evaluation
    before = recorded.query("grouping == 'all' and layer == 'pool2'").set_index(
        ["target", "metric"]
    )
    after = pooled.set_index(["target", "metric"])
    np.testing.assert_allclose(after["rho"], before.loc[after.index, "rho"], rtol=1e-12)
    kept = pd.read_csv(tmp_path / "correlations.csv").query("grouping == 'finetune_step'")
    assert len(kept) == len(fine)
    first = {n: (tmp_path / f"{n}.csv").read_bytes() for n in ("metrics", "correlations",
                                                                "leaderboard")}  # fmt: skip
    assert (tmp_path / "leaderboard.png").stat().st_size > 0
    reevaluate(tmp_path)
    assert {n: (tmp_path / f"{n}.csv").read_bytes() for n in first} == first
