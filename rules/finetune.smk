rule finetune:
    """Every pre-training checkpoint of one run fine-tuned on one target: accuracy curves."""
    input:
        checkpoints=run_checkpoints,
        dataset=target_dataset,
    output:
        [
            f"results/{{track}}/finetune/{{target}}/{{source}}/seed{{seed}}/step{step}.csv"
            for step in steps(CNN, "pretrain")
        ],
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
        steps=lambda wc: steps(wc.track, "pretrain"),
    script:
        "../workflow/scripts/finetune.py"
