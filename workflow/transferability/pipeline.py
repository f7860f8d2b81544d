"""One function per workflow job: pre-train a run, extract activations, compute metrics,
fine-tune. Each takes plain paths and settings (no Snakemake objects) so it runs anywhere.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from transferability import __version__
from transferability.artifacts import activation_shape, read_activations, read_attrs, write_csv
from transferability.config import FEATURES_MAX_BYTES, INITIAL_SOURCE, INITIAL_STEP
from transferability.data import ImageDataset, balanced_subset, load_dataset

log = logging.getLogger(__name__)

#: Seed of the fixed (run-independent) subsets: training subset, evaluation subsets.
SUBSET_SEED = 0


def _limit(labels: np.ndarray, n: int | None, num_classes: int) -> np.ndarray | None:
    """Indices of a fixed class-balanced subset of about ``n`` samples (None = everything)."""
    if n is None or n >= len(labels):
        return None
    return balanced_subset(labels, per_class=max(1, n // num_classes), seed=SUBSET_SEED)


def _splits(dataset: ImageDataset, train_samples: int | None, eval_samples: int | None):
    from transferability.training import Split

    k = dataset.num_classes
    train = Split.from_numpy(
        dataset.train_x, dataset.train_y, _limit(dataset.train_y, train_samples, k)
    )
    test = Split.from_numpy(dataset.test_x, dataset.test_y, _limit(dataset.test_y, eval_samples, k))
    train_eval = Split.from_numpy(
        dataset.train_x,
        dataset.train_y,
        _limit(dataset.train_y, eval_samples or len(dataset.test_y), k),
    )
    return train, train_eval, test


#: Runs trained together per device type by default (benchmarks/train_throughput.py: on the
#: 2-core CPU, grouped runs gain up to R ≈ 4 and lose beyond 12; on a GPU throughput grows to
#: R ≈ 48 and beyond).
RUNS_TOGETHER = {"cpu": 4, "cuda": 48}


def _history_row(record, **identity) -> dict:
    c = record.checkpoint
    return {
        **identity,
        "batches": c.batches,
        "samples": c.samples,
        "epochs": c.epochs,
        "train_loss": record.train_loss,
        **record.metrics,
    }


def initial_model(checkpoint_path: str | Path, *, num_classes: int, seed: int) -> None:
    """Save the untrained thesis CNN of (``seed``, ``num_classes``): the step-0 model that every
    source's run of that seed starts from (its weights depend on nothing else)."""
    from transferability.artifacts import save_checkpoint
    from transferability.families import ModelSpec, build_model
    from transferability.training import configure_torch

    configure_torch(1, "cpu")  # the dtype the runs train in: the weights are drawn in it
    spec = ModelSpec("thesis_cnn", num_classes)
    model = build_model(spec, seed)
    meta = {"source": INITIAL_SOURCE, "seed": seed, "step": INITIAL_STEP, **spec.meta(),
            "dtype": str(next(model.parameters()).dtype)}  # fmt: skip
    save_checkpoint(checkpoint_path, model.state_dict(), {**meta, "version": __version__})
    log.info("untrained model of seed %d, %d classes: %s", seed, num_classes, checkpoint_path)


