# Studies (rules/studies.smk): its input functions, output lists and params
# helpers, included at the top of rules/studies.smk.


def study_cfg(name, track=CNN):
    return tconfig.study(config, track, name) if track in config["tracks"] else None


def study_models(name):
    """(target, source, seed) of a study: the aggregate rules expand over these."""
    return [
        (target, source, seed)
        for target in tconfig.study_targets(config, CNN, name)
        for source in tconfig.study_sources(config, CNN, name)
        for seed in tconfig.study_seeds(config, CNN, name)
    ]


def study_checkpoint(name):
    """Input function: the source checkpoint a study uses (its pretrain_step)."""

    def checkpoint(wildcards):
        step = tconfig.study_pretrain_step(config, wildcards.track, name)
        return checkpoint_path(wildcards.track, wildcards.source, wildcards.seed, step)

    return checkpoint


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


# --- QUANTA --------------------------------------------------------------------------------


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


def quanta_runs(wildcards):
    """The runs a QUANTA job trains: (step, layer, λ init, run) of each."""
    return [(s, layer, lam, run) for s, layer, lam, run in quanta_run_keys()]


def quanta_outputs():
    return [
        f"results/{{track}}/quanta/{{target}}/{{source}}/seed{{seed}}/step{step}/{layer}_lambda{lam:g}_run{run}.csv"
        for step, layer, lam, run in quanta_run_keys()
    ]


def quanta_files(track):
    return [
        pattern.format(track=track, target=t, source=s, seed=seed)
        for t, s, seed in study_models("quanta")
        for pattern in quanta_outputs()
    ]


# --- layer transfer ------------------------------------------------------------------------

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


# --- random target tasks -------------------------------------------------------------------

TASK_FAMILIES = list((study_cfg("random_tasks") or {}).get("families", {}))


def family_dataset(wildcards):
    family = tconfig.task_family(config, wildcards.track, wildcards.family)
    return dataset_file(family["dataset"])


def random_tasks_plugin_inputs(wildcards):
    """The plugin files of the study's metrics: an edited plugin re-runs its jobs."""
    return tconfig.metric_plugin_files(
        config, tconfig.random_tasks_metrics(config, wildcards.track)
    )


def random_tasks_setting(key):
    """Params function: one setting of the track's random_tasks study."""
    return lambda wildcards: tconfig.study(config, wildcards.track, "random_tasks")[key]


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


def random_task_settings(wildcards):
    """Each task family's description for the tables ("small, balanced")."""
    return {
        family: tconfig.family_setting(config, wildcards.track, family)
        for family in TASK_FAMILIES
    }
