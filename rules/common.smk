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

from transferability import config as tconfig
from transferability import job_resources
from transferability import scheduler_patch
from transferability.data import BASE_DATASETS

# Snakemake 9.27.1's scheduler wakes itself once more per finished job, forever (see
# transferability/scheduler_patch.py, docs/performance.md): fixed here, before the scheduler
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
    retry after a TIMEOUT or OUT_OF_MEMORY asks for more (table: transferability.job_resources).
    """
    return lambda wildcards, attempt: job_resources.scaled(
        rule_name, resource, attempt, config["job_resources"]
    )


def track_cfg(track):
    return config["tracks"][track]


def metric_plugin_inputs(wildcards):
    """The plugin files of a track's metrics: an edited plugin re-runs the metric jobs."""
    return tconfig.metric_plugin_files(config, track_cfg(wildcards.track)["metrics"])


def steps(track, stage):
    # a track that is not configured has no checkpoints (its rules then match nothing)
    if track not in config["tracks"]:
        return []
    return tconfig.checkpoint_labels(config, track, stage)


INITIAL_STEP = tconfig.INITIAL_STEP
# the untrained model's folder as a wildcard pattern: initial/classes{classes}
INITIAL_MODEL = tconfig.INITIAL_MODEL


# [INITIAL_STEP] for the untrained model's rules; empty (they match nothing) without a CNN track
INITIAL_STEPS = [step for step in steps(CNN, "pretrain") if step == INITIAL_STEP]


def trained_steps(track):
    """The checkpoints a source's own run writes: all but step 0, the untrained model of
    (seed, classes) that every source with that many classes shares (tconfig.INITIAL_MODEL).
    """
    return [step for step in steps(track, "pretrain") if step != INITIAL_STEP]


def run_dir(track, source, seed):
    return f"results/{track}/checkpoints/{source}/seed{seed}"


def checkpoint_path(track, source, seed, step):
    return tconfig.checkpoint_path(config, track, source, seed, step)


def activation_dir(track, target, source, seed, step):
    folder = tconfig.run_folder(config, track, source, step)
    return f"results/{track}/activations/{target}/{folder}/seed{seed}/step{step}"


def initial_file(stage):
    """Input function: the untrained model's file of a source's run, for stage ``checkpoints``
    (its checkpoint), ``metrics`` or ``finetune`` (its table on the job's target)."""

    def path(wildcards):
        track, source, seed = wildcards.track, wildcards.source, wildcards.seed
        if stage == "checkpoints":
            return checkpoint_path(track, source, seed, INITIAL_STEP)
        folder = tconfig.run_folder(config, track, source, INITIAL_STEP)
        return f"results/{track}/{stage}/{wildcards.target}/{folder}/seed{seed}/step{INITIAL_STEP}.csv"

    return path


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
    return [
        checkpoint_path(wildcards.track, wildcards.source, wildcards.seed, step)
        for step in trained_steps(wildcards.track)
    ]


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


