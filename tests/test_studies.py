"""The three studies' jobs and tables (transferability.jobs.studies) on toy data, without
Snakemake."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferability.artifacts import load_checkpoint, save_checkpoint
from transferability.data.arrays import ImageDataset, save_dataset
from transferability.evaluation.analysis import correlation_table
from transferability.jobs.studies import (
    TASK_COLUMNS,
    layer_transfer_table,
    quanta_tables,
    random_task_references,
    random_tasks,
    random_tasks_tables,
    run_layer_transfer,
    run_quanta,
)
from transferability.jobs.tables import build_tables
from transferability.models.thesis_cnn import build_cnn
from transferability.studies.quanta import quanta_metric_rows
from transferability.studies.tasks import TaskSpec


def _dataset(num_classes: int, name: str, seed: int = 0, n_train: int = 240) -> ImageDataset:
    """Toy 28×28 images whose class shows as a bright square at a class-specific place."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = np.arange(n) % num_classes
        images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        for c in range(num_classes):
            row, col = divmod(c, 4)
            images[labels == c, 4 + 6 * row : 9 + 6 * row, 4 + 6 * col : 9 + 6 * col] += 150
        return images, labels

    (train_x, train_y), (test_x, test_y) = split(n_train), split(120)
    return ImageDataset(train_x, train_y, test_x, test_y, num_classes, name)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 4-class target dataset, a 6-class one for random tasks, and a source checkpoint."""
    root = tmp_path_factory.mktemp("studies")
    save_dataset(_dataset(4, "toy_target"), root / "target.npz")
    save_dataset(_dataset(6, "toy_tasks", seed=1), root / "tasks.npz")
    state = build_cnn(4, 3).state_dict()
    meta = {"source": "toy_source", "seed": 0, "step": "9b", "num_classes": 4}
    save_checkpoint(root / "source.pt", state, meta)
    return root


QUANTA = {"epochs": 3, "last_epochs": 2, "lr": 1e-3, "batch_size": 32,
          "train_samples": None, "eval_samples": None}  # fmt: skip


def _run_quanta(root, name: str) -> dict:
    keys = [("9b", layer, lam, run) for layer in ("conv1", "fc1") for lam in (0.9, 0.5)
            for run in (0, 1)]  # fmt: skip
    outputs = {key: root / name / f"{key[1]}_{key[2]}_{key[3]}.csv" for key in keys}
    run_quanta({"9b": root / "source.pt"}, root / "target.npz", outputs, target="toy_target",
               seed=0, protocol=QUANTA, device="cpu")  # fmt: skip
    return outputs


def test_quanta_job_histories(toy):
    outputs = _run_quanta(toy, "quanta")
    for (_step, layer, lam, run), path in outputs.items():
        history = pd.read_csv(path)
        assert history["epoch"].tolist() == [0, 1, 2, 3]
        first = history.iloc[0]
        assert (first["source"], first["layer"], first["run"]) == ("toy_source", layer, run)
        assert history["lambda_s"].iloc[0] == pytest.approx(lam, abs=1e-6)  # the init
        np.testing.assert_allclose(history["lambda_s"] + history["lambda_t"], 1.0, atol=1e-6)
        assert history["lambda_s"].between(0, 1).all()
        assert history["lambda_s"].iloc[-1] != history["lambda_s"].iloc[0]  # v is trained
    # runs differ (own initialisation and data order); a rerun is bit-identical (CPU)
    a = pd.read_csv(outputs[("9b", "fc1", 0.9, 0)])
    b = pd.read_csv(outputs[("9b", "fc1", 0.9, 1)])
    assert not np.allclose(a["test_loss"], b["test_loss"])
    again = _run_quanta(toy, "quanta_again")
    for key, path in outputs.items():
        assert path.read_bytes() == again[key].read_bytes()


def test_quanta_scores_average_the_last_epochs_over_runs(toy):
    outputs = _run_quanta(toy, "quanta_scores")
    histories, scores = quanta_tables(list(outputs.values()), track="cnn", last_epochs=2)
    assert len(histories) == 4 * len(outputs) and (histories["track"] == "cnn").all()
    assert len(scores) == 4 and (scores["runs"] == 2).all()
    row = scores[(scores["layer"] == "fc1") & (scores["lambda_init"] == 0.5)].iloc[0]
    per_run = [pd.read_csv(outputs[("9b", "fc1", 0.5, r)])["lambda_s"].iloc[-2:].mean()
               for r in (0, 1)]  # fmt: skip
    assert row["score"] == pytest.approx(np.mean(per_run))
    assert row["score_std"] == pytest.approx(np.std(per_run, ddof=1))
    metric = quanta_metric_rows(scores, 0.5)
    assert sorted(metric["layer"]) == ["conv1", "fc1"]
    assert (metric["metric"] == "quanta").all() and (metric["step"] == "9b").all()
    assert metric.loc[metric["layer"] == "fc1", "value"].iloc[0] == pytest.approx(row["score"])


def test_quanta_scores_join_the_metrics_and_correlation_tables(tmp_path):
    """build_tables adds the chosen λ init's scores as metric `quanta` (higher is better)."""
    sources = ["a", "b", "c", "d", "e"]
    scores = pd.DataFrame({"track": "cnn", "target": "t", "source": sources, "seed": 0,
                           "pretrain_step": "9b", "layer": "fc1", "lambda_init": 0.9, "runs": 1,
                           "score": [0.5, 0.6, 0.7, 0.8, 0.9], "score_std": math.nan})  # fmt: skip
    scores_path = tmp_path / "scores.csv"
    scores.to_csv(scores_path, index=False)
    curves = []
    for i, source in enumerate(sources):
        curve = pd.DataFrame({"target": "t", "source": source, "seed": 0, "pretrain_step": "9b",
                              "finetune_step": ["0", "3b"], "samples": [0, 96],
                              "test_accuracy": [0.1, 0.2 + 0.1 * i]})  # fmt: skip
        path = tmp_path / f"curve_{source}.csv"
        curve.to_csv(path, index=False)
        curves.append(path)
    metric = pd.DataFrame({"track": "cnn", "target": "t", "source": sources, "seed": 0,
                           "step": "9b", "layer": "fc1", "metric": "ss",
                           "value": [0.5, 0.4, 0.3, 0.2, 0.1], "note": ""})  # fmt: skip
    metric.to_csv(tmp_path / "metrics.csv", index=False)
    names = ["pretrain", "metrics", "finetune", "logauc", "correlations", "leaderboard"]
    tables = build_tables("cnn", [], [tmp_path / "metrics.csv"], curves,
                          {n: tmp_path / f"{n}.csv" for n in names}, metrics=["ss"],
                          quanta_scores=scores_path, quanta_lambda_init=0.9)  # fmt: skip
    assert (tables["metrics"]["metric"] == "quanta").sum() == 5
    row = tables["correlations"].query("metric == 'quanta' and grouping == 'all'").iloc[0]
    assert row["rho"] == pytest.approx(1.0) and row["rho_oriented"] == pytest.approx(1.0)
    # the same numbers as correlating the two by hand
    direct = correlation_table("cnn", quanta_metric_rows(scores, 0.9), pd.concat(
        [pd.read_csv(p) for p in curves]), {"quanta": True})  # fmt: skip
    assert direct.query("grouping == 'all'")["rho"].iloc[0] == pytest.approx(row["rho"])


