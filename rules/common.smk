# Shared by every stage: the library on the path, the scheduler fix, the config check, the
# constants and wildcard constraints, and the helpers several stages use. A stage's own input
# functions, output lists and params helpers are in rules/functions/<stage>.smk, included at the
# top of rules/<stage>.smk (the Snakefile includes the stages in DAG order, data ... analysis).
# They are kept out of the rules' files because `snakemake --lint` flags a file holding both.

import sys
from pathlib import Path
from types import SimpleNamespace as Namespace

# The library lives in workflow/ beside rules/ (found from this file: where the workflow is
# used as a module, workflow.basedir is the host's folder; docs/module.md); the jobs' scripts
# import the installed copy (pip install -e .).
RULES_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))
sys.path.insert(0, str(RULES_DIR.parent / "workflow"))

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from transferability.run import config as tconfig
from transferability.run import resources as job_resources
from transferability.run import scheduler_patch
from transferability.data.arrays import BASE_DATASETS

# Snakemake 9.27.1's scheduler wakes itself once more per finished job, forever (see
# transferability/run/scheduler_patch.py, docs/performance.md): fixed here, before the scheduler
# exists, so that every way of running this workflow gets the fix.
_scheduler_fix = scheduler_patch.apply()
if workflow.is_main_process:
    if scheduler_patch.is_applied():
        logger.debug(_scheduler_fix)
    else:
        logger.warning(_scheduler_fix)

try:
    tconfig.check(config)
except tconfig.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}")


DATA_DIR = config["data_dir"]
TRACKS = config["run_tracks"] or list(config["tracks"])
_unknown = [name for name in TRACKS if name not in config["tracks"]]
if _unknown:
    raise WorkflowError(f"run_tracks: {_unknown} not configured under tracks")
CNN = "cnn"
VGG_TRACK = tconfig.VGG_TRACK
# Training jobs hold a GPU only when the config says they run on one (SPEC §11), or when a test
# asks them to (request_gpus: the code still runs where `device` says).
TRAINING_GPUS = 1 if config["device"] == "cuda" or config["request_gpus"] else 0
# the untrained model's step, and its folder as a wildcard pattern: initial/classes{classes}
INITIAL_STEP = tconfig.INITIAL_STEP
INITIAL_MODEL = tconfig.INITIAL_MODEL
# Image tracks (vgg, zoo: rules/images.smk): one model per (source, seed) at step "final".
IMAGE_TRACKS = [t for t in TRACKS if t in tconfig.IMAGE_TRACKS]


wildcard_constraints:
    track="|".join(TRACKS),
    source="[a-z0-9_]+",
    target="[a-z0-9_]+",
    dataset="[a-z0-9_]+",
    seed="[0-9]+",
    step="0|[1-9][0-9]*[be]",
    layer="[a-z0-9_]+",
    family="[a-z0-9_]+",
    classes="[0-9]+",


def attempt_scaled(rule_name, resource):
    """A job's `resource` (mem_mb or runtime): its rule's base value × the attempt, so that a
    retry after a TIMEOUT or OUT_OF_MEMORY asks for more (table: transferability.run.resources).
    """
    return lambda wildcards, attempt: job_resources.scaled(
        rule_name, resource, attempt, config["job_resources"]
    )


def track_cfg(track):
    return config["tracks"][track]


def steps(track, stage):
    # a track that is not configured has no checkpoints (its rules then match nothing)
    if track not in config["tracks"]:
        return []
    return tconfig.checkpoint_labels(config, track, stage)


def models(track):
    """Every (source, seed) pair of a track: the aggregate rules expand over these."""
    cfg = track_cfg(track)
    if track in IMAGE_TRACKS:
        return [
            (source, seed)
            for source in cfg["sources"]
            for seed in tconfig.image_seeds(config, track, source)
        ]
    return [(source, seed) for source in cfg["sources"] for seed in cfg["seeds"]]


def table_outputs(names):
    """The named CSV outputs of a rule writing a track's tables."""
    return {name: f"results/{{track}}/tables/{name}.csv" for name in names}


def all_outputs():
    """Every final target (the Snakefile's default target, built once every stage is included):
    activation_files (extraction), study_outputs (studies), and the tables and figures of the
    analysis (TABLES, track_figures, model_figures), from rules/functions/<stage>.smk.
    """
    return [
        f
        for track in TRACKS
        for f in activation_files(track) + study_outputs(track) + model_figures(track)
    ] + [
        f"results/{track}/{kind}/{name}.{ext}"
        for track in TRACKS
        for kind, names, exts in (
            ("tables", TABLES, ["csv", "html"]),
            ("figures", track_figures(track), ["png", "pdf"]),
        )
        for name in names
        for ext in exts
    ]