def pretrain(
    dataset_path: str | Path,
    checkpoint_paths: Mapping[str, str | Path],
    history_path: str | Path,
    *,
    source: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
    initial: str | Path | None = None,
) -> pd.DataFrame:
    """Pre-train one run of the thesis CNN on ``dataset_path`` and save a checkpoint at every
    label in ``checkpoint_paths`` (label → path), plus the history table, which also has the
    untrained model's row (step 0, evaluated on this source's data).

    The run starts from ``initial``, the file :func:`initial_model` wrote for (``seed``, the
    dataset's classes); without it from the same model built here. One run per job, so that
    adding a seed adds a job (SPEC §5); it goes through the multi-run trainer with R = 1, which
    is the faster path on CPU too (benchmarks/train_throughput.py).
    """
    import torch

    from transferability.artifacts import save_checkpoint
    from transferability.families import ModelSpec, build_model, model_from_checkpoint
    from transferability.multirun import train_runs
    from transferability.schedule import resolve_checkpoints
    from transferability.training import DTYPE_ENV, configure_torch, derive_seed

    on = configure_torch(threads, device)
    dataset = load_dataset(dataset_path)
    train, train_eval, test = _splits(
        dataset, protocol.get("train_samples"), protocol.get("eval_samples")
    )
    batch_size = int(protocol["batch_size"])
    lr = float(protocol["lr"])
    labels = list(dict.fromkeys([INITIAL_STEP, *checkpoint_paths]))
    checkpoints = resolve_checkpoints(labels, len(train), batch_size)
    spec = ModelSpec("thesis_cnn", dataset.num_classes)
    if initial is None:
        model = build_model(spec, seed)
    else:
        model, meta = model_from_checkpoint(initial)
        if model.spec != spec or int(meta.get("seed", -1)) != seed:
            raise ValueError(
                f"{initial}: the untrained model of seed {meta.get('seed')} with "
                f"{model.spec.num_classes} classes, but run {source} seed {seed} needs seed {seed} "
                f"with {dataset.num_classes} classes ({dataset.name})"
            )
        if meta.get("dtype") != str(torch.get_default_dtype()):  # another dtype, other weights
            raise ValueError(
                f"{initial}: the untrained model was drawn in {meta.get('dtype')}, but this run "
                f"trains in {torch.get_default_dtype()} (environment variable {DTYPE_ENV}); "
                "remake it (delete it: the workflow makes it again)"
            )
        model.train()
    rows = []

    def on_checkpoint(_run, record, state):
        row = _history_row(
            record, source=source, dataset=dataset.name, seed=seed, step=record.checkpoint.label
        )
        rows.append(row)
        if record.checkpoint.label not in checkpoint_paths:
            return
        meta = {
            **row,
            **spec.meta(),
            "batch_size": batch_size,
            "lr": lr,
            "device": on.type,
            "version": __version__,
            "protocol": json.dumps(dict(protocol), sort_keys=True),  # provenance (SPEC §10)
        }
        save_checkpoint(checkpoint_paths[record.checkpoint.label], state, meta)

    train_runs(
        [model],
        train,
        checkpoints,
        batch_size=batch_size,
        lr=lr,
        data_seeds=[derive_seed(seed, "pretrain-data")],
        evaluate={"train_eval": train_eval, "test": test},
        on_checkpoint=on_checkpoint,
        device=on,
    )
    history = pd.DataFrame(rows)
    write_csv(history, history_path)
    return history


def target_subset(
    dataset_path: str | Path, out_csv: str | Path, *, per_class: int, seed: int
) -> pd.DataFrame:
    """The fixed, class-balanced target test samples fed to every model (SPEC §6.1)."""
    dataset = load_dataset(dataset_path)
    index = balanced_subset(dataset.test_y, per_class=per_class, seed=seed)
    table = pd.DataFrame({"sample_index": index, "label": dataset.test_y[index]})
    write_csv(table, out_csv)
    return table


def record_layers(
    model,
    batches: Iterable,
    outputs: Mapping[str, str | Path],
    *,
    labels: np.ndarray,
    sample_index: np.ndarray,
    attrs: Mapping[str, object],
    compression: str | None = "lzf",
) -> int:
    """Feed ``batches`` (input tensors, in sample order) through ``model`` and write each layer
    of ``outputs`` (layer → activation file; ``"logits"``: the source head's output, stored
    uncompressed) row block by row block: a layer never has to fit in memory for all samples.
    One forward pass per batch, stopping after the last requested layer. Returns the rows.

    Any model of :mod:`transferability.families` works; an encoder without head has no logits.
    """
    import contextlib

    import torch

    from transferability.artifacts import activation_writer
    from transferability.families import forward_layers, head_layer

    head = head_layer(model)
    if "logits" in outputs and head is None:
        raise ValueError(f"{attrs.get('model', 'the model')} has no classifier: no logits to write")
    node = {name: head if name == "logits" else name for name in outputs}
    wanted = list(dict.fromkeys(node.values()))
    device = next(model.parameters()).device
    with contextlib.ExitStack() as stack, torch.inference_mode():
        sinks: dict[str, object] = {}
        row = 0
        for x in batches:
            values = forward_layers(model, x.to(device), wanted)
            if not sinks:
                for name, path in outputs.items():
                    sinks[name] = stack.enter_context(
                        activation_writer(
                            path,
                            len(labels),
                            tuple(values[node[name]].shape[1:]),
                            labels,
                            sample_index,
                            {**attrs, "layer": name},
                            compression=None if name == "logits" else compression,
                        )
                    )
            n = x.shape[0]
            for name, sink in sinks.items():
                sink[row : row + n] = values[node[name]].reshape(n, -1).float().cpu().numpy()
            row += n
    return row