def per_model_files(track, pattern):
    cfg = track_cfg(track)
    return [
        pattern.format(track=track, target=target, source=source, seed=seed, step=step)
        for target in cfg["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
    ]


def activation_outputs(model, track_steps):
    """Extraction outputs (every layer but the logits) of a run folder pattern ``model``;
    ``track_steps`` is empty without a CNN track."""
    return [
        f"results/{{track}}/activations/{{target}}/{model}/seed{{seed}}/step{step}/{layer}.h5"
        for step in track_steps
        for layer in track_cfg(CNN)["layers"]
    ]


def history_files(track):
    return [f"{run_dir(track, s, seed)}/history.csv" for s, seed in models(track)]


def metric_files(track):
    if track in IMAGE_TRACKS:
        return image_model_files(
            track, "results/{track}/metrics/{target}/{source}/seed{seed}/stepfinal.csv"
        )
    return per_model_files(
        track, "results/{track}/metrics/{target}/{source}/seed{seed}/step{step}.csv"
    )


def finetune_files(track):
    if track in IMAGE_TRACKS:
        return image_model_files(
            track,
            "results/{track}/finetune/{target}/{source}/seed{seed}/stepfinal.csv",
            with_scratch=True,
        )
    return per_model_files(
        track, "results/{track}/finetune/{target}/{source}/seed{seed}/step{step}.csv"
    )


FIGURES = list(tconfig.TRACK_FIGURES)


def track_figures(track):
    if track not in IMAGE_TRACKS:
        return FIGURES
    skip = set(tconfig.SINGLE_CHECKPOINT_SKIPS)
    if not track_cfg(track).get("scratch"):
        skip.add("finetune_delta")  # its baseline is the from-scratch model
    return [f for f in FIGURES if f not in skip]


def model_figures(track):
    """The Uppsala report's filters and feature maps: each source's last checkpoint (first
    seed) on the first target's first test image (CNN track)."""
    if track != CNN:
        return []
    return [
        f"results/{track}/figures/model_{source}.{ext}"
        for source in track_cfg(track)["sources"]
        for ext in ("png", "pdf")
    ]


def model_figure_inputs(wildcards):
    cfg = track_cfg(wildcards.track)
    step = steps(wildcards.track, "pretrain")[-1]
    target = next(iter(cfg["targets"]))
    return {
        "checkpoint": checkpoint_path(
            wildcards.track, wildcards.source, cfg["seeds"][0], step
        ),
        "dataset": dataset_file(
            tconfig.target(config, wildcards.track, target)["dataset"]
        ),
    }


TABLES = ["pretrain", "metrics", "finetune", "logauc", "correlations", "leaderboard"]


def activation_files(track):
    """Activation files are final targets (unless temporary), so a deleted one is recomputed."""
    if config["temp_activations"]:
        return []
    if track in IMAGE_TRACKS:
        return [
            f for target in track_cfg(track)["targets"] for source, seed in models(track)
            for f in image_model_activations(track, target, source, seed)
        ]  # fmt: skip
    files = [
        f"{activation_dir(track, target, source, seed, step)}/{layer}.h5"
        for target in track_cfg(track)["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
        for layer in track_cfg(track)["layers"] + ["logits"]
    ]
    return list(dict.fromkeys(files))  # sources share their untrained model's files


def all_outputs():
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


# --- image tracks (vgg, zoo) ---------------------------------------------------------------
# Sources loaded from weight files or trained here (any family of transferability.families),
# image-folder targets, one model per (source, seed) at step "final".

IMAGE_TRACKS = [t for t in TRACKS if t in tconfig.IMAGE_TRACKS]
IMAGE_TRACK_RE = (
    "|".join(IMAGE_TRACKS) or "(?!x)x"
)  # a regex matching nothing when none


def image_source_cfg(track, source):
    return track_cfg(track)["sources"][source]


def image_target_cfg(track, target):
    return track_cfg(track)["targets"][target]


def has_head(track, source):
    """Whether a source keeps its classifier head (an encoder has no logits)."""
    cfg = image_source_cfg(track, source)
    return not cfg.get("encoder") and cfg["arch"] != "vgg16_features"


def image_layers(track, source):
    """A source's recorded layers: its own list, else the track's; an encoder records no
    fully-connected VGG layers."""
    cfg = image_source_cfg(track, source)
    layers = list(cfg.get("layers") or track_cfg(track)["layers"])
    if not has_head(track, source):
        layers = [
            layer for layer in layers if layer not in ("fc6", "fc7", "fc8", "logits")
        ]
    return layers


def _extract_rules():
    """Extraction rules, one for each (track, layer list, head or not) — outputs cannot depend
    on the source, so the sources that record the same files share one."""
    groups = {}
    for track in IMAGE_TRACKS:
        for source in track_cfg(track)["sources"]:
            key = (track, tuple(image_layers(track, source)), has_head(track, source))
            groups.setdefault(key, []).append(source)
    rules, names = [], set()
    for (track, layers, head), sources in groups.items():
        name = base = f"{track}_extract" + ("" if head else "_encoder")
        k = 1
        while name in names:  # sources with their own layer lists
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        rules.append((name, track, list(layers), head, "|".join(sorted(sources))))
    return rules


EXTRACT_RULES = _extract_rules()


for _missing in tconfig.missing_image_inputs(config):
    print(
        f"transferability: missing, provide it before running: {_missing}",
        file=sys.stderr,
    )


def image_target_inputs(wildcards):
    """The image folder, when the workflow builds it; external folders are read in place."""
    cfg = image_target_cfg(wildcards.track, wildcards.target)
    return [cfg["root"]] if cfg.get("make_from") else []


def image_weight_inputs(wildcards):
    """The weight file as input where it is a file (so a new file re-runs the source); a
    missing external file is left to the job, which names it (see missing_image_inputs).
    """
    weights = tconfig.image_weights(config, wildcards.track, wildcards.source)
    if image_source_cfg(wildcards.track, wildcards.source).get("pretrain_on"):
        # what training recorded (source accuracy, samples seen) for the baselines
        return {"weights": weights, "info": str(Path(weights).with_suffix(".json"))}
    return {"weights": weights} if Path(weights).is_file() else {}


def image_model_activations(track, target, source, seed):
    folder = f"results/{track}/activations/{target}/{source}/seed{seed}/stepfinal"
    files = [f"{folder}/{layer}.h5" for layer in image_layers(track, source)]
    if has_head(track, source):
        files.append(f"{folder}/logits.h5")
    return files


def image_activation_inputs(wildcards):
    w = wildcards
    folder = f"results/{w.track}/activations/{w.target}/{w.source}/seed{w.seed}"
    return [
        f"{folder}/stepfinal/{layer}.h5" for layer in image_layers(w.track, w.source)
    ]


def image_logits_inputs(wildcards):
    w = wildcards
    files = image_model_activations(w.track, w.target, w.source, w.seed)
    return [f for f in files if Path(f).name == "logits.h5"]


def image_finetune_checkpoint(wildcards):
    if wildcards.source == "scratch":
        return []
    return f"results/{wildcards.track}/checkpoints/{wildcards.source}/seed{wildcards.seed}/final.pt"


def image_model_files(track, pattern, with_scratch=False):
    cfg = track_cfg(track)
    sources = list(cfg["sources"]) + (
        ["scratch"] if with_scratch and cfg.get("scratch") else []
    )
    return [
        pattern.format(track=track, target=target, source=source, seed=seed)
        for target in cfg["targets"]
        for source in sources
        for seed in tconfig.image_seeds(config, track, source)
    ]


# --- studies (SPEC §6.3): QUANTA, layer transfer, random target tasks -------------------------


def study_cfg(name, track=CNN):
    return tconfig.study(config, track, name) if track in config["tracks"] else None


def quanta_run_keys():
    """(step, layer, λ init, run) of every QUANTA run of one (target, source, seed)."""
    settings = study_cfg("quanta")
    if not settings:
        return []
    step = tconfig.study_pretrain_step(config, CNN, "quanta")
    return [
        (step, layer, lam, run)
        for layer in settings["layers"]
        for lam in settings["lambda_inits"]
        for run in range(settings["runs"])
    ]


def quanta_outputs():
    return [
        f"results/{{track}}/quanta/{{target}}/{{source}}/seed{{seed}}/step{step}/{layer}_lambda{lam:g}_run{run}.csv"
        for step, layer, lam, run in quanta_run_keys()
    ]


def study_models(name):
    """(target, source, seed) of a study: the aggregate rules expand over these."""
    return [
        (target, source, seed)
        for target in tconfig.study_targets(config, CNN, name)
        for source in tconfig.study_sources(config, CNN, name)
        for seed in tconfig.study_seeds(config, CNN, name)
    ]


def quanta_files(track):
    return [
        pattern.format(track=track, target=t, source=s, seed=seed)
        for t, s, seed in study_models("quanta")
        for pattern in quanta_outputs()
    ]


def quanta_scores_input(track):
    """The QUANTA scores join the track's metrics table when the study runs."""
    if track != CNN or not study_cfg("quanta"):
        return []
    return [f"results/{track}/tables/quanta_scores.csv"]


LAYER_TRANSFER_VARIANTS = [
    (mode, n)
    for mode in (study_cfg("layer_transfer") or {}).get("modes", [])
    for n in (study_cfg("layer_transfer") or {}).get("n", [])
]


def layer_transfer_outputs():
    return [
        f"results/{{track}}/layer_transfer/{{target}}/{{source}}/seed{{seed}}/{mode}_n{n}.csv"
        for mode, n in LAYER_TRANSFER_VARIANTS
    ]


def layer_transfer_files(track):
    return [
        pattern.format(track=track, target=t, source=s, seed=seed)
        for t, s, seed in study_models("layer_transfer")
        for pattern in layer_transfer_outputs()
    ]


def study_checkpoint(name):
    """Input function: the source checkpoint a study uses (its pretrain_step)."""

    def checkpoint(wildcards):
        step = tconfig.study_pretrain_step(config, wildcards.track, name)
        return checkpoint_path(wildcards.track, wildcards.source, wildcards.seed, step)

    return checkpoint


TASK_FAMILIES = list((study_cfg("random_tasks") or {}).get("families", {}))


def family_dataset(wildcards):
    family = tconfig.task_family(config, wildcards.track, wildcards.family)
    return dataset_file(family["dataset"])


def random_task_files(track):
    seeds = tconfig.study_seeds(config, CNN, "random_tasks")
    sources = tconfig.study_sources(config, CNN, "random_tasks")
    return {
        "tasks": [
            f"results/{track}/random_tasks/{family}/{source}/seed{seed}.csv"
            for family in TASK_FAMILIES
            for source in sources
            for seed in seeds
        ],
        "references": [
            f"results/{track}/random_tasks/{family}/reference_seed{seed}.csv"
            for family in TASK_FAMILIES
            for seed in seeds
        ],
    }


def track_studies(track):
    if track != CNN:
        return []
    return [name for name in tconfig.STUDIES if study_cfg(name)]


def study_outputs(track):
    return [
        f"results/{track}/tables/{table}.{ext}"
        for study in track_studies(track)
        for table in tconfig.STUDY_TABLES[study]
        for ext in ("csv", "html")
    ] + [
        f"results/{track}/figures/{figure}.{ext}"
        for study in track_studies(track)
        for figure in tconfig.STUDY_FIGURES[study]
        for ext in ("png", "pdf")
    ]


STUDY_FIGURE_OF = {
    figure: study for study, names in tconfig.STUDY_FIGURES.items() for figure in names
}


def figure_tables(wildcards):
    """The tables a figure is drawn from: the track's, or its study's."""
    names = (
        tconfig.STUDY_TABLES[STUDY_FIGURE_OF[wildcards.figure]]
        if wildcards.figure in STUDY_FIGURE_OF
        else TABLES
    )
    return {name: f"results/{wildcards.track}/tables/{name}.csv" for name in names}


# --- report (snakemake --report): categories and captions ----------------------------------

FIGURE_STAGES = {
    "leaderboard": "main result",
    "pretrain_accuracy": "pre-training",
    "model": "models",
    "metrics_per_layer": "metrics",
    "metric_vs_logauc": "metrics",
    "finetune_curves": "fine-tuning",
    "finetune_delta": "fine-tuning",
    "quanta_lambda": "QUANTA",
    "quanta_epochs": "QUANTA",
    "layer_transfer": "layer transfer",
}


def figure_stage(wildcards):
    """The report's subcategory of a figure: its stage."""
    figure = wildcards.figure
    if figure.startswith("correlations"):
        return "correlations"
    if figure.startswith("random_tasks"):
        return "random tasks"
    return FIGURE_STAGES.get(figure, "other")


# Every result table is shown in the report as an HTML page, sortable, the CSV inside for
# download (written by table_html, rules/analysis.smk): Snakemake's report offers a CSV only
# as a download.
STUDY_STAGES = {
    "quanta": "QUANTA",
    "layer_transfer": "layer transfer",
    "random_tasks": "random tasks",
}
TABLE_STAGES = {
    "leaderboard": "main result",
    **{name: "main tables" for name in TABLES if name != "leaderboard"},
    **{
        name: f"{STUDY_STAGES[study]} tables"
        for study, names in tconfig.STUDY_TABLES.items()
        for name in names
    },
}


def table_stage(wildcards):
    """The report's subcategory of a table: the leaderboard beside its figure, the others in
    their stage's tables."""
    return TABLE_STAGES[wildcards.name]
