# Fine-tuning (CNN track): each run's checkpoints fine-tuned on each target, one curve
# per pre-training checkpoint; the untrained model's (the from-scratch baseline) once for all the
# sources that share it.


include: "functions/finetune.smk"


rule finetune:
    """A run's own checkpoints fine-tuned on one target: accuracy curves (step 0: the untrained
    model's curve under this source's name)."""
    input:
        checkpoints=run_checkpoints,
        dataset=target_dataset,
        initial=initial_file("finetune"),
    output:
        curves=finetune_curves("{source}", trained_steps(CNN)),
        initial=f"results/{{track}}/finetune/{{target}}/{{source}}/seed{{seed}}/step{INITIAL_STEP}.csv",
    log:
        "results/{track}/logs/finetune/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/finetune/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("finetune", "mem_mb"),
        runtime=attempt_scaled("finetune", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        protocol=lambda wc: tconfig.finetune_protocol(config, wc.track, wc.target),
        steps=lambda wc: trained_steps(wc.track),
    script:
        "../workflow/scripts/finetune.py"


rule finetune_initial:
    """The untrained model of (seed, classes) fine-tuned on one target, once for all its
    sources: the thesis's from-scratch baseline."""
    input:
        checkpoints=rules.initial_model.output,
        dataset=target_dataset,
    output:
        curves=finetune_curves(INITIAL_MODEL, INITIAL_STEPS),
    log:
        f"results/{{track}}/logs/finetune/{{target}}/{INITIAL_MODEL}/seed{{seed}}.log",
    benchmark:
        f"results/{{track}}/benchmarks/finetune/{{target}}/{INITIAL_MODEL}/seed{{seed}}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("finetune", "mem_mb"),
        runtime=attempt_scaled("finetune", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        protocol=lambda wc: tconfig.finetune_protocol(config, wc.track, wc.target),
        steps=INITIAL_STEPS,
    script:
        "../workflow/scripts/finetune.py"
