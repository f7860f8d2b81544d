# Metrics (CNN track): each run's transferability metrics on each target, one table per
# pre-training checkpoint; the untrained model's once for all the sources that share it.


include: "functions/metrics.smk"


rule metrics:
    """Metric tables of one run on one target, one CSV per pre-training checkpoint (step 0: the
    untrained model's table under this source's name)."""
    input:
        activations=rules.extract.output.activations,
        logits=rules.extract.output.logits,
        plugins=metric_plugin_inputs,
        initial=initial_file("metrics"),
    output:
        tables=metric_tables("{source}", trained_steps(CNN)),
        initial=f"results/{{track}}/metrics/{{target}}/{{source}}/seed{{seed}}/step{INITIAL_STEP}.csv",
    log:
        "results/{track}/logs/metrics/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/metrics/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "metrics"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("metrics", "mem_mb"),
        runtime=attempt_scaled("metrics", "runtime"),
    params:
        steps=lambda wc: trained_steps(wc.track),
        layers=lambda wc: track_cfg(wc.track)["layers"],
        metrics=lambda wc: track_cfg(wc.track)["metrics"],
        source=lambda wc: wc.source,
    script:
        "../workflow/scripts/metrics.py"


rule metrics_initial:
    """Metric table of the untrained model of (seed, classes) on one target, once for all its
    sources. Not in group `metrics`: the sources' metric jobs read it, and a group holding both
    would be one connected cluster job asking for all their cores at once."""
    input:
        activations=rules.extract_initial.output.activations,
        logits=rules.extract_initial.output.logits,
        plugins=metric_plugin_inputs,
    output:
        tables=metric_tables(INITIAL_MODEL, INITIAL_STEPS),
    log:
        f"results/{{track}}/logs/metrics/{{target}}/{INITIAL_MODEL}/seed{{seed}}.log",
    benchmark:
        f"results/{{track}}/benchmarks/metrics/{{target}}/{INITIAL_MODEL}/seed{{seed}}.tsv"
    wildcard_constraints:
        track=CNN,
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("metrics", "mem_mb"),
        runtime=attempt_scaled("metrics", "runtime"),
    params:
        steps=INITIAL_STEPS,
        layers=lambda wc: track_cfg(wc.track)["layers"],
        metrics=lambda wc: track_cfg(wc.track)["metrics"],
        source=tconfig.INITIAL_SOURCE,
    script:
        "../workflow/scripts/metrics.py"