LAYER_TRANSFER = {"lr": 1e-3, "batch_size": 32, "checkpoints": ["0", "3b", "6b"],
                  "train_samples": None, "eval_samples": None}  # fmt: skip


def test_layer_transfer_job_curves(toy):
    variants = [("frozen", 1), ("ft", 1), ("frozen", 3), ("ft", 3)]
    outputs = {v: toy / "lt" / f"{v[0]}_n{v[1]}.csv" for v in variants}
    run_layer_transfer(toy / "source.pt", toy / "target.npz", outputs, target="toy_target",
                       role="A", seed=0, protocol=LAYER_TRANSFER, device="cpu")  # fmt: skip
    table = layer_transfer_table(list(outputs.values()), track="cnn")
    assert set(table["variant"]) == {"AnB_frozen", "AnB_ft"}
    assert (table["base"] == "toy_source").all() and (table["role"] == "A").all()
    assert len(table) == 3 * len(variants)
    first = table[table["finetune_step"] == "0"].set_index(["variant", "n"])["test_accuracy"]
    # before training, frozen and fine-tuned models of the same n are the same model
    assert first[("AnB_frozen", 1)] == first[("AnB_ft", 1)]
    assert first[("AnB_frozen", 3)] == first[("AnB_ft", 3)]
    with pytest.raises(ValueError, match="role must be 'A' or 'B'"):
        run_layer_transfer(toy / "source.pt", toy / "target.npz", outputs, target="toy_target",
                           role="C", seed=0, protocol=LAYER_TRANSFER, device="cpu")  # fmt: skip


def test_layer_transfer_frozen_layers_stay_the_base_layers(toy, monkeypatch):
    """The job trains exactly what build_layer_transfer leaves trainable: with n = 3 frozen,
    conv1 … fc1 end equal to the base's, while fc2 moves."""
    import transferability.studies.layer_transfer as lt

    built = []
    original = lt.build_layer_transfer

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(lt, "build_layer_transfer", spy)
    run_layer_transfer(toy / "source.pt", toy / "target.npz", {("frozen", 3): toy / "f3.csv"},
                       target="toy_target", role="B", seed=0, protocol=LAYER_TRANSFER,
                       device="cpu")  # fmt: skip
    base, _ = load_checkpoint(toy / "source.pt")
    trained = built[0].state_dict()
    for name in ("conv1", "conv2", "fc1"):
        assert trained[f"{name}.weight"].equal(base[f"{name}.weight"])
    assert not trained["fc2.weight"].equal(base["fc2.weight"])
    assert pd.read_csv(toy / "f3.csv")["variant"].iloc[0] == "BnB_frozen"


