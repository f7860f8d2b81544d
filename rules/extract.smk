# Extraction (CNN track): each run's activations (every layer and the logits) on each
# target's subset; the untrained model's once for all the sources that share it.


include: "functions/extract.smk"


rule extract:
    """A run's own checkpoints on one target: every layer's activations and the logits."""
    input:
        checkpoints=run_checkpoints,
        dataset=target_dataset,
        subset="results/{track}/subsets/{target}.csv",
    output:
        activations=activation_outputs("{source}", trained_steps(CNN)),
        logits=logits_outputs("{source}", trained_steps(CNN)),
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
        steps=lambda wc: trained_steps(wc.track),
        layers=lambda wc: track_cfg(wc.track)["layers"],
        compression=lambda wc: track_cfg(wc.track)["extract"]["compression"],
    script:
        "../workflow/scripts/extract.py"


rule extract_initial:
    """The untrained model of (seed, classes) on one target, once for all its sources."""
    input:
        checkpoints=rules.initial_model.output,
        dataset=target_dataset,
        subset="results/{track}/subsets/{target}.csv",
    output:
        activations=activation_outputs(INITIAL_MODEL, INITIAL_STEPS),
        logits=logits_outputs(INITIAL_MODEL, INITIAL_STEPS),
    log:
        f"results/{{track}}/logs/extract/{{target}}/{INITIAL_MODEL}/seed{{seed}}.log",
    benchmark:
        f"results/{{track}}/benchmarks/extract/{{target}}/{INITIAL_MODEL}/seed{{seed}}.tsv"
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
        steps=INITIAL_STEPS,
        layers=lambda wc: track_cfg(wc.track)["layers"],
        compression=lambda wc: track_cfg(wc.track)["extract"]["compression"],
    script:
        "../workflow/scripts/extract.py"