def extract(
    checkpoint_paths: Mapping[str, str | Path],
    dataset_path: str | Path,
    subset_csv: str | Path,
    activation_paths: Mapping[tuple[str, str], str | Path],
    logits_paths: Mapping[str, str | Path],
    *,
    target: str,
    compression: str | None = "lzf",
    threads: int = 1,
) -> None:
    """Feed the target subset through every checkpoint and store each layer's activations
    (``activation_paths[(step, layer)]``) and the source head's logits (``logits_paths[step]``)."""
    from transferability.families import model_from_checkpoint
    from transferability.training import configure_torch, to_input

    configure_torch(threads, "cpu")  # a forward pass over ≤ a few thousand images
    dataset = load_dataset(dataset_path)
    subset = pd.read_csv(subset_csv)
    index = subset["sample_index"].to_numpy()
    labels = subset["label"].to_numpy()
    x = to_input(dataset.test_x[index])
    layers = tuple(dict.fromkeys(layer for _, layer in activation_paths))
    for step, checkpoint_path in checkpoint_paths.items():
        model, meta = model_from_checkpoint(checkpoint_path)
        attrs = {
            "model": str(checkpoint_path),
            "source": meta["source"],
            "seed": meta["seed"],
            "step": step,
            "target": target,
            "version": __version__,
            # provenance: how the model was trained and how this subset was extracted
            "protocol": meta.get("protocol", ""),
            "extraction": json.dumps({"subset": str(subset_csv), "compression": compression}),
        }
        outputs = {layer: activation_paths[(step, layer)] for layer in layers}
        outputs["logits"] = logits_paths[step]
        record_layers(
            model, [x], outputs, labels=labels, sample_index=index, attrs=attrs,
            compression=compression,
        )  # fmt: skip
        log.info(
            "extracted %s step %s: %d samples, layers %s", meta["source"], step, len(index), layers
        )


