# The three studies of SPEC §6.3 on the CNN track. Each job covers one (target, source,
# seed) or (family, source, seed), so adding a source adds jobs and leaves existing outputs alone.


include: "functions/studies.smk"


rule quanta:
    """Every QUANTA run (layer × λ init × run) of one source run on one target."""
    input:
        checkpoint=study_checkpoint("quanta"),
        dataset=target_dataset,
    output:
        quanta_outputs(),
    log:
        "results/{track}/logs/quanta/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/quanta/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("quanta", "mem_mb"),
        runtime=attempt_scaled("quanta", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        step=lambda wc: tconfig.study_pretrain_step(config, wc.track, "quanta"),
        runs=quanta_runs,
        protocol=lambda wc: tconfig.quanta_protocol(config, wc.track),
    script:
        "../workflow/scripts/quanta.py"


rule quanta_tables:
    """All QUANTA histories, and the scores (mean λ_S of the last epochs, over runs)."""
    input:
        lambda wc: quanta_files(wc.track),
    output:
        quanta="results/{track}/tables/quanta.csv",
        quanta_scores="results/{track}/tables/quanta_scores.csv",
    log:
        "results/{track}/logs/quanta_tables.log",
    benchmark:
        "results/{track}/benchmarks/quanta_tables.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "tables"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("quanta_tables", "mem_mb"),
        runtime=attempt_scaled("quanta_tables", "runtime"),
    params:
        last_epochs=lambda wc: tconfig.quanta_protocol(config, wc.track)["last_epochs"],
    script:
        "../workflow/scripts/quanta_tables.py"


rule layer_transfer:
    """AnB (source on another task) or BnB (source on the target's own task) models,
    frozen and fine-tuned, for every n, trained on the target."""
    input:
        checkpoint=study_checkpoint("layer_transfer"),
        dataset=target_dataset,
    output:
        layer_transfer_outputs(),
    log:
        "results/{track}/logs/layer_transfer/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/layer_transfer/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("layer_transfer", "mem_mb"),
        runtime=attempt_scaled("layer_transfer", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        variants=LAYER_TRANSFER_VARIANTS,
        role=lambda wc: tconfig.base_role(config, wc.track, wc.source, wc.target),
        protocol=lambda wc: tconfig.layer_transfer_protocol(config, wc.track, wc.target),
    script:
        "../workflow/scripts/layer_transfer.py"


rule layer_transfer_table:
    input:
        lambda wc: layer_transfer_files(wc.track),
    output:
        "results/{track}/tables/layer_transfer.csv",
    log:
        "results/{track}/logs/layer_transfer_table.log",
    benchmark:
        "results/{track}/benchmarks/layer_transfer_table.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "tables"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("layer_transfer_table", "mem_mb"),
        runtime=attempt_scaled("layer_transfer_table", "runtime"),
    script:
        "../workflow/scripts/layer_transfer_table.py"


rule random_tasks:
    """One source model on every task of a family: metrics, head re-training, fine-tuning."""
    input:
        checkpoint=study_checkpoint("random_tasks"),
        dataset=family_dataset,
        plugins=random_tasks_plugin_inputs,
    output:
        "results/{track}/random_tasks/{family}/{source}/seed{seed}.csv",
    log:
        "results/{track}/logs/random_tasks/{family}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/random_tasks/{family}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("random_tasks", "mem_mb"),
        runtime=attempt_scaled("random_tasks", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        family=lambda wc: tconfig.task_family(config, wc.track, wc.family),
        layers=random_tasks_setting("layers"),
        metrics=lambda wc: tconfig.random_tasks_metrics(config, wc.track),
        protocol=lambda wc: tconfig.random_tasks_protocol(config, wc.track),
    script:
        "../workflow/scripts/random_tasks.py"


rule random_task_references:
    """The reference model of every task of a family: trained from scratch (LEEP §5.5)."""
    input:
        dataset=family_dataset,
    output:
        "results/{track}/random_tasks/{family}/reference_seed{seed}.csv",
    log:
        "results/{track}/logs/random_tasks/{family}/reference_seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/random_tasks/{family}/reference_seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("random_task_references", "mem_mb"),
        runtime=attempt_scaled("random_task_references", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        family=lambda wc: tconfig.task_family(config, wc.track, wc.family),
        protocol=lambda wc: tconfig.random_tasks_protocol(config, wc.track),
    script:
        "../workflow/scripts/random_task_references.py"


rule random_tasks_tables:
    input:
        unpack(lambda wc: random_task_files(wc.track)),
    output:
        **table_outputs(tconfig.STUDY_TABLES["random_tasks"]),
    log:
        "results/{track}/logs/random_tasks_tables.log",
    benchmark:
        "results/{track}/benchmarks/random_tasks_tables.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "tables"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("random_tasks_tables", "mem_mb"),
        runtime=attempt_scaled("random_tasks_tables", "runtime"),
    params:
        settings=random_task_settings,
        levels=random_tasks_setting("levels"),
        levels_metric=random_tasks_setting("levels_metric"),
        levels_layer=lambda wc: tconfig.levels_layer(config, wc.track),
    script:
        "../workflow/scripts/random_tasks_tables.py"
