"""Tests of transferability.studies.tasks: random target tasks and their analysis (LEEP §5)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferability.data.arrays import ImageDataset
from transferability.studies.tasks import (
    TaskSpec,
    pearson_table,
    relative_to_reference,
    sample_tasks,
    task_dataset,
    transferability_levels,
)

# --------------------------------------------------------------------------- sample_tasks


def test_module_does_not_import_torch():
    # The Snakefile imports this module; torch must not come with it. Checked in a fresh
    # interpreter, since another test may have imported torch already.
    code = "import sys, transferability.studies.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_sample_tasks_deterministic_and_seed_dependent():
    kwargs = dict(k=20, min_classes=2, max_classes=10, per_class=30)
    a = sample_tasks(10, seed=1, **kwargs)
    b = sample_tasks(10, seed=1, **kwargs)
    c = sample_tasks(10, seed=2, **kwargs)
    assert a == b
    assert a != c
    assert [t.name for t in a] == [f"task_{i:03d}" for i in range(20)]


def test_sample_tasks_class_counts_and_distinct_classes():
    tasks = sample_tasks(100, 200, min_classes=2, max_classes=100, per_class=50, family="large")
    sizes = [len(t.classes) for t in tasks]
    assert min(sizes) >= 2 and max(sizes) <= 100
    assert len(set(sizes)) > 50  # spread over the range, not stuck at one size
    for t in tasks:
        assert t.name.startswith("large_")
        assert list(t.classes) == sorted(set(t.classes))
        assert all(0 <= c < 100 for c in t.classes)
        assert t.train_per_class == (50,) * len(t.classes)
        assert all(type(c) is int for c in t.classes + t.train_per_class)


def test_sample_tasks_fixed_class_count():
    tasks = sample_tasks(10, 30, min_classes=4, max_classes=4, per_class=30)
    assert {len(t.classes) for t in tasks} == {4}
    assert len({t.classes for t in tasks}) > 1


@pytest.mark.parametrize(("num", "per_class", "ratio"), [(2, 300, 5.0), (5, 100, 5.0), (7, 64, 8)])
def test_sample_tasks_imbalanced_counts(num, per_class, ratio):
    tasks = sample_tasks(
        10, 40, min_classes=num, max_classes=num, per_class=per_class, imbalance_ratio=ratio
    )
    for t in tasks:
        counts = sorted(t.train_per_class, reverse=True)
        assert counts[0] == per_class
        assert counts[-1] == round(per_class / ratio)
        assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
        # geometric: consecutive ratios all about ratio ** (1 / (num - 1))
        step = np.array(counts[:-1]) / np.array(counts[1:])
        np.testing.assert_allclose(step, ratio ** (1 / (num - 1)), rtol=0.05)
    # which class is the largest is random, not always the lowest class id
    first_largest = [t.train_per_class[0] == per_class for t in tasks]
    assert 0 < sum(first_largest) < len(tasks)


def test_sample_tasks_imbalance_ratio_one_is_balanced_and_classes_shared():
    kwargs = dict(k=10, min_classes=2, max_classes=6, per_class=40, seed=3)
    balanced = sample_tasks(10, **kwargs)
    ratio_one = sample_tasks(10, imbalance_ratio=1.0, **kwargs)
    skewed = sample_tasks(10, imbalance_ratio=4.0, **kwargs)
    assert balanced == ratio_one
    assert [t.classes for t in skewed] == [t.classes for t in balanced]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        (dict(min_classes=5, max_classes=4), "min_classes"),
        (dict(min_classes=2, max_classes=11), "max_classes"),
        (dict(min_classes=1, max_classes=4), "min_classes"),
        (dict(imbalance_ratio=0.5), "imbalance_ratio"),
        (dict(imbalance_ratio=math.nan), "imbalance_ratio"),
        (dict(imbalance_ratio=100.0), "imbalance_ratio"),
        (dict(k=0), "k"),
        (dict(per_class=0), "per_class"),
    ],
)
def test_sample_tasks_errors(kwargs, word):
    args = dict(k=3, min_classes=2, max_classes=4, per_class=30) | kwargs
    with pytest.raises(ValueError, match=word):
        sample_tasks(10, **args)


def test_taskspec_validates():
    with pytest.raises(ValueError, match="sorted and distinct"):
        TaskSpec("t", (3, 1), (5, 5))
    with pytest.raises(ValueError, match="sorted and distinct"):
        TaskSpec("t", (1, 1), (5, 5))
    with pytest.raises(ValueError, match="2 counts"):
        TaskSpec("t", (1, 2, 3), (5, 5))
    with pytest.raises(ValueError, match=">= 1"):
        TaskSpec("t", (1, 2), (5, 0))


# --------------------------------------------------------------------------- task_dataset


def _toy_dataset(train_counts=(6, 5, 4, 3), test_counts=(2, 3, 1, 4)) -> ImageDataset:
    """Every image's pixels hold its index in the split, so selections can be traced back."""

    def split(counts, seed):
        y = np.repeat(np.arange(len(counts)), counts)
        y = np.random.default_rng(seed).permutation(y).astype(np.int64)
        x = np.zeros((len(y), 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(len(y))
        return x, y

    train_x, train_y = split(train_counts, 0)
    test_x, test_y = split(test_counts, 1)
    return ImageDataset(train_x, train_y, test_x, test_y, len(train_counts), "toy")


def test_task_dataset_relabels_and_counts():
    ds = _toy_dataset()
    task = TaskSpec("toy_000", (1, 3), (4, 2))
    sub = task_dataset(ds, task, seed=0)
    assert sub.name == "toy_000" and sub.num_classes == 2
    assert np.bincount(sub.train_y, minlength=2).tolist() == [4, 2]
    train_idx = sub.train_x[:, 0, 0].astype(int)
    assert len(set(train_idx)) == 6  # no image twice
    assert np.all(np.diff(train_idx) > 0)  # original order kept
    np.testing.assert_array_equal(ds.train_y[train_idx], np.array([1, 3])[sub.train_y])
    # test split: all images of classes 1 and 3, relabelled 0 and 1
    test_idx = sub.test_x[:, 0, 0].astype(int)
    np.testing.assert_array_equal(test_idx, np.flatnonzero(np.isin(ds.test_y, [1, 3])))
    np.testing.assert_array_equal(ds.test_y[test_idx], np.array([1, 3])[sub.test_y])
    assert np.bincount(sub.test_y).tolist() == [3, 4]


def test_task_dataset_seeded():
    ds = _toy_dataset()
    task = TaskSpec("t", (0, 1, 2), (3, 3, 3))
    a, b, c = (task_dataset(ds, task, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x)


def test_task_dataset_too_few_names_class_and_counts():
    ds = _toy_dataset()
    task = TaskSpec("t", (0, 2, 3), (6, 5, 9))
    with pytest.raises(ValueError, match=r"class 2: need 5, have 4; class 3: need 9, have 3"):
        task_dataset(ds, task)
    with pytest.raises(ValueError, match="outside dataset"):
        task_dataset(ds, TaskSpec("t", (0, 4), (1, 1)))


def test_sampled_tasks_fit_dataset():
    ds = _toy_dataset(train_counts=(5,) * 4, test_counts=(2,) * 4)
    for task in sample_tasks(4, 5, min_classes=2, max_classes=4, per_class=5, imbalance_ratio=2):
        sub = task_dataset(ds, task)
        assert sorted(np.bincount(sub.train_y).tolist()) == sorted(task.train_per_class)


# --------------------------------------------------------------------------- analysis


def test_pearson_table_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = 0.5 * x + rng.normal(size=12)
    frame = pd.DataFrame(
        {
            "source": ["a"] * 12 + ["b"] * 4,
            "metric": "leep",
            "setting": "small",
            "value": np.r_[x, 1.0, 1.0, 1.0, 1.0],
            "accuracy": np.r_[y, 0.1, 0.2, 0.3, 0.4],
        }
    )
    frame.loc[11, "value"] = np.nan  # left out
    table = pearson_table(frame)
    assert table.columns.tolist() == ["source", "metric", "setting", "n", "r", "pvalue", "note"]
    row = table.set_index("source").loc["a"]
    expected = stats.pearsonr(x[:11], y[:11])
    assert row["n"] == 11 and row["note"] == ""
    assert row["r"] == pytest.approx(expected.statistic)
    assert row["pvalue"] == pytest.approx(expected.pvalue)
    const = table.set_index("source").loc["b"]
    assert math.isnan(const["r"]) and math.isnan(const["pvalue"])
    assert "constant" in const["note"]


def test_pearson_table_too_few_and_no_grouping():
    frame = pd.DataFrame({"value": [0.1, 0.2], "accuracy": [0.3, 0.1]})
    table = pearson_table(frame, by=())
    assert len(table) == 1 and table.loc[0, "n"] == 2
    assert math.isnan(table.loc[0, "r"]) and "need >= 3" in table.loc[0, "note"]
    with pytest.raises(ValueError, match="source"):
        pearson_table(frame)


def test_transferability_levels_uniform():
    x = np.linspace(0.0, 1.0, 11)  # 0, 0.1, ..., 1.0
    frame = pd.DataFrame({"metric": "leep", "value": x, "accuracy": x})
    table = transferability_levels(frame, by=["metric"])
    assert table["level"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(table["low"], [0.0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(table["high"], [0.2, 0.4, 0.6, 0.8, 1.0])
    # edges go up: 0.2 belongs to level 2; the maximum 1.0 to the top level.
    assert table["n"].tolist() == [2, 2, 2, 2, 3]
    np.testing.assert_allclose(table["mean_accuracy"], [0.05, 0.25, 0.45, 0.65, 0.9])
    assert (table["note"] == "").all()


def test_transferability_levels_empty_bin_and_groups():
    frame = pd.DataFrame(
        {
            "source": ["a"] * 4 + ["b"] * 3,
            "value": [0.0, 0.1, 0.95, 1.0, 2.0, 2.0, 2.0],
            "accuracy": [0.2, 0.4, 0.7, 0.9, 0.5, 0.6, 0.7],
        }
    )
    table = transferability_levels(frame, by=["source"])
    a = table[table["source"] == "a"]
    assert a["n"].tolist() == [2, 0, 0, 0, 2]
    assert a["mean_accuracy"].iloc[0] == pytest.approx(0.3)
    assert a["mean_accuracy"].iloc[1:4].isna().all()
    assert a["mean_accuracy"].iloc[4] == pytest.approx(0.8)
    b = table[table["source"] == "b"]  # constant metric: all in the top level
    assert b["n"].tolist() == [0, 0, 0, 0, 3]
    assert b["mean_accuracy"].iloc[4] == pytest.approx(0.6)
    assert "constant" in b["note"].iloc[0]
    three = transferability_levels(frame, by=["source"], levels=3)
    assert len(three) == 6
    with pytest.raises(ValueError, match="levels"):
        transferability_levels(frame, by=["source"], levels=0)


def test_relative_to_reference():
    finetune = pd.DataFrame(
        {
            "task": ["t0", "t0", "t1", "t1"],
            "source": "mnist",
            "finetune_step": [0, 10, 0, 10],
            "test_accuracy": [0.5, 0.9, 0.4, 0.6],
        }
    )
    reference = pd.DataFrame(
        {
            "task": ["t0", "t0", "t1", "t1", "t1", "t1"],
            "seed": [0, 0, 0, 0, 1, 1],
            "finetune_step": [0, 40, 0, 40, 0, 40],
            "test_accuracy": [0.1, 0.8, 0.1, 0.7, 0.2, 0.5],
        }
    )
    out = relative_to_reference(finetune, reference)
    assert out[["task", "source", "finetune_step"]].equals(
        finetune[["task", "source", "finetune_step"]]
    )
    np.testing.assert_allclose(out["reference_accuracy"], [0.8, 0.8, 0.6, 0.6])
    np.testing.assert_allclose(out["accuracy_difference"], [-0.3, 0.1, -0.2, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match=r"no reference model for tasks \['t1'\]"):
        relative_to_reference(finetune, reference[reference["task"] == "t0"])
    with pytest.raises(ValueError, match="reference lacks columns"):
        relative_to_reference(finetune, reference.drop(columns="finetune_step"))
