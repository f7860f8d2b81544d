"""The three studies of SPEC §6.3 as workflow jobs: QUANTA per layer (Orhand et al. 2021),
layer transfer (Shanmugam et al.'s Uppsala report, after Yosinski et al. 2014) and random target
tasks (Nguyen et al. 2020, LEEP, §5.1-5.5; docs/references.md), plus the tables built from their
outputs. One function per job, plain paths and settings in, files out,
so each runs without Snakemake (like every module of :mod:`transferability.jobs`).

Seeds: every training run derives its initialisation and data order from (source seed, target
or task, study, run) only, so the variants compared within a study (layers, λ inits, copied
layers, frozen or not) start from the same target weights and see the same batches: their
differences come from what was transferred.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from transferability.artifacts import load_checkpoint, write_csv
from transferability.data.arrays import load_dataset
from transferability.data.targets import ArrayTarget
from transferability.jobs.metric_jobs import layer_metric_rows, prediction_metric_rows, softmax

log = logging.getLogger(__name__)

__all__ = [
    "layer_transfer_table",
    "quanta_tables",
    "random_task_references",
    "random_tasks",
    "random_tasks_tables",
    "run_layer_transfer",
    "run_quanta",
]

#: Columns of one QUANTA run's history file (identity, then transferability.studies.quanta's
#: history).
QUANTA_ID = ("target", "source", "seed", "pretrain_step", "layer", "lambda_init", "run")
#: Ground truths of the random-task study and the measures that hold them.
GROUND_TRUTHS = {"head": "head_accuracy", "finetune": "finetune_accuracy"}
#: The same as macro F1, recorded for imbalanced tasks, whose family uses them as its ground
#: truth (LEEP §5.3: F1 on imbalanced data).
F1_GROUND_TRUTHS = {"head": "head_f1", "finetune": "finetune_f1"}
REFERENCE = "reference_accuracy"
TASK_COLUMNS = [
    "family",
    "task",
    "num_classes",
    "train_samples",
    "source",
    "seed",
    "measure",
    "layer",
    "finetune_step",
    "samples",
    "value",
    "note",
]


def _optimizer(model, protocol: Mapping):
    """Adam (the thesis's and the Uppsala report's choice) or plain/momentum SGD (LEEP §5.1)
    over the parameters that train (frozen copied layers are left out)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    lr = float(protocol["lr"])
    if protocol.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(protocol.get("momentum", 0.0)))
    return torch.optim.Adam(params, lr=lr)


