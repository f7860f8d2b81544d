# Pre-training (CNN track): the untrained model of each (seed, number of classes) and
# each source's run from it, one checkpoint per step of the track's log grid.


include: "functions/pretrain.smk"


rule initial_model:
    """The untrained model of one (seed, number of classes): every source's step 0."""
    output:
        checkpoint_outputs(INITIAL_MODEL, INITIAL_STEPS),
    log:
        f"results/{{track}}/logs/initial_model/{INITIAL_MODEL}/seed{{seed}}.log",
    benchmark:
        f"results/{{track}}/benchmarks/initial_model/{INITIAL_MODEL}/seed{{seed}}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("initial_model", "mem_mb"),
        runtime=attempt_scaled("initial_model", "runtime"),
    script:
        "../workflow/scripts/initial_model.py"


rule pretrain:
    """One run (source, seed) from its untrained model: every later checkpoint of the track's
    log grid and the history (step 0 included)."""
    input:
        dataset=source_dataset,
        initial=initial_file("checkpoints"),
    output:
        checkpoints=checkpoint_outputs("{source}", trained_steps(CNN)),
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
        steps=lambda wc: trained_steps(wc.track),
    script:
        "../workflow/scripts/pretrain.py"
