rule metrics:
    """Metric tables of one run on one target, one CSV per pre-training checkpoint."""
    input:
        activations=rules.extract.output.activations,
        logits=rules.extract.output.logits,
        plugins=metric_plugin_inputs,
    output:
        [
            f"results/{{track}}/metrics/{{target}}/{{source}}/seed{{seed}}/step{step}.csv"
            for step in steps(CNN, "pretrain")
        ],
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
        steps=lambda wc: steps(wc.track, "pretrain"),
        layers=lambda wc: track_cfg(wc.track)["layers"],
        metrics=lambda wc: track_cfg(wc.track)["metrics"],
    script:
        "../workflow/scripts/metrics.py"