def _train_curve(
    model,
    train,
    test,
    labels: Sequence[str],
    *,
    protocol: Mapping,
    data_seed: int,
    device,
    **identity,
) -> list[dict]:
    """Train ``model`` with ``protocol`` until the last of ``labels``; one row per checkpoint
    (identity columns, finetune_step, batches, samples, epochs, train_loss, test_loss,
    test_accuracy, test_f1 — macro F1 over the classes present, sklearn's ``f1_score``)."""
    from sklearn.metrics import f1_score

    from transferability.training.loop import Split, evaluate_predictions, train_run
    from transferability.training.schedule import resolve_checkpoints

    model.to(device)
    train = Split(train.images.to(device), train.labels.to(device))
    test = Split(test.images.to(device), test.labels.to(device))
    batch_size = int(protocol["batch_size"])
    rows: list[dict] = []

    def evaluate_fn(m) -> dict[str, float]:
        loss, predicted = evaluate_predictions(m, test)
        truth, predicted = test.labels.cpu().numpy(), predicted.cpu().numpy()
        return {
            "test_loss": loss,
            "test_accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
            "test_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        }

    train_run(
        model,
        train,
        resolve_checkpoints(list(labels), len(train), batch_size),
        batch_size=batch_size,
        optimizer=_optimizer(model, protocol),
        data_seed=data_seed,
        evaluate_fn=evaluate_fn,
        on_checkpoint=lambda record, _m: rows.append(
            record.row(**identity, finetune_step=record.checkpoint.label)
        ),
    )
    return rows


# --- QUANTA ---------------------------------------------------------------------------------


def run_quanta(
    checkpoint_paths: Mapping[str, str | Path],
    dataset_path: str | Path,
    outputs: Mapping[tuple[str, str, float, int], str | Path],
    *,
    target: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
) -> None:
    """Every QUANTA run of one source run on one target: ``outputs[(step, layer, λ_init,
    run)]`` receives the per-epoch history (λ_S, λ_T, losses, test accuracy).

    ``checkpoint_paths`` maps pre-training step → source checkpoint. Run ``r`` trains a target
    CNN initialised from ``derive_seed(seed, target, "quanta", r)`` with the data order of
    ``derive_seed(seed, target, "quanta-data", r)``, the same for every layer and λ init.
    """
    from transferability.studies.quanta import quanta_model, train_quanta
    from transferability.training.loop import configure_torch, derive_seed

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    train, _, test = ArrayTarget(dataset).training_splits(
        protocol.get("train_samples"), protocol.get("eval_samples")
    )
    states = {step: load_checkpoint(path) for step, path in checkpoint_paths.items()}
    for (step, layer, lambda_init, run), out in outputs.items():
        state, meta = states[step]
        model = quanta_model(
            state,
            dataset.num_classes,
            layer,
            lambda_init,
            seed=derive_seed(seed, target, "quanta", run),
        )
        history = train_quanta(
            model,
            train,
            test,
            epochs=int(protocol["epochs"]),
            batch_size=int(protocol["batch_size"]),
            lr=float(protocol["lr"]),
            data_seed=derive_seed(seed, target, "quanta-data", run),
            device=on,
            eval_every=int(protocol.get("eval_every", 1)),
        )
        identity = dict(
            zip(
                QUANTA_ID,
                (target, meta["source"], seed, step, layer, lambda_init, run),
                strict=True,
            )
        )
        for i, (column, value) in enumerate(identity.items()):
            history.insert(i, column, value)
        write_csv(history, out)
        log.info(
            "QUANTA %s step %s → %s, layer %s, λ init %.2f, run %d: λ_S %.4f → %.4f, accuracy %.4f",
            meta["source"],
            step,
            target,
            layer,
            lambda_init,
            run,
            history["lambda_s"].iloc[0],
            history["lambda_s"].iloc[-1],
            history["test_accuracy"].iloc[-1],
        )


def quanta_tables(
    history_files: Sequence[str | Path],
    *,
    track: str,
    last_epochs: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(quanta, quanta_scores)``: every history row, and per (target, source, seed, step,
    layer, λ init) the QUANTA score — each run's mean λ_S over its last ``last_epochs`` epochs
    (:func:`transferability.studies.quanta.quanta_score`), averaged over runs (Orhand et al. 2021
    §4.1),
    with the standard deviation over runs."""
    from transferability.studies.quanta import quanta_score

    histories = pd.concat([pd.read_csv(p) for p in history_files], ignore_index=True)
    histories.insert(0, "track", track)
    keys = ["track", *QUANTA_ID[:-1]]
    rows = []
    for key, runs in histories.groupby(keys, sort=True):
        scores = [quanta_score(h, last_epochs) for _, h in runs.groupby("run", sort=True)]
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "runs": len(scores),
                "score": float(np.mean(scores)),
                "score_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan,
            }
        )
    return histories, pd.DataFrame(rows, columns=[*keys, "runs", "score", "score_std"])


# --- layer transfer -------------------------------------------------------------------------


def run_layer_transfer(
    checkpoint_path: str | Path,
    dataset_path: str | Path,
    outputs: Mapping[tuple[str, int], str | Path],
    *,
    target: str,
    role: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
) -> None:
    """Train the layer-transfer models of one base model on one target: ``outputs[(mode, n)]``
    (mode ``frozen`` or ``ft``) receives the test-accuracy curve of the model whose first n
    layers come from the base (``role`` A: another task; B: the target task itself), the rest
    re-initialised (:func:`transferability.studies.layer_transfer.build_layer_transfer`). Every
    model of
    a (target, seed) starts from the same fresh weights and sees the same batches."""
    from transferability.studies.layer_transfer import build_layer_transfer
    from transferability.training.loop import configure_torch, derive_seed

    if role not in ("A", "B"):
        raise ValueError(f"role must be 'A' or 'B', got {role!r}")
    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    train, _, test = ArrayTarget(dataset).training_splits(
        protocol.get("train_samples"), protocol.get("eval_samples")
    )
    state, meta = load_checkpoint(checkpoint_path)
    for (mode, n), out in outputs.items():
        variant = f"{role}nB_{mode}"
        model = build_layer_transfer(
            state,
            dataset.num_classes,
            n,
            frozen=mode == "frozen",
            seed=derive_seed(seed, target, "layer-transfer"),
        )
        rows = _train_curve(
            model,
            train,
            test,
            protocol["checkpoints"],
            protocol=protocol,
            data_seed=derive_seed(seed, target, "layer-transfer-data"),
            device=on,
            target=target,
            base=meta["source"],
            role=role,
            variant=variant,
            n=n,
            seed=seed,
        )
        write_csv(pd.DataFrame(rows), out)
        log.info(
            "%s n=%d from %s on %s: final accuracy %.4f",
            variant,
            n,
            meta["source"],
            target,
            rows[-1]["test_accuracy"],
        )


def layer_transfer_table(curve_files: Sequence[str | Path], *, track: str) -> pd.DataFrame:
    table = pd.concat([pd.read_csv(p) for p in curve_files], ignore_index=True)
    table.insert(0, "track", track)
    return table


# --- random target tasks --------------------------------------------------------------------


def _task_split(dataset, task, family_seed: int, eval_samples: int | None):
    from transferability.studies.tasks import task_dataset

    data = task_dataset(dataset, task, seed=family_seed)
    train, _, test = ArrayTarget(data).training_splits(None, eval_samples)
    return data, train, test


def _task_rows(family: str, task, data, **columns) -> dict:
    return {
        "family": family,
        "task": task.name,
        "num_classes": data.num_classes,
        "train_samples": len(data.train_y),
        **columns,
    }


def _is_imbalanced(task) -> bool:
    return len(set(task.train_per_class)) > 1


def _task_curve(model, task_data: tuple, labels: Sequence[str], *, protocol: Mapping, seed: int,
                source: str, measure: str, device,
                f1_measure: str | None = None) -> list[dict]:  # fmt: skip
    """Train ``model`` on one task (``(family, task, data, train, test)``) and return its test
    accuracy at every checkpoint as :data:`TASK_COLUMNS` rows of ``measure`` (and, with
    ``f1_measure``, its macro F1 as rows of that measure). The data order depends on (seed,
    task) only: head, fine-tune and reference models see the same batches."""
    from transferability.training.loop import derive_seed

    family, task, data, train, test = task_data
    curve = _train_curve(model, train, test, labels, protocol=protocol,
                         data_seed=derive_seed(seed, task.name, "data"), device=device)  # fmt: skip
    values = {measure: "test_accuracy", **({f1_measure: "test_f1"} if f1_measure else {})}
    return [
        _task_rows(
            family,
            task,
            data,
            source=source,
            seed=seed,
            measure=name,
            finetune_step=c["finetune_step"],
            samples=c["samples"],
            value=c[column],
        )  # fmt: skip
        for name, column in values.items()
        for c in curve
    ]


def random_tasks(
    checkpoint_path: str | Path,
    dataset_path: str | Path,
    tasks: Sequence,
    out_csv: str | Path,
    *,
    family: str,
    seed: int,
    family_seed: int,
    layers: Sequence[str],
    metrics: Sequence[str],
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
) -> pd.DataFrame:
    """One source model on every task of a family (Nguyen et al. 2020 §5.1-5.3): the metrics,
    computed on the task's training set as LEEP is, and two ground truths, each a test-accuracy
    curve:

    - ``head_accuracy``: re-train head — conv1, conv2, fc1 copied and frozen, a new fc2 trained;
    - ``finetune_accuracy``: fine-tune — the same model with every layer trained;

    and, for an imbalanced task (unequal training counts), the macro F1 of both curves as
    ``head_f1`` and ``finetune_f1`` (LEEP §5.3).
    (LEEP's head is the last fully connected layer, its feature extractor everything below.)
    Returns and writes the tidy rows (:data:`TASK_COLUMNS`).
    """
    import torch

    from transferability.metrics import layer_stats, metric_names, stats_options
    from transferability.models.thesis_cnn import ThesisCNN
    from transferability.studies.layer_transfer import TRANSFER_LAYERS, build_layer_transfer
    from transferability.training.loop import configure_torch, derive_seed, to_input

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    state, meta = load_checkpoint(checkpoint_path)
    source = meta["source"]
    source_model = ThesisCNN(int(meta["num_classes"]))
    source_model.load_state_dict(state)
    source_model.eval()
    layer_metrics = [m for m in metrics if m in metric_names("layer")]
    prediction_metrics = [m for m in metrics if m in metric_names("prediction")]
    options = stats_options(layer_metrics)
    features_below_head = len(TRANSFER_LAYERS) - 1
    rows: list[dict] = []
    for task in tasks:
        data, train, test = _task_split(dataset, task, family_seed, protocol.get("eval_samples"))
        labels = data.train_y
        with torch.inference_mode():
            outputs = source_model.forward_layers(to_input(data.train_x), (*layers, "fc2"))
        found = []
        for layer in layers:
            stats = layer_stats(outputs[layer].numpy(), labels, **options)
            found += layer_metric_rows(layer, stats, layer_metrics)
        found += prediction_metric_rows(softmax(outputs["fc2"].numpy()), labels, prediction_metrics)
        rows += [
            _task_rows(
                family,
                task,
                data,
                source=source,
                seed=seed,
                measure=r["metric"],
                layer=r["layer"],
                value=r["value"],
                note=r["note"],
            )
            for r in found
        ]
        for truth, measure in GROUND_TRUTHS.items():
            model = build_layer_transfer(
                state,
                data.num_classes,
                features_below_head,
                frozen=truth == "head",
                seed=derive_seed(seed, task.name, "head"),
            )
            rows += _task_curve(model, (family, task, data, train, test), protocol["checkpoints"],
                                protocol=protocol, seed=seed, source=source, measure=measure,
                                device=on, f1_measure=F1_GROUND_TRUTHS[truth]
                                if _is_imbalanced(task) else None)  # fmt: skip
        log.info(
            "%s on %s (%d classes, %d training images) done",
            source,
            task.name,
            data.num_classes,
            len(labels),
        )
    table = pd.DataFrame(rows, columns=TASK_COLUMNS)
    table["note"] = table["note"].fillna("")
    write_csv(table, out_csv)
    return table


def random_task_references(
    dataset_path: str | Path,
    tasks: Sequence,
    out_csv: str | Path,
    *,
    family: str,
    seed: int,
    family_seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
) -> pd.DataFrame:
    """The reference model of every task (LEEP §5.5): the CNN trained from scratch on the
    task's training set with the study's protocol up to ``reference_checkpoints``."""
    from transferability.models.thesis_cnn import build_cnn
    from transferability.training.loop import configure_torch, derive_seed

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    labels = protocol.get("reference_checkpoints") or protocol["checkpoints"]
    rows: list[dict] = []
    for task in tasks:
        data, train, test = _task_split(dataset, task, family_seed, protocol.get("eval_samples"))
        model = build_cnn(data.num_classes, derive_seed(seed, task.name, "reference"))
        curve = _task_curve(model, (family, task, data, train, test), labels, protocol=protocol,
                            seed=seed, source="scratch", measure=REFERENCE, device=on)  # fmt: skip
        rows += curve
        log.info("reference on %s: final accuracy %.4f", task.name, curve[-1]["value"])
    table = pd.DataFrame(rows, columns=TASK_COLUMNS)
    table["note"] = ""
    write_csv(table, out_csv)
    return table


def _final_accuracy(values: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint's accuracy of each (…, task, source, seed, measure) curve."""
    last = values.groupby(["family", "task", "source", "seed", "measure"])["samples"].transform(
        "max"
    )
    return values[values["samples"] == last]


def random_tasks_tables(
    task_files: Sequence[str | Path],
    reference_files: Sequence[str | Path],
    *,
    track: str,
    settings: Mapping[str, str],
    levels: int,
    levels_metric: str,
    levels_layer: str,
) -> dict[str, pd.DataFrame]:
    """The study's tables from the per-(family, source, seed) files and the references.

    - ``random_tasks``: every value (metrics, accuracy curves, references), tidy;
    - ``random_tasks_pearson``: per (family, source, layer, metric, ground truth), Pearson r
      and p across tasks between the metric and the final test accuracy, both averaged over
      seeds first (LEEP Table 1) — the final macro F1 instead for a family whose every task
      has F1 rows (imbalanced, LEEP §5.3); column ``performance`` says which;
    - ``random_tasks_levels``: the metric's range in ``levels`` equal bins, mean final accuracy
      per bin (LEEP Fig. 2);
    - ``random_tasks_convergence``: fine-tuned accuracy minus the reference's final accuracy,
      over fine-tuning checkpoints, averaged within each level of ``levels_metric`` at
      ``levels_layer`` (``logits`` for LEEP and NCE) (LEEP Fig. 4).
    """
    from transferability.studies.tasks import (
        assign_levels,
        pearson_table,
        relative_to_reference,
        transferability_levels,
    )

    values = pd.concat(
        [
            pd.read_csv(p, keep_default_na=False, na_values=[""])
            for p in [*task_files, *reference_files]
        ],
        ignore_index=True,
    )
    values["note"] = values["note"].fillna("")
    values.insert(1, "setting", values["family"].map(settings))
    values.insert(0, "track", track)
    by_task = ["track", "family", "setting", "source", "task"]
    metric_rows = values[values["finetune_step"].isna()]
    scores = metric_rows.groupby([*by_task, "layer", "measure"], as_index=False)["value"].mean()
    scores = scores.rename(columns={"measure": "metric"})
    # the ground truth of each family: F1 where every task of it recorded F1 (imbalanced)
    f1_tasks = (
        values[values["measure"].isin(F1_GROUND_TRUTHS.values())]
        .groupby("family")["task"]
        .nunique()
    )
    all_tasks = (
        values[values["measure"].isin(GROUND_TRUTHS.values())].groupby("family")["task"].nunique()
    )
    uses_f1 = {f for f, n in all_tasks.items() if f1_tasks.get(f, 0) == n}
    measures = {**{v: (k, "accuracy") for k, v in GROUND_TRUTHS.items()},
                **{v: (k, "f1") for k, v in F1_GROUND_TRUTHS.items()}}  # fmt: skip
    finals = _final_accuracy(values[values["measure"].isin(measures)])
    finals = finals.groupby([*by_task, "measure"], as_index=False)["value"].mean()
    finals["ground_truth"] = finals["measure"].map(lambda m: measures[m][0])
    finals["performance"] = finals.pop("measure").map(lambda m: measures[m][1])
    wanted = np.where(finals["family"].isin(uses_f1), "f1", "accuracy")
    finals = finals[finals["performance"] == wanted]
    paired = scores.merge(finals.rename(columns={"value": "accuracy"}), on=by_task)
    group = ["track", "family", "setting", "source", "layer", "metric", "ground_truth",
             "performance"]  # fmt: skip
    tables = {
        "random_tasks": values,
        "random_tasks_pearson": pearson_table(paired, by=group),
        "random_tasks_levels": transferability_levels(paired, by=group, levels=levels),
    }
    # LEEP §5.5: the fine-tuning curves against the reference's final accuracy, per level.
    curves = values[values["measure"] == GROUND_TRUTHS["finetune"]].rename(
        columns={"value": "test_accuracy"}
    )
    references = values[values["measure"] == REFERENCE].rename(columns={"value": "test_accuracy"})
    rows = []
    level_scores = scores[(scores["metric"] == levels_metric) & (scores["layer"] == levels_layer)]
    for (family, source), part in curves.groupby(["family", "source"], sort=True):
        chosen = level_scores[
            (level_scores["family"] == family) & (level_scores["source"] == source)
        ]
        level, _, _ = assign_levels(chosen["value"].to_numpy(dtype=float), levels)
        task_level = dict(zip(chosen["task"], level + 1, strict=True))
        relative = relative_to_reference(
            part.assign(finetune_step=part["samples"]),
            references[references["family"] == family].assign(finetune_step=references["samples"]),
        )
        relative["level"] = relative["task"].map(task_level)
        per_task = relative.groupby(["task", "level", "samples"], as_index=False)[
            "accuracy_difference"
        ].mean()  # over seeds
        summary = per_task.groupby(["level", "samples"], as_index=False).agg(
            n=("task", "nunique"), accuracy_difference=("accuracy_difference", "mean")
        )
        step_of = dict(zip(part["samples"], part["finetune_step"], strict=False))
        summary["finetune_step"] = summary["samples"].map(step_of)
        summary.insert(0, "metric", levels_metric)
        summary.insert(0, "source", source)
        summary.insert(0, "setting", settings[family])
        summary.insert(0, "family", family)
        summary.insert(0, "track", track)
        rows.append(summary)
    columns = [
        "track",
        "family",
        "setting",
        "source",
        "metric",
        "level",
        "finetune_step",
        "samples",
        "n",
        "accuracy_difference",
    ]
    tables["random_tasks_convergence"] = (
        pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)
    )
    return tables