def _safely(metric, *inputs) -> tuple[float, str]:
    """``(value, note)``: NaN with the reason when the metric is undefined on these data, the
    warnings' text as note when it is defined (SPEC §10: one bad value never stops a table)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value, note = _scalar(metric(*inputs))
        except ValueError as err:
            value, note = math.nan, str(err)
        except Exception as err:
            plugin = getattr(metric, "plugin", None)
            if plugin is None:  # a built-in metric's bug: never hide it
                raise
            raise RuntimeError(
                f"metric {metric.metric_name!r} of plugin {plugin} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
    if caught and not note:
        note = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return value, note


def _scalar(value) -> tuple[float, str]:
    """``(value, "")`` for one finite number or NaN; NaN with the reason for anything else (a
    plugin's array, string or infinity must not reach the correlations)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return math.nan, f"undefined: the metric returned {type(value).__name__}, not a number"
    if array.shape != ():
        return (
            math.nan,
            f"undefined: the metric returned an array of shape {array.shape}, not a number",
        )
    if np.isinf(array):
        return math.nan, f"undefined: the metric returned {float(array)}"
    return float(array), ""


#: The layer whose values never depend on the model's weights: the images as fed to the network.
INPUT_LAYER = "input"


def _input_digest(path: str | Path) -> str:
    """A digest of an input layer's activations and labels (the key of its metric rows)."""
    import hashlib

    features, labels, _ = read_activations(path)
    digest = hashlib.blake2b(digest_size=16)
    for array in (features, labels):
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def metric_table(
    activation_files: Sequence[str | Path],
    metrics: Sequence[str],
    logits_file: str | Path | None = None,
    reuse: dict[tuple, list[dict]] | None = None,
    features_max_bytes: int = FEATURES_MAX_BYTES,
) -> pd.DataFrame:
    """Tidy rows (layer, metric, value, note) for one model on one target.

    Layer metrics come from one streamed pass over each activation file (plus a row-block pass
    when featuremap statistics are needed); prediction metrics (LEEP, NCE) from the source
    head's logits, reported under layer ``logits``. Aggregate metrics (``c56``) compare models
    and are added by :func:`build_tables`. A metric that is undefined on these data is NaN with
    the reason in ``note``; unreadable files and NaN/Inf activations raise, naming the file.

    ``reuse``: a dict shared by the calls for several models (e.g. the checkpoints of one run);
    the ``input`` layer's rows are kept there under a digest of its values and labels and reused
    when another model's input layer has the same ones (every checkpoint of a run sees the same
    images, so its rows are computed once per run, not once per checkpoint).

    ``features`` metrics (plugins) receive each layer in memory; a layer larger than
    ``features_max_bytes`` raises before it is read.
    """
    from transferability.metrics import layer_stats_from_h5, metric_names, stats_options

    layer_metrics = [m for m in metrics if m in metric_names("layer")]
    feature_metrics = [m for m in metrics if m in metric_names("features")]
    prediction_metrics = [m for m in metrics if m in metric_names("prediction")]
    options = stats_options(layer_metrics)
    rows = []
    for path in activation_files if layer_metrics or feature_metrics else []:
        layer = read_attrs(path).get("layer", Path(path).stem)
        key = None
        if reuse is not None and layer == INPUT_LAYER:
            key = (_input_digest(path), tuple(layer_metrics + feature_metrics))
            if key in reuse:
                rows += [dict(row) for row in reuse[key]]
                continue
        layer_rows = []
        if layer_metrics:
            stats = layer_stats_from_h5(path, **options)
            layer_rows += layer_metric_rows(layer, stats, layer_metrics)
        if feature_metrics:
            layer_rows += feature_metric_rows(layer, path, feature_metrics, features_max_bytes)
        if key is not None:
            reuse[key] = [dict(row) for row in layer_rows]
        rows += layer_rows
    if prediction_metrics and logits_file is None:  # an encoder-only source has no head
        for name in prediction_metrics:
            note = "undefined: the source model has no classifier head (no logits)"
            rows.append({"layer": "logits", "metric": name, "value": math.nan, "note": note})
    elif prediction_metrics:
        logits, labels, _ = read_activations(logits_file)
        rows += prediction_metric_rows(softmax(logits), labels, prediction_metrics)
    return pd.DataFrame(rows, columns=["layer", "metric", "value", "note"])


def _metric_row(layer: str, name: str, value_note: tuple[float, str]) -> dict:
    value, note = value_note
    return {"layer": layer, "metric": name, "value": value, "note": note}


def layer_metric_rows(layer: str, stats, names: Sequence[str]) -> list[dict]:
    """Rows (layer, metric, value, note) of layer metrics ``names`` from one
    :class:`~transferability.metrics.LayerStats`; undefined values are NaN with the reason."""
    from transferability.metrics import METRICS

    return [_metric_row(layer, name, _safely(METRICS[name], stats)) for name in names]


def feature_metric_rows(
    layer: str, path: str | Path, names: Sequence[str], max_bytes: int = FEATURES_MAX_BYTES
) -> list[dict]:
    """Rows of ``features`` metrics ``names``: each receives the layer of activation file
    ``path`` in memory as float32 (n, d) and the labels. ``ValueError`` names the file when the
    layer is larger than ``max_bytes``."""
    from transferability.metrics import METRICS

    shape = activation_shape(path)
    size = int(np.prod(shape, dtype=np.int64)) * 4
    if size > max_bytes:
        raise ValueError(
            f"{path}: layer {layer!r} holds {shape[0]} × {int(np.prod(shape[1:]))} float32 = "
            f"{size / 2**30:.2f} GiB, more than the {max_bytes / 2**30:g} GiB bound of features "
            f"metrics {list(names)} (config features_max_gib)"
        )
    features, labels, _ = read_activations(path)
    features = np.ascontiguousarray(features.reshape(len(features), -1), dtype=np.float32)
    features.setflags(write=False)  # one array for every metric: none may change it
    return [_metric_row(layer, name, _safely(METRICS[name], features, labels)) for name in names]


def prediction_metric_rows(
    probs: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> list[dict]:
    """Rows of prediction metrics (LEEP, NCE) from the source head's softmax, layer ``logits``."""
    from transferability.metrics import METRICS

    return [_metric_row("logits", name, _safely(METRICS[name], probs, labels)) for name in names]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def finetune(
    checkpoint_paths: Mapping[str, str | Path],
    dataset_path: str | Path,
    curve_paths: Mapping[str, str | Path],
    *,
    target: str,
    seed: int,
    protocol: Mapping,
    threads: int = 1,
    device: str = "auto",
    runs_together: Mapping[str, int] | None = None,
    policy: str = "thesis_cnn",
) -> None:
    """Fine-tune every pre-training checkpoint on the target under ``policy`` (default the
    thesis's: conv layers transferred, fc re-initialised, all weights trained) and write one
    accuracy curve per checkpoint.

    Head initialisation and batch order depend only on (seed, target), so every source and
    checkpoint of a seed is fine-tuned from the same head with the same data order: differences
    between curves come from the transferred weights alone. The checkpoints are therefore
    trained together (multi-run trainer, one shared batch), ``runs_together[device]`` at a time.
    """
    from transferability.families import finetune_model, model_from_checkpoint
    from transferability.multirun import train_runs
    from transferability.schedule import resolve_checkpoints
    from transferability.training import configure_torch, derive_seed

    on = configure_torch(threads, device)
    group = int({**RUNS_TOGETHER, **(runs_together or {})}[on.type])
    dataset = load_dataset(dataset_path)
    train, _, test = _splits(dataset, protocol.get("train_samples"), protocol.get("eval_samples"))
    batch_size = int(protocol["batch_size"])
    checkpoints = resolve_checkpoints(list(protocol["checkpoints"]), len(train), batch_size)
    head_seed = derive_seed(seed, target, "head")
    data_seed = derive_seed(seed, target, "finetune-data")
    steps = list(checkpoint_paths)
    for first in range(0, len(steps), group):
        chunk = steps[first : first + group]
        models, sources = [], []
        for step in chunk:
            source_model, meta = model_from_checkpoint(checkpoint_paths[step])
            models.append(
                finetune_model(source_model, dataset.num_classes, policy, head_seed=head_seed)
            )
            sources.append(meta["source"])
        rows: list[list[dict]] = [[] for _ in chunk]

        def on_checkpoint(run, record, _state, rows=rows):
            rows[run].append(_history_row(record, finetune_step=record.checkpoint.label))

        train_runs(
            models,
            train,
            checkpoints,
            batch_size=batch_size,
            lr=float(protocol["lr"]),
            data_seeds=[data_seed] * len(chunk),
            evaluate={"test": test},
            on_checkpoint=on_checkpoint,
            device=on,
        )
        for step, source, run_rows in zip(chunk, sources, rows, strict=True):
            curve = pd.DataFrame(run_rows)
            curve.insert(0, "pretrain_step", step)
            curve.insert(0, "seed", seed)
            curve.insert(0, "source", source)
            curve.insert(0, "target", target)
            write_csv(curve, curve_paths[step])
            log.info(
                "fine-tuned %s step %s on %s: final accuracy %.4f",
                source,
                step,
                target,
                run_rows[-1]["test_accuracy"],
            )


def share_initial(table_path: str | Path, out_path: str | Path, *, source: str) -> None:
    """Write the untrained model's table (metrics or fine-tuning curve, :func:`initial_model`)
    as ``source``'s step-0 table: the same rows with ``source`` in the ``source`` column.

    Cells are copied as text, so every value is the one the untrained model's job wrote."""
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    if "source" not in table.columns or set(table["source"]) - {INITIAL_SOURCE}:
        raise ValueError(
            f"{table_path}: not an untrained model's table (expected a 'source' column holding "
            f"{INITIAL_SOURCE!r} only, got {sorted(set(table.get('source', [])))[:3]})"
        )
    table["source"] = source
    write_csv(table, out_path)


#: Markers of the lines that benchmarks/job_overhead.py reads from every job log.
STARTUP_MARKER = "start-up before work"
LIFETIME_MARKER = "process lifetime"


def process_age() -> float:
    """Seconds since this process was created.

    On Linux from ``/proc`` (clock ticks since boot against ``/proc/uptime``): psutil's
    ``create_time`` adds the boot time, which Linux gives in whole seconds, so its ages are off
    by a constant of up to 1 s (0.75 s on this project's machine, for every job).
    """
    import time

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        import psutil

        return time.time() - psutil.Process().create_time()


def setup_logging(log_path: str | Path | None) -> None:
    """Send this job's log records (and warnings) to its Snakemake ``log:`` file, starting with
    the seconds since the process started (interpreter, Snakemake's script preamble, imports):
    the per-job overhead that job granularity must keep small (SPEC §9). At exit the process's
    whole lifetime is logged too: Snakemake's ``benchmark:`` clock of a ``script:`` job starts
    only once the child process is running, so it misses part of the start-up."""
    import atexit

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    log.info("%s: %.2f s", STARTUP_MARKER, process_age())
    # Registered after logging's own shutdown hook, so it runs before it (LIFO).
    atexit.register(lambda: log.info("%s: %.2f s", LIFETIME_MARKER, process_age()))


def _concat(paths: Sequence[str | Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, keep_default_na=True) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def evaluate_tables(
    track: str,
    pretrain: pd.DataFrame,
    metric_rows: pd.DataFrame,
    finetune: pd.DataFrame | None,
    *,
    logauc: pd.DataFrame | None = None,
    metrics: Sequence[str] = (),
    quanta_scores: pd.DataFrame | None = None,
    quanta_lambda_init: float = 0.9,
    baselines: Sequence[str] = (),
    bootstrap: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`build_tables` on tables in memory. Without ``finetune`` (recorded tables that
    kept only the log-AUCs, ``logauc``) there is no ``finetune`` table and no ``finetune_step``
    grouping."""
    from transferability import baselines as trivial
    from transferability.analysis import (
        Bootstrap,
        aggregate_metrics,
        correlation_table,
        leaderboard_table,
        log_auc_table,
    )
    from transferability.metrics import METRICS, metric_names

    tables = {"pretrain": pretrain, "metrics": metric_rows}
    if finetune is not None:
        tables["finetune"] = finetune
    aggregates = [m for m in metrics if m in metric_names("aggregate")]
    parts = [metric_rows, aggregate_metrics(metric_rows, aggregates)]
    directions = {name: bool(fn.higher_is_better) for name, fn in METRICS.items()}
    if quanta_scores is not None:
        from transferability.quanta import QUANTA_HIGHER_IS_BETTER, quanta_metric_rows

        parts.append(quanta_metric_rows(quanta_scores, quanta_lambda_init))
        directions["quanta"] = QUANTA_HIGHER_IS_BETTER
    if baselines and not metric_rows.empty:
        targets = sorted(metric_rows["target"].unique())
        parts.append(trivial.baseline_rows(track, pretrain, targets, baselines))
        directions.update({trivial.metric_name(b): trivial.HIGHER_IS_BETTER for b in baselines})
    tables["metrics"] = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    tables["metrics"]["note"] = tables["metrics"]["note"].fillna("")
    tables["logauc"] = log_auc_table(finetune) if finetune is not None else logauc
    tables["correlations"] = correlation_table(
        track, tables["metrics"], finetune, directions,
        Bootstrap(**bootstrap) if bootstrap is not None else None, logauc=tables["logauc"],
    )  # fmt: skip
    tables["leaderboard"] = leaderboard_table(tables["correlations"])
    return tables


def build_tables(
    track: str,
    history_files: Sequence[str | Path],
    metric_files: Sequence[str | Path],
    finetune_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    metrics: Sequence[str] = (),
    quanta_scores: str | Path | None = None,
    quanta_lambda_init: float = 0.9,
    baselines: Sequence[str] = (),
    bootstrap: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """The track's tidy tables: pretrain, metrics, finetune, logauc, correlations, leaderboard.

    Aggregate metrics among ``metrics`` (``c56``) are computed here, over all models. With
    ``quanta_scores`` (the QUANTA study's score table) the scores of ``quanta_lambda_init`` join
    the metrics as metric ``quanta`` (higher = the target relied more on the source layer).
    ``baselines`` (:mod:`transferability.baselines`) join them as ``baseline_<name>`` rows at
    layer ``model``, one per model and target, from the ``pretrain`` table. ``bootstrap``:
    the settings of :class:`~transferability.analysis.Bootstrap` (None: no intervals and no
    paired comparison with the baselines).
    """
    tables = evaluate_tables(
        track,
        _concat(history_files),
        _concat(metric_files),
        _concat(finetune_files),
        metrics=metrics,
        quanta_scores=None if quanta_scores is None else pd.read_csv(quanta_scores),
        quanta_lambda_init=quanta_lambda_init,
        baselines=baselines,
        bootstrap=bootstrap,
    )
    for name, frame in tables.items():
        write_csv(frame, outputs[name])
    log.info("tables: %s", {k: len(v) for k, v in tables.items()})
    return tables
