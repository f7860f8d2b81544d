rule pretrain:
    """One run (source, seed): every checkpoint of the track's log grid and the history."""
    input:
        source_dataset,
    output:
        checkpoints=[
            f"results/{{track}}/checkpoints/{{source}}/seed{{seed}}/step{step}.pt"
            for step in steps(CNN, "pretrain")
        ],
        history="results/{track}/checkpoints/{source}/seed{seed}/history.csv",
    log:
        "results/{track}/logs/pretrain/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/pretrain/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("pretrain", "mem_mb"),
        runtime=attempt_scaled("pretrain", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        protocol=lambda wc: tconfig.pretrain_protocol(config, wc.track, wc.source),
        steps=lambda wc: steps(wc.track, "pretrain"),
    script:
        "../workflow/scripts/pretrain.py"
