"""Random target tasks and their analysis, after the LEEP paper (Nguyen et al., 2020, §5.1–5.5).

Target tasks
    A task is a random subset of a dataset's classes (§5.1: "randomly drawing a subset of the
    100 classes, with the subset's size ranging from 2 to 100"), with a fixed number of random
    training examples per class (§5.2: "exactly five random classes and 50 random examples per
    class") and all test images of the chosen classes as its test set (§5.1). Imbalanced tasks
    (§5.3: "The size of the smaller class is chosen uniformly from 30 to 60, while the other
    class is five times larger") generalise here to ``c`` classes whose counts fall geometrically
    from ``per_class`` to ``per_class / r``; for two classes and r = 5 that is the paper's setting.

Analysis
    Pearson correlations with two-sided p-values between a metric and test accuracy across tasks
    (§5.1, Table 1); "five transferability levels", the metric's range cut into five equal bins
    with the mean accuracy per bin (§5.2–5.4); and, for §5.5, a fine-tuned model's accuracy minus
    the *final* accuracy of a reference model trained from scratch on the same task.

This module is imported while the Snakefile is parsed: numpy, pandas and scipy only, no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from transferability.data.arrays import KNOWN_NUM_CLASSES, ImageDataset
from transferability.evaluation.analysis import snap_ties

__all__ = [
    "TaskSpec",
    "assign_levels",
    "family_tasks",
    "imbalanced_counts",
    "pearson_table",
    "relative_to_reference",
    "sample_tasks",
    "task_dataset",
    "transferability_levels",
]


@dataclass(frozen=True)
class TaskSpec:
    """One target task: which classes of a dataset, and how many training examples of each.

    Attributes
    ----------
    name : str
        Unique within a family, e.g. ``"small_007"``; becomes the task dataset's name.
    classes : tuple of int
        Original class ids, sorted, without duplicates; class ``classes[i]`` becomes label ``i``.
    train_per_class : tuple of int
        Training examples of each class (same order as ``classes``), each >= 1.
    """

    name: str
    classes: tuple[int, ...]
    train_per_class: tuple[int, ...]

    def __post_init__(self) -> None:
        # Normalise numpy integers to plain ints so that specs compare, hash and print cleanly.
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        object.__setattr__(self, "train_per_class", tuple(int(n) for n in self.train_per_class))
        if len(self.classes) < 1:
            raise ValueError(f"task {self.name!r}: classes is empty")
        if any(c < 0 for c in self.classes):
            raise ValueError(f"task {self.name!r}: negative class id in {self.classes}")
        if list(self.classes) != sorted(set(self.classes)):
            raise ValueError(
                f"task {self.name!r}: classes must be sorted and distinct, got {self.classes}"
            )
        if len(self.train_per_class) != len(self.classes):
            raise ValueError(
                f"task {self.name!r}: {len(self.train_per_class)} counts in train_per_class for "
                f"{len(self.classes)} classes"
            )
        if any(n < 1 for n in self.train_per_class):
            raise ValueError(
                f"task {self.name!r}: train_per_class must be >= 1, got {self.train_per_class}"
            )


def imbalanced_counts(num: int, per_class: int, imbalance_ratio: float | None) -> list[int]:
    """Training examples of ``num`` classes, largest first.

    ``per_class`` each when ``imbalance_ratio`` is None; otherwise ``per_class * r**(-i/(num-1))``
    for ``i = 0 .. num-1``, rounded (Python's ``round``): the largest class has ``per_class``, the
    smallest ``round(per_class / r)``, and consecutive classes differ by the same factor.
    """
    if imbalance_ratio is None or num == 1:
        return [per_class] * num
    exponents = np.arange(num) / (num - 1)
    return [max(1, round(per_class * imbalance_ratio ** (-e))) for e in exponents]


def sample_tasks(
    num_classes: int,
    k: int,
    *,
    min_classes: int,
    max_classes: int,
    per_class: int,
    imbalance_ratio: float | None = None,
    seed: int = 0,
    family: str = "task",
) -> list[TaskSpec]:
    """Draw ``k`` random target tasks from the classes ``0 .. num_classes-1``.

    Per task (one ``np.random.default_rng(seed)`` for all, so a seed fixes the whole list): the
    class count uniformly from ``[min_classes, max_classes]``, the classes without replacement,
    then a random order in which the classes receive the counts of :func:`imbalanced_counts`. That
    permutation is drawn for balanced families as well, so balanced and imbalanced families with
    the same seed and class range share their class sets. Tasks may repeat a class set when
    ``num_classes`` is small (the paper draws independently and so does this).

    Parameters
    ----------
    num_classes : int
        Classes of the dataset the tasks come from (>= 2).
    k : int
        Number of tasks (>= 1).
    min_classes, max_classes : int
        Range of the class count, ``2 <= min_classes <= max_classes <= num_classes``.
    per_class : int
        Training examples per class (>= 1); with ``imbalance_ratio``, those of the largest class.
    imbalance_ratio : float, optional
        ``r >= 1``: largest over smallest class size; the smallest class gets
        ``round(per_class / r)`` examples (``per_class / r >= 1`` required). Which class is the
        largest is random. The paper's §5.3 setting is two classes and ``r = 5``.
    seed : int
    family : str
        Prefix of the task names, ``f"{family}_{i:03d}"``.

    Returns
    -------
    list of TaskSpec

    Raises
    ------
    ValueError
        An impossible setting; the message names the argument.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if k < 1:
        raise ValueError(f"k (number of tasks) must be >= 1, got {k}")
    if min_classes < 2:
        raise ValueError(f"min_classes must be >= 2 (a classification task), got {min_classes}")
    if min_classes > max_classes:
        raise ValueError(f"min_classes ({min_classes}) must be <= max_classes ({max_classes})")
    if max_classes > num_classes:
        raise ValueError(f"max_classes ({max_classes}) must be <= num_classes ({num_classes})")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if imbalance_ratio is not None:
        if not math.isfinite(imbalance_ratio) or imbalance_ratio < 1:
            raise ValueError(f"imbalance_ratio must be a finite number >= 1, got {imbalance_ratio}")
        if per_class / imbalance_ratio < 1:
            raise ValueError(
                f"per_class / imbalance_ratio = {per_class} / {imbalance_ratio} < 1: the smallest "
                "class would have no examples"
            )
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(k):
        num = int(rng.integers(min_classes, max_classes + 1))
        classes = np.sort(rng.choice(num_classes, size=num, replace=False))
        order = rng.permutation(num)
        counts = np.asarray(imbalanced_counts(num, per_class, imbalance_ratio))[order]
        tasks.append(
            TaskSpec(
                name=f"{family}_{i:03d}",
                classes=tuple(classes.tolist()),
                train_per_class=tuple(counts.tolist()),
            )
        )
    return tasks


def family_tasks(family: str, settings: Mapping) -> list[TaskSpec]:
    """The tasks of a configured family (``tracks.<track>.studies.random_tasks.families``):
    ``settings`` holds ``dataset`` (a known dataset), ``tasks`` (K), ``min_classes``,
    ``max_classes``, ``per_class`` and optionally ``imbalance_ratio`` and ``seed``."""
    return sample_tasks(
        KNOWN_NUM_CLASSES[settings["dataset"]],
        settings["tasks"],
        min_classes=settings["min_classes"],
        max_classes=settings["max_classes"],
        per_class=settings["per_class"],
        imbalance_ratio=settings.get("imbalance_ratio"),
        seed=settings.get("seed", 0),
        family=family,
    )


def task_dataset(dataset: ImageDataset, task: TaskSpec, *, seed: int = 0) -> ImageDataset:
    """The target dataset of ``task``: its classes only, relabelled ``0 .. c-1``.

    Training split: ``task.train_per_class[i]`` images of class ``task.classes[i]`` drawn without
    replacement with ``np.random.default_rng(seed)``; test split: every test image of the task's
    classes (§5.1). Both keep the original order of ``dataset``.

    Raises
    ------
    ValueError
        A class id outside ``dataset``, or a class with fewer training images than the task asks
        for (every such class named with its counts).
    """
    classes = np.asarray(task.classes, dtype=np.int64)
    if classes.max() >= dataset.num_classes:
        raise ValueError(
            f"task {task.name!r}: classes {task.classes} outside dataset {dataset.name!r} "
            f"with {dataset.num_classes} classes"
        )
    members = [np.flatnonzero(dataset.train_y == c) for c in classes]
    short = [
        f"class {c}: need {n}, have {len(m)}"
        for c, n, m in zip(task.classes, task.train_per_class, members, strict=True)
        if len(m) < n
    ]
    if short:
        raise ValueError(
            f"task {task.name!r}: too few training images in dataset {dataset.name!r} "
            f"({'; '.join(short)})"
        )
    rng = np.random.default_rng(seed)
    train_idx = np.sort(
        np.concatenate(
            [
                rng.choice(m, n, replace=False)
                for m, n in zip(members, task.train_per_class, strict=True)
            ]
        )
    )
    test_idx = np.flatnonzero(np.isin(dataset.test_y, classes))
    relabel = np.full(dataset.num_classes, -1, dtype=np.int64)
    relabel[classes] = np.arange(len(classes))
    return ImageDataset(
        train_x=dataset.train_x[train_idx],
        train_y=relabel[dataset.train_y[train_idx]],
        test_x=dataset.test_x[test_idx],
        test_y=relabel[dataset.test_y[test_idx]],
        num_classes=len(classes),
        name=task.name,
    )


# --------------------------------------------------------------------------- analysis


def _groups(frame: pd.DataFrame, by: Sequence[str], needed: Sequence[str]):
    """(key dict, part) per group of ``by``; one group of all rows when ``by`` is empty."""
    by = list(by)
    missing = [c for c in [*by, *needed] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; it has {list(frame.columns)}")
    if not by:
        yield {}, frame
        return
    for key, part in frame.groupby(by, sort=True, dropna=False):
        yield dict(zip(by, key, strict=True)), part


def _finite_pairs(part: pd.DataFrame, x_col: str, y_col: str) -> tuple[np.ndarray, np.ndarray]:
    """The finite (x, y) pairs, x compared to 10 significant digits (:func:`snap_ties`): a metric
    equal across tasks up to rounding noise (an H-score saturated at C − 1) is constant."""
    x = pd.to_numeric(part[x_col], errors="coerce").to_numpy(dtype=np.float64)
    y = pd.to_numeric(part[y_col], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return snap_ties(x[keep]), y[keep]


def pearson_table(
    frame: pd.DataFrame,
    *,
    metric_col: str = "value",
    accuracy_col: str = "accuracy",
    by: Sequence[str] = ("source", "metric", "setting"),
) -> pd.DataFrame:
    """Pearson correlation between a metric and accuracy across tasks, per group (§5.1, Table 1).

    Rows with a non-finite metric or accuracy are left out. Returns one row per group with the
    ``by`` columns, ``n`` (finite pairs), ``r`` and ``pvalue`` (two-sided,
    ``scipy.stats.pearsonr``) and ``note``: NaNs and a reason when ``n < 3`` or a column is
    constant, else an empty string.
    """
    rows = []
    for key, part in _groups(frame, by, [metric_col, accuracy_col]):
        x, y = _finite_pairs(part, metric_col, accuracy_col)
        n = len(x)
        r = p = math.nan
        if n < 3:
            # pearsonr answers n = 2 with r = ±1, p = 1: meaningless, hence NaN.
            note = f"only {n} finite (metric, accuracy) pairs; need >= 3"
        elif np.ptp(x) == 0:
            note = f"{metric_col} is constant across tasks; correlation undefined"
        elif np.ptp(y) == 0:
            note = f"{accuracy_col} is constant across tasks; correlation undefined"
        else:
            note = ""
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = stats.pearsonr(x, y)
            r, p = float(result.statistic), float(result.pvalue)
        rows.append({**key, "n": n, "r": r, "pvalue": p, "note": note})
    return pd.DataFrame(rows, columns=[*by, "n", "r", "pvalue", "note"])


def assign_levels(values: np.ndarray, levels: int = 5) -> tuple[np.ndarray, np.ndarray, str]:
    """``(level, edges, note)``: the 0-based level of each finite value when ``[min, max]`` is
    cut into ``levels`` equal-width intervals ``[low, high)`` (the top one also holds ``max``; a
    value on an inner edge belongs to the higher level), the ``levels + 1`` edges, and a note
    for the degenerate cases (no values: NaN edges; a constant: every value in the top level).
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64), np.full(levels + 1, math.nan), "has no finite values"
    lo, hi = float(x.min()), float(x.max())
    edges = np.linspace(lo, hi, levels + 1)
    if hi == lo:
        return np.full(len(x), levels - 1), edges, "is constant; every task in the top level"
    # Comparing with the inner edges (not (x - lo) / width) keeps bins and their reported edges
    # consistent; max lands in the top bin as no inner edge exceeds it.
    return np.searchsorted(edges[1:-1], x, side="right"), edges, ""


def transferability_levels(
    frame: pd.DataFrame,
    *,
    metric_col: str = "value",
    accuracy_col: str = "accuracy",
    by: Sequence[str] = ("source", "metric", "setting"),
    levels: int = 5,
) -> pd.DataFrame:
    """Mean accuracy of the tasks in each of ``levels`` equal-width bins of the metric (§5.2).

    Per group, ``[min, max]`` of the finite metric values is cut into ``levels`` intervals
    ``[low, high)``; the top one also holds ``max``. A value on an inner edge belongs to the
    higher level. Level 1 holds the lowest metric values, i.e. the hardest transfers when higher
    is better. A constant metric puts every task in the top level (every value is the maximum).

    Returns
    -------
    pd.DataFrame
        ``levels`` rows per group: the ``by`` columns, ``level`` (1 .. levels), ``low``,
        ``high``, ``n`` (tasks in the bin) and ``mean_accuracy`` (NaN for an empty bin), plus a
        ``note`` (non-empty for a constant metric or a group without finite pairs).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    rows = []
    for key, part in _groups(frame, by, [metric_col, accuracy_col]):
        x, y = _finite_pairs(part, metric_col, accuracy_col)
        level, edges, note = assign_levels(x, levels)
        if note:
            note = f"{metric_col} {note}"
        for j in range(levels):
            in_bin = level == j
            count = int(in_bin.sum())
            rows.append(
                {
                    **key,
                    "level": j + 1,
                    "low": float(edges[j]),
                    "high": float(edges[j + 1]),
                    "n": count,
                    "mean_accuracy": float(y[in_bin].mean()) if count else math.nan,
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=[*by, "level", "low", "high", "n", "mean_accuracy", "note"])


def relative_to_reference(finetune: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned accuracy minus the reference model's final accuracy on the same task (§5.5).

    The paper: "we track the difference between the fine-tuned model's test accuracy and the
    *final* test accuracy of the corresponding reference model" (a model trained from scratch on
    the target data only).

    Parameters
    ----------
    finetune : pd.DataFrame
        One row per (task, fine-tuning checkpoint, and whatever else: source, seed, …) with at
        least ``task``, ``finetune_step`` and ``test_accuracy``; other columns are kept.
    reference : pd.DataFrame
        The reference models' training curves, at least ``task``, ``finetune_step`` and
        ``test_accuracy``. The final accuracy is the one at the largest ``finetune_step`` of each
        task (of each (task, seed) when there is a ``seed`` column, then averaged over seeds).

    Returns
    -------
    pd.DataFrame
        ``finetune`` with ``reference_accuracy`` and
        ``accuracy_difference = test_accuracy - reference_accuracy`` added (0 where the
        fine-tuned model matches the reference; positive where it beats it).

    Raises
    ------
    ValueError
        A required column is missing, or a task of ``finetune`` has no reference.
    """
    needed = ["task", "finetune_step", "test_accuracy"]
    for label, frame in (("finetune", finetune), ("reference", reference)):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{label} lacks columns {missing}; it has {list(frame.columns)}")
    runs = ["task", "seed"] if "seed" in reference.columns else ["task"]
    last = reference.groupby(runs)["finetune_step"].transform("max")
    final = (
        reference[reference["finetune_step"] == last]
        .groupby(runs, as_index=False)["test_accuracy"]
        .mean()
        .groupby("task", as_index=False)["test_accuracy"]
        .mean()
        .rename(columns={"test_accuracy": "reference_accuracy"})
    )
    absent = sorted(set(finetune["task"]) - set(final["task"]), key=str)
    if absent:
        raise ValueError(f"no reference model for tasks {absent}")
    if "reference_accuracy" in finetune.columns:
        finetune = finetune.drop(columns=["reference_accuracy"])
    out = finetune.merge(final, on="task", how="left", validate="many_to_one")
    out["accuracy_difference"] = out["test_accuracy"] - out["reference_accuracy"]
    return out
