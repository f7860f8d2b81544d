# Analysis (rules/analysis.smk): its input functions, output lists and params
# helpers, included at the top of rules/analysis.smk.


# --- tables ----------------------------------------------------------------------------------

TABLES = ["pretrain", "metrics", "finetune", "logauc", "correlations", "leaderboard"]


def run_dir(track, source, seed):
    return f"results/{track}/checkpoints/{source}/seed{seed}"


def history_files(track):
    return [f"{run_dir(track, s, seed)}/history.csv" for s, seed in models(track)]


def per_model_files(track, pattern):
    cfg = track_cfg(track)
    return [
        pattern.format(track=track, target=target, source=source, seed=seed, step=step)
        for target in cfg["targets"]
        for source, seed in models(track)
        for step in steps(track, "pretrain")
    ]


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


def quanta_scores_input(track):
    """The QUANTA scores join the track's metrics table when the study runs."""
    if track != CNN or not study_cfg("quanta"):
        return []
    return [f"results/{track}/tables/quanta_scores.csv"]


def quanta_lambda_init(wildcards):
    """The λ init whose QUANTA runs give the scores (0.9 without the study)."""
    return (study_cfg("quanta", wildcards.track) or {}).get("score_lambda_init", 0.9)


# --- figures ---------------------------------------------------------------------------------

FIGURES = list(tconfig.TRACK_FIGURES)


def track_figures(track):
    if track not in IMAGE_TRACKS:
        return FIGURES
    skip = set(tconfig.SINGLE_CHECKPOINT_SKIPS)
    if not track_cfg(track).get("scratch"):
        skip.add("finetune_delta")  # its baseline is the from-scratch model
    return [f for f in FIGURES if f not in skip]


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
# download (written by table_html below): Snakemake's report offers a CSV only as a download.
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
