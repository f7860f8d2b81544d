rule extract:
    """All checkpoints of one run on one target: every layer's activations and the logits."""
    input:
        checkpoints=run_checkpoints,
        dataset=target_dataset,
        subset="results/{track}/subsets/{target}.csv",
    output:
        activations=(
            [temp(path) for path in activation_outputs(CNN)]
            if config["temp_activations"]
            else activation_outputs(CNN)
        ),
        logits=[
            f"results/{{track}}/activations/{{target}}/{{source}}/seed{{seed}}/step{step}/logits.h5"
            for step in steps(CNN, "pretrain")
        ],
    log:
        "results/{track}/logs/extract/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/extract/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("extract", "mem_mb"),
        runtime=attempt_scaled("extract", "runtime"),
        gpu=0,
    params:
        steps=lambda wc: steps(wc.track, "pretrain"),
        layers=lambda wc: track_cfg(wc.track)["layers"],
        compression=lambda wc: track_cfg(wc.track)["extract"]["compression"],
    script:
        "../workflow/scripts/extract.py"
