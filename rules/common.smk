import sys
from pathlib import Path

# The library lives in workflow/; an installed copy (pip install -e .) is used when present.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from snakemake.exceptions import WorkflowError

from transferability import config as tconfig
from transferability.data import BASE_DATASETS

try:
    tconfig.check(config)
except tconfig.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}")


DATA_DIR = config["data_dir"]
TRACKS = list(config["tracks"])
CNN = "cnn"
# Training jobs hold a GPU only when the config says they run on one (SPEC §11).
TRAINING_GPUS = 1 if config["device"] == "cuda" else 0


wildcard_constraints:
    track="|".join(TRACKS),
    source="[a-z0-9_]+",
    target="[a-z0-9_]+",
    dataset="[a-z0-9_]+",
    seed="[0-9]+",
    step="0|[1-9][0-9]*[be]",
    layer="[a-z0-9_]+",


def track_cfg(track):
    return config["tracks"][track]


def steps(track, stage):
    return tconfig.checkpoint_labels(config, track, stage)


def run_dir(track, source, seed):
    return f"results/{track}/checkpoints/{source}/seed{seed}"


def checkpoint_files(track, source, seed):
    return {
        step: f"{run_dir(track, source, seed)}/step{step}.pt"
        for step in steps(track, "pretrain")
    }


def activation_dir(track, target, source, seed, step):
    return f"results/{track}/activations/{target}/{source}/seed{seed}/step{step}"


def dataset_file(name):
    return f"{DATA_DIR}/{name}/data.npz"


def source_dataset(wildcards):
    return dataset_file(
        tconfig.source(config, wildcards.track, wildcards.source)["dataset"]
    )


def target_dataset(wildcards):
    return dataset_file(
        tconfig.target(config, wildcards.track, wildcards.target)["dataset"]
    )


def run_checkpoints(wildcards):
    return list(
        checkpoint_files(wildcards.track, wildcards.source, wildcards.seed).values()
    )


def models(track):
    """Every (source, seed) pair of a track: the aggregate rules expand over these."""
    cfg = track_cfg(track)
    return [(source, seed) for source in cfg["sources"] for seed in cfg["seeds"]]


def per_model_files(track, pattern):
    cfg = track_cfg(track)
    return [
        pattern.format(track=track, target=target, source=source, seed=seed, step=step)
        for target in cfg["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
    ]


def activation_outputs(track):
    return [
        f"results/{{track}}/activations/{{target}}/{{source}}/seed{{seed}}/step{step}/{layer}.h5"
        for step in steps(track, "pretrain")
        for layer in track_cfg(track)["layers"]
    ]


def history_files(track):
    return [f"{run_dir(track, s, seed)}/history.csv" for s, seed in models(track)]


def metric_files(track):
    return per_model_files(
        track, "results/{track}/metrics/{target}/{source}/seed{seed}/step{step}.csv"
    )


def finetune_files(track):
    return per_model_files(
        track, "results/{track}/finetune/{target}/{source}/seed{seed}/step{step}.csv"
    )


FIGURES = ["pretrain_accuracy", "metrics_per_layer", "finetune_curves", "correlations"]
TABLES = ["pretrain", "metrics", "finetune", "logauc", "correlations"]


def activation_files(track):
    """Activation files are final targets (unless temporary), so a deleted one is recomputed."""
    if config["temp_activations"]:
        return []
    return [
        f"{activation_dir(track, target, source, seed, step)}/{layer}.h5"
        for target in track_cfg(track)["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
        for layer in track_cfg(track)["layers"] + ["logits"]
    ]


def all_outputs():
    return [f for track in TRACKS for f in activation_files(track)] + [
        f"results/{track}/{kind}/{name}.{ext}"
        for track in TRACKS
        for kind, names, exts in (
            ("tables", TABLES, ["csv"]),
            ("figures", FIGURES, ["png", "pdf"]),
        )
        for name in names
        for ext in exts
    ]