TASKS = [TaskSpec("fam_000", (0, 2), (20, 20)), TaskSpec("fam_001", (1, 3, 5), (20, 20, 20)),
         TaskSpec("fam_002", (0, 1, 4, 5), (20, 10, 20, 5))]  # fmt: skip
TASK_PROTOCOL = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "batch_size": 10,
                 "checkpoints": ["0", "2b", "6b"], "reference_checkpoints": ["0", "8b"],
                 "eval_samples": None}  # fmt: skip


def test_random_tasks_job_rows(toy):
    table = random_tasks(toy / "source.pt", toy / "tasks.npz", TASKS, toy / "fam.csv",
                         family="fam", seed=0, family_seed=0, layers=["pool2", "fc1"],
                         metrics=["leep", "nce", "hscore", "ss"], protocol=TASK_PROTOCOL,
                         device="cpu")  # fmt: skip
    assert list(table.columns) == TASK_COLUMNS
    metrics = table[table["finetune_step"].isna()]
    assert len(metrics) == len(TASKS) * (2 * 2 + 2)  # 2 layer metrics × 2 layers + leep, nce
    assert set(metrics.loc[metrics["measure"] == "leep", "layer"]) == {"logits"}
    task2 = table[table["task"] == "fam_002"].iloc[0]
    assert task2["num_classes"] == 4 and task2["train_samples"] == 55  # imbalanced counts
    for measure in ("head_accuracy", "finetune_accuracy"):
        curve = table[(table["measure"] == measure) & (table["task"] == "fam_001")]
        assert curve["finetune_step"].tolist() == ["0", "2b", "6b"]
        assert curve["value"].between(0, 1).all()
    # head and fine-tune start from the same model: equal accuracy before training
    start = table[table["finetune_step"] == "0"].pivot_table(
        index="task", columns="measure", values="value"
    )
    np.testing.assert_array_equal(start["head_accuracy"], start["finetune_accuracy"])
    # macro F1 next to accuracy for the imbalanced task only (LEEP §5.3)
    f1 = table[table["measure"].isin(["head_f1", "finetune_f1"])]
    assert set(f1["task"]) == {"fam_002"} and f1["value"].between(0, 1).all()
    assert len(f1) == 2 * 3 and set(f1["measure"]) == {"head_f1", "finetune_f1"}
    references = random_task_references(toy / "tasks.npz", TASKS, toy / "ref.csv", family="fam",
                                        seed=0, family_seed=0, protocol=TASK_PROTOCOL,
                                        device="cpu")  # fmt: skip
    assert set(references["measure"]) == {"reference_accuracy"}
    assert references.groupby("task")["finetune_step"].apply(list).tolist() == [["0", "8b"]] * 3


def _task_table(path, source, seed, leep, head, finetune, steps=("0", "5b"), f1=None,
                family="fam"):  # fmt: skip
    """A hand-made per-(family, source, seed) file: one leep value and two accuracy curves
    (final accuracy given) per task; with ``f1``, F1 curves too (final F1 = f1, both truths)."""
    rows = []
    for i, (lv, h, f) in enumerate(zip(leep, head, finetune, strict=True)):
        task = dict(family=family, task=f"{family}_{i:03d}", num_classes=2, train_samples=20,
                    source=source, seed=seed)  # fmt: skip
        rows.append({**task, "measure": "leep", "layer": "logits", "value": lv, "note": ""})
        curves = [("head_accuracy", h), ("finetune_accuracy", f)]
        if f1 is not None:
            curves += [("head_f1", f1[i]), ("finetune_f1", f1[i])]
        for measure, final in curves:
            for step, samples in zip(steps, (0, 50), strict=True):
                value = 0.5 if samples == 0 else final
                rows.append({**task, "measure": measure, "finetune_step": step,
                             "samples": samples, "value": value})  # fmt: skip
    pd.DataFrame(rows, columns=TASK_COLUMNS).to_csv(path, index=False)


def test_random_tasks_tables_against_hand_computed_values(tmp_path):
    leep = [-1.0, -0.8, -0.5, -0.2, -0.1]
    head = [0.6, 0.7, 0.65, 0.9, 0.95]
    finetune = [0.62, 0.75, 0.7, 0.92, 0.97]
    _task_table(tmp_path / "s0.csv", "src", 0, leep, head, finetune)
    # seed 1 shifts accuracies by 0.02: tables average over seeds first
    _task_table(tmp_path / "s1.csv", "src", 1, leep, [h + 0.02 for h in head],
                [f + 0.02 for f in finetune])  # fmt: skip
    reference_rows = []
    for i, final in enumerate([0.7, 0.7, 0.7, 0.7, 0.7]):
        for step, samples, value in (("0", 0, 0.5), ("8b", 80, final)):
            reference_rows.append(dict(family="fam", task=f"fam_{i:03d}", num_classes=2,
                                       train_samples=20, source="scratch", seed=0,
                                       measure="reference_accuracy", finetune_step=step,
                                       samples=samples, value=value, note=""))  # fmt: skip
    pd.DataFrame(reference_rows, columns=TASK_COLUMNS).to_csv(tmp_path / "ref.csv", index=False)
    tables = random_tasks_tables([tmp_path / "s0.csv", tmp_path / "s1.csv"],
                                 [tmp_path / "ref.csv"], track="cnn",
                                 settings={"fam": "toy, balanced"}, levels=5,
                                 levels_metric="leep", levels_layer="logits")  # fmt: skip
    pearson = tables["random_tasks_pearson"].set_index("ground_truth")
    expected = stats.pearsonr(leep, np.asarray(head) + 0.01)
    assert pearson.loc["head", "r"] == pytest.approx(expected.statistic)
    assert pearson.loc["head", "pvalue"] == pytest.approx(expected.pvalue)
    assert pearson.loc["head", "n"] == 5 and pearson.loc["head", "setting"] == "toy, balanced"
    levels = tables["random_tasks_levels"].query("ground_truth == 'finetune'")
    # leep range [-1, -0.1] in 5 bins of 0.18: -1 → 1, -0.8 → 2, -0.5 → 3, -0.2/-0.1 → 5
    assert levels["n"].tolist() == [1, 1, 1, 0, 2]
    assert levels["mean_accuracy"].iloc[-1] == pytest.approx((0.93 + 0.98) / 2)
    convergence = tables["random_tasks_convergence"]
    top = convergence[(convergence["level"] == 5) & (convergence["samples"] == 50)].iloc[0]
    assert top["n"] == 2 and top["finetune_step"] == "5b"
    assert top["accuracy_difference"] == pytest.approx((0.93 + 0.98) / 2 - 0.7)
    start = convergence[(convergence["level"] == 1) & (convergence["samples"] == 0)].iloc[0]
    assert start["accuracy_difference"] == pytest.approx(0.5 - 0.7)
    values = tables["random_tasks"]
    assert len(values) == 2 * 5 * 5 + 10 and (values["track"] == "cnn").all()
    assert (tables["random_tasks_pearson"]["performance"] == "accuracy").all()


def test_imbalanced_family_uses_f1_as_ground_truth(tmp_path):
    leep = [-1.0, -0.8, -0.5, -0.2, -0.1]
    accuracy = [0.8, 0.8, 0.85, 0.85, 0.9]  # imbalanced: accuracy barely moves
    f1 = [0.3, 0.5, 0.45, 0.7, 0.8]
    _task_table(tmp_path / "imb.csv", "src", 0, leep, accuracy, accuracy, f1=f1, family="imb")
    _task_table(tmp_path / "bal.csv", "src", 0, leep, accuracy, accuracy, family="bal")
    references = [dict(family=family, task=f"{family}_{i:03d}", num_classes=2, train_samples=20,
                       source="scratch", seed=0, measure="reference_accuracy", finetune_step=step,
                       samples=samples, value=0.7, note="")
                  for family in ("imb", "bal") for i in range(5)
                  for step, samples in (("0", 0), ("8b", 80))]  # fmt: skip
    pd.DataFrame(references, columns=TASK_COLUMNS).to_csv(tmp_path / "ref.csv", index=False)
    tables = random_tasks_tables([tmp_path / "imb.csv", tmp_path / "bal.csv"],
                                 [tmp_path / "ref.csv"], track="cnn",
                                 settings={"imb": "imbalanced", "bal": "balanced"}, levels=5,
                                 levels_metric="leep", levels_layer="logits")  # fmt: skip
    pearson = tables["random_tasks_pearson"].set_index(["family", "ground_truth"])
    for truth in ("head", "finetune"):
        assert pearson.loc[("imb", truth), "performance"] == "f1"
        assert pearson.loc[("imb", truth), "r"] == pytest.approx(stats.pearsonr(leep, f1)[0])
        assert pearson.loc[("bal", truth), "performance"] == "accuracy"
        assert pearson.loc[("bal", truth), "r"] == pytest.approx(stats.pearsonr(leep, accuracy)[0])
    assert len(pearson) == 4  # one ground truth per (family, truth): F1 replaces accuracy
    levels = tables["random_tasks_levels"]
    assert set(levels.loc[levels["family"] == "imb", "performance"]) == {"f1"}
